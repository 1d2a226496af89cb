//! `GET /health` answers 503 when the registry cannot write (issue 12), shown for real: the
//! gateway runs in a private mount namespace whose data directory is a 1 MiB tmpfs, devices
//! register until sled hits ENOSPC, and the health endpoint turns from 200 "up" into 503
//! "down" with the store's error, while the read side (device API, metrics) keeps answering.
//!
//! Then the disk grows again (issue 25 item 6): sled cannot resume after its I/O error, so the
//! gateway must exit non-zero once the disk takes writes again, and a restart must find every
//! registration it acknowledged.
//!
//! Needs `unshare --mount` and `mount -t tmpfs` (root, or CAP_SYS_ADMIN); without them the
//! skip policy of `common/skip.rs` applies (a failure under CI).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::coap_peer::Peer;
use common::http::get;
use common::{gateway_bin, write_config_with_http, Gateway, GatewayOptions};

/// Small enough to fill in a few hundred registrations, large enough for sled to open.
const TMPFS_SIZE: &str = "size=1m";
/// Registrations tried before giving up on filling the disk (each is ~700 bytes).
const MAX_REGISTRATIONS: usize = 5_000;
const FILL_BUDGET: Duration = Duration::from_secs(90);

fn mount_script(data_dir: &Path) -> String {
    format!(
        "mount -t tmpfs -o {TMPFS_SIZE} tmpfs '{}' && exec \"$0\" \"$@\"",
        data_dir.display()
    )
}

/// Whether this machine lets us mount a tmpfs in a private mount namespace.
fn can_mount_tmpfs(dir: &Path) -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(mount_script(dir))
        .arg("true")
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[test]
fn health_is_503_with_the_error_once_the_registry_disk_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    if let Err(why) = can_mount_tmpfs(&data_dir) {
        common::skip::skip(
            "a private mount namespace with a tmpfs (unshare -m, root)",
            &why,
        );
        return;
    }
    let config = write_config_with_http(
        tmp.path(),
        &data_dir,
        &GatewayOptions::default(),
        "127.0.0.1:0",
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(mount_script(&data_dir))
        .arg(gateway_bin());
    let mut gw = Gateway::spawn_command(cmd, &config, data_dir, 1);
    let http = gw.wait_for_http();

    let health = get(http, "/health");
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["registry"]["writable"], true);

    // Fill the disk: registrations with long links until the RD answers an error.
    let peer = Peer::new(gw.addr());
    let links: Vec<String> = (0..3)
        .map(|i| format!("</r{i}>;rt=\"{}\"", "x".repeat(200)))
        .collect();
    let links = links.join(",");
    let t0 = Instant::now();
    let mut accepted = 0;
    let refused = loop {
        assert!(
            accepted < MAX_REGISTRATIONS && t0.elapsed() < FILL_BUDGET,
            "the 1 MiB tmpfs never filled after {accepted} registrations"
        );
        let resp = peer.post_links(&format!("/rd?ep=fill-{accepted}&lt=3600"), &links);
        if resp.code == "2.01" {
            accepted += 1;
        } else {
            break resp;
        }
    };
    assert!(
        refused.code.starts_with("5."),
        "a full disk is a server error, got {} {}",
        refused.code,
        refused.text()
    );

    let health = get(http, "/health");
    assert_eq!(health.status, 503, "{}", health.text());
    let body = health.json();
    assert_eq!(body["status"], "down");
    assert_eq!(body["registry"]["writable"], false);
    let error = body["registry"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("No space left"), "{body}");
    assert!(body["registry"]["last_error_at_ms"].as_u64().is_some());
    // Reading still works: operators can look at what is there.
    let devices = get(http, "/api/devices?count=1");
    assert_eq!(devices.status, 200);
    assert!(devices.json()["total"].as_u64().unwrap() >= accepted as u64);
    assert_eq!(get(http, "/metrics").status, 200);
    eprintln!("disk full after {accepted} registrations: {error}");
}

/// A private mount namespace with a tmpfs of `TMPFS_SIZE` on `data_dir`, held by a `sleep`
/// process, so the gateway can be started in it (with `nsenter`) more than once and the
/// tmpfs can be grown. Killed on drop.
struct Namespace {
    holder: Child,
    data_dir: std::path::PathBuf,
}

