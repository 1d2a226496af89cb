//! The `coap-gateway` command line: help, `--check`, and bad configs that must stop the gateway
//! at start with a clear message and exit code 2, before anything is opened or bound.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::gateway_bin;

fn run_with_config(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(gateway_bin())
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(gateway_bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--check", "RUST_LOG"] {
        assert!(text.contains(flag), "--help should mention {flag}:\n{text}");
    }
}

#[test]
fn unknown_key_exits_2_naming_key_and_line() {
    let (code, text) = run_with_config("gateway:\n  id: gw\nrd:\n  lisen: [\"127.0.0.1:0\"]\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("lisen"), "{text}");
    assert!(text.contains("line 4"), "{text}");
}

#[test]
fn wrong_type_exits_2_naming_the_line() {
    let (code, text) = run_with_config("pinger:\n  interval_s: soon\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("line 2") && text.contains("interval_s"),
        "{text}"
    );
}

#[test]
fn invalid_value_exits_2_naming_the_key() {
    let (code, text) = run_with_config("coap:\n  block_size: 1000\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("coap.block_size"), "{text}");
}

#[test]
fn missing_config_file_exits_2_naming_the_path() {
    let out = Command::new(gateway_bin())
        .args(["--config", "/nonexistent/coap-gateway.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/coap-gateway.yaml"));
}

#[test]
fn unusable_data_dir_exits_2_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the database directory should be: sled cannot open it.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let yaml = format!(
        "gateway:\n  data_dir: {:?}\nrd:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"\"\n",
        blocker.display().to_string()
    );
    let (code, text) = run_with_config(&yaml);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("not-a-dir"), "{text}");
    assert_eq!(
        std::fs::read(&blocker).unwrap(),
        b"x",
        "nothing may be wiped"
    );
}

#[test]
fn check_accepts_the_shipped_config_and_rejects_a_bad_one() {
    let out = Command::new(gateway_bin())
        .args([
            "--check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "rd:\n  default_lifetime_s: 0\n").unwrap();
    let out = Command::new(gateway_bin())
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rd.default_lifetime_s"));
}

/// `coap-gateway --check --config` on `yaml`: (exit code, stderr + stdout).
fn check_config(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(gateway_bin())
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .env_remove("COAP_GATEWAY_PLATFORM_TOKEN")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

/// `--check` on `yaml` exits 2 and its message holds every one of `needles`; the message.
fn assert_check_refuses(yaml: &str, needles: &[&str]) -> String {
    let (code, text) = check_config(yaml);
    assert_eq!(code, Some(2), "{text}");
    for needle in needles {
        assert!(text.contains(needle), "no {needle:?} in: {text}");
    }
    text
}

#[test]
fn check_refuses_a_data_dir_that_cannot_be_created() {
    let text = assert_check_refuses(
        "gateway:\n  data_dir: /proc/nope\n",
        &["gateway.data_dir", "/proc/nope", "line 2"],
    );
    assert!(!text.contains("is valid"), "{text}");
}

#[test]
fn check_names_the_line_of_a_bad_value() {
    assert_check_refuses(
        "gateway:\n  id: gw\nrd:\n  listen: [\"127.0.0.1:99999\"]\n",
        &["rd.listen", "line 4"],
    );
    assert_check_refuses(
        "coap:\n  ack_timeout_ms: 2000\n  block_size: 100\n",
        &["coap.block_size", "line 3"],
    );
}

#[test]
fn check_reads_the_files_named_by_keys() {
    assert_check_refuses(
        "platform:\n  url: wss://127.0.0.1:9/\n  ca_file: /nonexistent/ca.pem\n",
        &["platform.ca_file", "/nonexistent/ca.pem"],
    );
    assert_check_refuses(
        "platform:\n  token_file: /nonexistent/token\n",
        &["platform.token_file", "line 2"],
    );
}

#[test]
fn check_accepts_a_usable_config_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, text) = check_config(&format!(
        "gateway:\n  data_dir: {:?}\nrd:\n  listen: [\"127.0.0.1:0\"]\n",
        data.display().to_string()
    ));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("is valid"), "{text}");
    assert!(!data.exists(), "--check must not create the data directory");
}

#[test]
fn every_tool_describes_itself_not_the_crate() {
    for (bin, own) in [
        (PathBuf::from(env!("CARGO_BIN_EXE_rd-dump")), "registration"),
        (common::device_sim::bin(), "Simulated CoAP devices"),
        (
            PathBuf::from(env!("CARGO_BIN_EXE_platform-sim")),
            "latform simulator",
        ),
    ] {
        for flag in ["-h", "--help"] {
            let out = Command::new(&bin).arg(flag).output().unwrap();
            assert!(out.status.success(), "{} {flag}", bin.display());
            let text = String::from_utf8_lossy(&out.stdout);
            let about = text.lines().next().unwrap_or_default();
            assert!(
                about.contains(own) && !text.contains(env!("CARGO_PKG_DESCRIPTION")),
                "{} {flag} should open with its own description:\n{text}",
                bin.display()
            );
        }
    }
}
