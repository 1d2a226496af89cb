//! `coap.socket_buffer_bytes`: the RD's socket gets the receive buffer the config asks for, so a
//! fleet notifying in lockstep is not dropped by the kernel before the gateway reads it (20,000
//! devices lost 0.3–0.8 % of their values with the old fixed 4 MiB request). With CAP_NET_ADMIN
//! (the test runs as root in CI) the kernel's `net.core.rmem_max` cap is lifted; without it the
//! gateway says at start that it got less, and how to fix it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Gateway, GatewayOptions};

/// The receive buffer (`rb` of `ss -m`, what the kernel grants: twice what was asked) of the UDP
/// socket bound to `port` on 127.0.0.1.
fn receive_buffer(port: u16) -> Option<u64> {
    let out = Command::new("ss")
        .args(["-uanmH", "src", &format!("127.0.0.1:{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rb = text.split("rb").nth(1)?;
    rb.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

#[test]
fn the_rd_socket_gets_the_configured_receive_buffer_or_says_why_not() {
    const ASKED: u64 = 24 << 20;
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: format!("coap:\n  socket_buffer_bytes: {ASKED}\n"),
        ..Default::default()
    });
    let Some(granted) = receive_buffer(gw.addr().port()) else {
        panic!("ss -uanm shows no socket on {}", gw.addr());
    };
    let root = running_as_root();
    if root {
        // The kernel reports twice the size it was given.
        assert!(
            granted >= 2 * ASKED,
            "asked {ASKED}, the socket has {granted}"
        );
    } else {
        assert!(
            granted >= 2 * ASKED
                || gw.wait_for_log("raise net.core.rmem_max", Duration::from_secs(10)),
            "got {granted} of {ASKED} bytes without a warning:\n{}",
            gw.log_text()
        );
    }
}

/// Root (CAP_NET_ADMIN), from /proc rather than libc.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn an_out_of_range_buffer_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "gateway:\n  data_dir: {:?}\ncoap:\n  socket_buffer_bytes: 1000\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = Command::new(common::gateway_bin())
        .args(["--config", config.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("coap.socket_buffer_bytes"), "{err}");
}
