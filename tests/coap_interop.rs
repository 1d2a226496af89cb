//! Interop: independent CoAP clients (libcoap's `coap-client-notls`, aiocoap's
//! `aiocoap-client`) GET a 3 KiB body (Block2) from our server over 127.0.0.1 and ::1.
//! Tools missing: the one skip policy of `common/skip.rs` (a failure under CI).

#[path = "common/peers.rs"]
mod peers;
#[path = "common/skip.rs"]
mod skip;
use skip::require_tool;

use std::process::Command;
use std::time::Duration;

use peers::*;

/// Run a CLI (bounded by coreutils `timeout`) without blocking the runtime.
async fn run(args: Vec<String>) -> std::process::Output {
    let task = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("20")
            .args(&args)
            .output()
            .expect("spawn")
    });
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("CLI finished")
        .expect("join")
}

fn url(local: std::net::SocketAddr, path: &str) -> String {
    format!("coap://{local}/{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_client_gets_3k_block2_body() {
    if !require_tool("coap-client-notls") {
        return;
    }
    for addr in [V4, V6] {
        let (_ep, _h, local) = start(addr).await;
        let out = run(vec![
            "coap-client-notls".into(),
            "-B".into(),
            "10".into(),
            url(local, "text3k"),
        ])
        .await;
        assert!(out.status.success(), "{addr}: {out:?}");
        let body = String::from_utf8_lossy(&out.stdout);
        assert_eq!(body.trim_end().as_bytes(), text_body(3 * 1024), "{addr}");
        let out = run(vec![
            "coap-client-notls".into(),
            "-B".into(),
            "10".into(),
            url(local, "x"),
        ])
        .await;
        assert!(out.status.success(), "{addr}: second GET failed: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "hello");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_client_gets_3k_block2_body() {
    if !require_tool("aiocoap-client") {
        return;
    }
    for addr in [V4, V6] {
        let (_ep, _h, local) = start(addr).await;
        let out = run(vec!["aiocoap-client".into(), url(local, "text3k")]).await;
        assert!(out.status.success(), "{addr}: {out:?}");
        let body = String::from_utf8_lossy(&out.stdout);
        assert_eq!(body.trim_end().as_bytes(), text_body(3 * 1024), "{addr}");
        let out = run(vec!["aiocoap-client".into(), url(local, "nope")]).await;
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("4.04") || all.contains("Not Found"), "{all}");
        // aiocoap-client exits 1 on an error response: it ended by itself on the answer (not
        // 124 from `timeout`, not a crash).
        assert_eq!(out.status.code(), Some(1), "{addr}: {out:?}");
    }
}
