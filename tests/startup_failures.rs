//! Start-up failures of the real `coap-gateway` binary that a configuration cannot show on
//! paper: a listen address another process holds, a data directory another gateway has locked,
//! a missing file named by a key. Each must stop the gateway with exit code 2 (unusable
//! setting) and one line naming the key and the address or path, never with a panic.

mod common;

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;

use common::{gateway_bin, Gateway, GatewayOptions};

/// Run the gateway on `yaml` until it exits (every case here fails before serving, so it
/// exits on its own; the status is bounded by the harness's own test timeout).
fn run_config(dir: &Path, yaml: &str) -> (Option<i32>, String) {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(gateway_bin())
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

fn assert_config_failure(code: Option<i32>, text: &str, needles: &[&str]) {
    assert_eq!(code, Some(2), "exit code 2 (unusable setting):\n{text}");
    assert!(!text.contains("panicked"), "no panic:\n{text}");
    let last = text
        .lines()
        .rfind(|l| l.starts_with("coap-gateway:"))
        .unwrap_or_else(|| panic!("a `coap-gateway: ...` error line:\n{text}"));
    for needle in needles {
        assert!(last.contains(needle), "{needle:?} named in {last:?}");
    }
}

fn data_yaml(data_dir: &Path) -> String {
    format!(
        "gateway:\n  data_dir: {:?}\n  cache_mb: 8\n",
        data_dir.display().to_string()
    )
}

#[test]
fn a_taken_admin_port_is_a_config_error_naming_http_listen() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}rd:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"{taken}\"\n",
        data_yaml(&tmp.path().join("data"))
    );
    let (code, text) = run_config(tmp.path(), &yaml);
    assert_config_failure(code, &text, &["http.listen", &taken.to_string()]);
}

#[test]
fn a_taken_rd_port_is_a_config_error_naming_rd_listen() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}rd:\n  listen: [\"127.0.0.1:0\", \"{taken}\"]\nhttp:\n  listen: \"\"\n",
        data_yaml(&tmp.path().join("data"))
    );
    let (code, text) = run_config(tmp.path(), &yaml);
    assert_config_failure(code, &text, &["rd.listen", &taken.to_string()]);
}

#[test]
fn a_taken_rd_port_with_a_platform_and_stored_devices_does_not_panic() {
    // Stored registrations arm the Registry's expiry timer and a platform starts the link,
    // the Observer and the Executer: a start-up error must unwind all of them cleanly.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let gw = Gateway::start_with(GatewayOptions {
            data_dir: Some(data.clone()),
            ..Default::default()
        });
        let peer = common::coap_peer::Peer::new(gw.addr());
        let resp = peer.post_links("/rd?ep=startup-node&lt=600", "</temp>;obs");
        assert_eq!(resp.code, "2.01", "registered");
    }
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let yaml = format!(
        "{}rd:\n  listen: [\"{taken}\"]\nhttp:\n  listen: \"\"\nplatform:\n  url: ws://127.0.0.1:9/\n",
        data_yaml(&data)
    );
    let (code, text) = run_config(tmp.path(), &yaml);
    assert_config_failure(code, &text, &["rd.listen", &taken.to_string()]);
}

#[test]
fn a_data_dir_locked_by_a_running_gateway_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let _running = Gateway::start_with(GatewayOptions {
        data_dir: Some(data.clone()),
        ..Default::default()
    });
    let other = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}rd:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"\"\n",
        data_yaml(&data)
    );
    let (code, text) = run_config(other.path(), &yaml);
    assert_config_failure(
        code,
        &text,
        &["gateway.data_dir", &data.display().to_string(), "locked"],
    );
}

#[test]
fn a_missing_platform_ca_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("no-such-ca.pem");
    let yaml = format!(
        "{}rd:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"\"\nplatform:\n  url: wss://127.0.0.1:9/\n  ca_file: {:?}\n",
        data_yaml(&tmp.path().join("data")),
        ca.display().to_string()
    );
    let (code, text) = run_config(tmp.path(), &yaml);
    assert_config_failure(code, &text, &["platform.ca_file", "no-such-ca.pem"]);
}