impl Namespace {
    fn new(data_dir: &Path) -> Namespace {
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o {TMPFS_SIZE} tmpfs '{}' && echo ready && exec sleep 600",
                data_dir.display()
            ))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the namespace holder");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the holder's ready line");
        assert_eq!(line.trim(), "ready", "the tmpfs was not mounted");
        Namespace {
            holder,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// `nsenter` into this namespace, then the gateway binary.
    fn gateway_command(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "--"])
            .arg(gateway_bin());
        cmd
    }

    fn grow(&self, size: &str) {
        let status = Command::new("nsenter")
            .arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "--", "mount", "-o"])
            .arg(format!("remount,size={size}"))
            .arg(&self.data_dir)
            .status()
            .expect("run nsenter mount");
        assert!(status.success(), "remount failed: {status}");
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Register from `peer` until the RD answers something else than 2.01; the names acknowledged.
fn fill(peer: &Peer) -> (Vec<String>, common::coap_peer::Resp) {
    let links: Vec<String> = (0..3)
        .map(|i| format!("</r{i}>;rt=\"{}\"", "x".repeat(200)))
        .collect();
    let links = links.join(",");
    let t0 = Instant::now();
    let mut acknowledged = Vec::new();
    loop {
        assert!(
            acknowledged.len() < MAX_REGISTRATIONS && t0.elapsed() < FILL_BUDGET,
            "the tmpfs never filled after {} registrations",
            acknowledged.len()
        );
        let ep = format!("fill-{}", acknowledged.len());
        let resp = peer.post_links(&format!("/rd?ep={ep}&lt=3600"), &links);
        if resp.code != "2.01" {
            return (acknowledged, resp);
        }
        acknowledged.push(ep);
    }
}

/// Issue 25 item 6: sled stays failed after ENOSPC even once there is room again, and the
/// process used to run on with writes refused (5.03) forever, so `Restart=on-failure` never
/// fired. Now it exits non-zero once the disk takes writes again, and the restart recovers
/// every acknowledged registration and takes new ones.
#[test]
fn after_a_full_disk_grows_the_gateway_exits_for_a_restart_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    if let Err(why) = can_mount_tmpfs(&data_dir) {
        common::skip::skip(
            "a private mount namespace with a tmpfs (unshare -m, root)",
            &why,
        );
        return;
    }
    let ns = Namespace::new(&data_dir);
    let config = write_config_with_http(
        tmp.path(),
        &data_dir,
        &GatewayOptions::default(),
        "127.0.0.1:0",
    );
    let mut gw = Gateway::spawn_command(ns.gateway_command(), &config, data_dir.clone(), 1);
    let http = gw.wait_for_http();
    let (acknowledged, refused) = fill(&Peer::new(gw.addr()));
    assert!(refused.code.starts_with("5."), "{}", refused.code);
    assert_eq!(get(http, "/health").status, 503);

    // Room again: the gateway must notice and exit non-zero (it probes every 2 s).
    ns.grow("16m");
    let exit = gw.wait_exit(Duration::from_secs(60));
    assert_eq!(
        exit,
        Some(Some(1)),
        "the gateway did not exit non-zero once the disk had room:\n{}",
        gw.log_text()
    );
    assert!(
        gw.log_text().contains("sled cannot resume"),
        "{}",
        gw.log_text()
    );

    // What the service manager would do: start it again on the same data.
    let mut gw = Gateway::spawn_command(ns.gateway_command(), &config, data_dir, 1);
    let http = gw.wait_for_http();
    let health = get(http, "/health");
    assert_eq!(health.status, 200, "{}", health.text());
    for ep in &acknowledged {
        let resp = get(http, &format!("/api/devices/{ep}"));
        assert_eq!(resp.status, 200, "acknowledged {ep} lost: {}", resp.text());
    }
    let resp = Peer::new(gw.addr()).post_links("/rd?ep=after-restart", "</a>");
    assert_eq!(resp.code, "2.01", "{}", resp.text());
    eprintln!(
        "{} acknowledged registrations survived the full disk and the restart",
        acknowledged.len()
    );
}
