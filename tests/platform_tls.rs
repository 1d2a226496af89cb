//! The platform link over `wss://` with the real gateway and platform-sim (issue 11): a
//! self-signed platform certificate is accepted when `platform.ca_file` holds it and refused
//! (a certificate error in the log) without it; a missing `ca_file` stops the gateway with
//! exit 2 naming the key. The bearer token never appears in the gateway's log (success,
//! certificate failure and token refusal alike) nor in `rd-dump`'s output.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::platform_sim::PlatformSim;
use common::rd_dump::rd_dump_output;
use common::{gateway_bin, write_config, Gateway, GatewayOptions};

const TOKEN: &str = "tls-secret-token-9c4e1a77";
const WAIT: Duration = Duration::from_secs(20);

struct Tls {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn self_signed() -> Tls {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("rcgen");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    Tls {
        _dir: dir,
        cert,
        key,
    }
}

fn wss_sim(tls: &Tls) -> PlatformSim {
    let sim = PlatformSim::start_args(
        "127.0.0.1:0",
        Some(TOKEN),
        &[
            "--tls-cert",
            tls.cert.to_str().expect("utf-8 path"),
            "--tls-key",
            tls.key.to_str().expect("utf-8 path"),
        ],
    );
    assert!(sim.url().starts_with("wss://"), "{}", sim.url());
    sim
}

fn platform_yaml(url: &str, token: &str, ca_file: Option<&Path>) -> String {
    let mut yaml = format!("platform:\n  url: {url:?}\n  token: {token:?}\n  reconnect_max_s: 1\n");
    if let Some(path) = ca_file {
        yaml.push_str(&format!("  ca_file: {:?}\n", path.display().to_string()));
    }
    yaml
}

fn assert_no_token(text: &str, what: &str) {
    assert!(
        !text.contains(TOKEN) && !text.contains("wrong-token-31d0"),
        "a token leaked into {what}:\n{text}"
    );
}

#[test]
fn wss_with_ca_file_is_accepted_and_the_token_stays_out_of_logs_and_rd_dump() {
    let tls = self_signed();
    let sim = wss_sim(&tls);
    let mut gw = Gateway::start_with(GatewayOptions {
        extra_yaml: platform_yaml(&sim.url(), TOKEN, Some(&tls.cert)),
        ..GatewayOptions::default()
    });
    assert!(
        sim.wait_type("hello", None, WAIT).is_some(),
        "no hello over wss:// with ca_file: {}",
        gw.log_text()
    );
    let p = Peer::new(gw.addr());
    register(&p, "ep=tls-dev&d=floor1", "</t>;rt=\"temperature\"");
    assert!(sim
        .wait_type("device_registered", Some("tls-dev"), WAIT)
        .is_some());
    assert_eq!(gw.terminate(), Some(0));
    assert_no_token(&gw.log_text(), "the gateway log");
    let table = rd_dump_output(&gw.data_dir, &[]);
    let json = rd_dump_output(&gw.data_dir, &["--json"]);
    assert!(table.contains("tls-dev") && json.contains("tls-dev"));
    assert_no_token(&table, "rd-dump");
    assert_no_token(&json, "rd-dump --json");
}

#[test]
fn wss_without_ca_file_is_refused_with_a_certificate_error() {
    let tls = self_signed();
    let sim = wss_sim(&tls);
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: platform_yaml(&sim.url(), TOKEN, None),
        ..GatewayOptions::default()
    });
    // At least two dials (the first and one retry), both refused on the certificate: each
    // failed dial logs one "platform link: ... retrying in" line naming the error.
    let is_cert_refusal = |l: &str| {
        let lower = l.to_ascii_lowercase();
        l.contains("platform link:")
            && l.contains("retrying in")
            && (lower.contains("certificate")
                || lower.contains("unknownissuer")
                || lower.contains("unknown issuer"))
    };
    let deadline = Instant::now() + WAIT;
    let log = loop {
        let log = gw.log_text();
        if log.lines().filter(|l| is_cert_refusal(l)).count() >= 2 {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "not two dials refused on the certificate within {WAIT:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let dial_failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("platform link:") && l.contains("retrying in"))
        .collect();
    assert!(
        dial_failures.iter().all(|l| is_cert_refusal(l)),
        "every failed dial failed on the certificate: {dial_failures:#?}"
    );
    assert!(
        sim.frames().is_empty(),
        "frames crossed an untrusted link: {:?}",
        sim.frames()
    );
    assert!(
        !sim.stderr_lines()
            .iter()
            .any(|l| l.contains("gateway connected")),
        "the WebSocket upgrade happened without a trusted certificate"
    );
    assert_no_token(&log, "the gateway log");
}

#[test]
fn a_refused_token_over_wss_is_logged_without_the_token() {
    let tls = self_signed();
    let sim = wss_sim(&tls);
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: platform_yaml(&sim.url(), "wrong-token-31d0", Some(&tls.cert)),
        ..GatewayOptions::default()
    });
    assert!(
        gw.wait_for_log("platform refused the token", WAIT),
        "no refusal logged:\n{}",
        gw.log_text()
    );
    assert!(sim.wait_stderr("wrong bearer token", WAIT));
    assert_no_token(&gw.log_text(), "the gateway log");
}

#[test]
fn a_missing_or_bad_ca_file_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_pem = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    for ca_file in [dir.path().join("missing.pem"), not_pem] {
        let opts = GatewayOptions {
            extra_yaml: platform_yaml("wss://127.0.0.1:1/", TOKEN, Some(&ca_file)),
            ..GatewayOptions::default()
        };
        let config = write_config(dir.path(), &dir.path().join("data"), &opts);
        let ran = run_bounded(
            Command::new(gateway_bin()).arg("--config").arg(&config),
            Duration::from_secs(20),
        );
        assert_eq!(ran.status, Some(2), "{ran:?}");
        assert!(ran.stderr.contains("platform.ca_file"), "{}", ran.stderr);
        assert_no_token(&ran.stderr, "the config error");
    }
}
