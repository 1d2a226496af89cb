//! A database that lost its tail says so (issue 25 item 9): registrations acknowledged (2.01),
//! the gateway SIGKILLed (as in tests/rd_crash_durability.rs), the last 4 KiB of sled's file
//! cut off. sled recovers a shorter, consistent log and the gateway used to start with
//! "N live, 0 undecodable" while the newest acknowledged registrations were silently gone.
//! Now `rd-dump` warns, the restarted gateway logs an error, and `/health` reports what is
//! lost (`registry.lost_at_start`), while it keeps serving what it has.

mod common;

use std::process::Command;
use std::time::Duration;

use common::coap_peer::*;
use common::http::get;
use common::{write_config_with_http, Gateway, GatewayOptions};

const REGISTRATIONS: usize = 300;
const CUT_BYTES: u64 = 4096;
const WAIT: Duration = Duration::from_secs(15);

#[test]
fn a_truncated_database_reports_the_acknowledged_registrations_it_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let opts = GatewayOptions {
        extra_yaml: "pinger:\n  enabled: false\n".into(),
        data_dir: Some(data.clone()),
        ..GatewayOptions::default()
    };
    let config = write_config_with_http(tmp.path(), &data, &opts, "127.0.0.1:0");
    let mut gw = Gateway::spawn(&config, data.clone(), 1);
    let peer = Peer::new(gw.addr());
    for i in 0..REGISTRATIONS {
        register(
            &peer,
            &format!("ep=tail-{i}&lt=3600"),
            "</sensors/temp>;rt=\"temperature\";if=\"sensor\",</actuators/led>;rt=\"light\"",
        );
    }
    gw.kill9();

    let db = data.join("db");
    let len = std::fs::metadata(&db).expect("sled's db file").len();
    assert!(len > CUT_BYTES, "db is only {len} bytes");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .and_then(|f| f.set_len(len - CUT_BYTES))
        .expect("truncate db");

    let dump = Command::new(env!("CARGO_BIN_EXE_rd-dump"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--json")
        .output()
        .expect("run rd-dump");
    let stderr = String::from_utf8_lossy(&dump.stderr);
    let recovered = String::from_utf8_lossy(&dump.stdout).lines().count();
    assert!(
        recovered < REGISTRATIONS,
        "the cut lost nothing ({recovered} recovered): the test proves nothing"
    );
    assert!(
        stderr.contains("WARNING") && stderr.contains("was acknowledged"),
        "rd-dump said nothing about the lost tail ({recovered} of {REGISTRATIONS} recovered): {stderr}"
    );

    let mut gw = Gateway::spawn(&config, data, 1);
    let http = gw.wait_for_http();
    assert!(
        gw.wait_for_log("was acknowledged", WAIT),
        "no error logged for the lost tail:\n{}",
        gw.log_text()
    );
    let health = get(http, "/health");
    assert_eq!(health.status, 200, "{}", health.text());
    let body = health.json();
    let lost = body["registry"]["lost_at_start"]
        .as_str()
        .unwrap_or_default();
    assert!(lost.contains("lost"), "{body}");
    eprintln!(
        "{recovered} of {REGISTRATIONS} acknowledged registrations recovered after cutting {CUT_BYTES} bytes; reported: {lost}"
    );
}
