//! A fleet over coaps against the real gateway binary: N `device-sim` devices (PSK, one DTLS
//! socket each) handshake and register with a fresh gateway; then the gateway is killed
//! (`kill -9`) and started again on the same data directory, and a fleet with the same
//! identities handshakes and registers again (each replaces its persisted registration as
//! its own identity). Reports both registration times (device-sim's own measure: from its
//! first registration to its last 2.01) and the restarted gateway's time to listen.
//!
//! ```sh
//! cargo bench --bench dtls_fleet -- --devices 10000
//! ```
//! Loopback only; every wait is bounded by `--timeout-s`.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KEY_HEX: &str = "666c6565742d62656e63682d6b6579";

struct Args {
    devices: usize,
    timeout: Duration,
}

fn args() -> Args {
    let mut a = Args {
        devices: 10_000,
        timeout: Duration::from_secs(180),
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        match (argv[i].as_str(), argv.get(i + 1)) {
            ("--devices", Some(v)) => {
                a.devices = v.parse().unwrap_or(a.devices);
                i += 1;
            }
            ("--timeout-s", Some(v)) => {
                a.timeout = Duration::from_secs(v.parse().unwrap_or(180));
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    a
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A child whose output lines arrive on a channel; killed when dropped.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Proc { child, lines }
    }

    /// The first line containing `needle`, within `budget`.
    fn wait_for(&self, needle: &str, budget: Duration) -> String {
        let deadline = Instant::now() + budget;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {needle:?} within {budget:?}"),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway(config: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coap-gateway"));
    cmd.arg("--config").arg(config).env("RUST_LOG", "info");
    Proc::spawn(cmd)
}

fn fleet(coaps: &str, devices: usize) -> Proc {
    let bin = device_sim::binary::path().unwrap_or_else(|e| panic!("device-sim: {e}"));
    let mut cmd = Command::new(bin);
    cmd.args(["--rd", coaps, "--count", &devices.to_string()])
        .args(["--prefix", "fleet-", "--lt", "3600"])
        .args(["--psk-identity-prefix", "fleet-", "--psk-hex", KEY_HEX])
        .args(["--register-concurrency", "256"])
        .env("RUST_LOG", "info");
    Proc::spawn(cmd)
}

/// device-sim's "N devices registered in X ms", in ms.
fn registered_ms(fleet: &Proc, budget: Duration) -> u64 {
    let line = fleet.wait_for("devices registered in", budget);
    line.split("registered in ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"))
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ids = String::from("identities:\n");
    for i in 0..a.devices {
        ids.push_str(&format!(
            "  - {{identity: fleet-{i}, psk_hex: \"{KEY_HEX}\"}}\n"
        ));
    }
    let ids_path = dir.path().join("identities.yaml");
    std::fs::write(&ids_path, ids).expect("write identities");
    let (plain, secure) = (free_port(), free_port());
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "gateway:\n  data_dir: \"{}\"\nrd:\n  listen: [\"127.0.0.1:{plain}\"]\n\
             dtls:\n  listen: [\"127.0.0.1:{secure}\"]\n  identities_file: \"{}\"\n\
             http:\n  listen: \"\"\npinger:\n  enabled: false\n",
            dir.path().join("data").display(),
            ids_path.display()
        ),
    )
    .expect("write config");
    let coaps = format!("127.0.0.1:{secure}");
    let listening = format!("rd listening on coaps://{coaps}");

    let gw = gateway(&config);
    gw.wait_for(&listening, a.timeout);
    let first = fleet(&coaps, a.devices);
    let first_ms = registered_ms(&first, a.timeout);
    drop(first);

    // kill -9 and start again on the same data directory.
    drop(gw);
    let restarted = Instant::now();
    let gw = gateway(&config);
    gw.wait_for(&listening, a.timeout);
    let listen_ms = restarted.elapsed().as_millis();
    let again = fleet(&coaps, a.devices);
    let again_ms = registered_ms(&again, a.timeout);
    drop(again);
    drop(gw);

    let per_s = |ms: u64| a.devices as f64 * 1000.0 / ms.max(1) as f64;
    println!("devices                                   {}", a.devices);
    println!(
        "fresh gateway: handshake + register all   {first_ms} ms ({:.0}/s)",
        per_s(first_ms)
    );
    println!("restart (kill -9) to coaps listening      {listen_ms} ms");
    println!(
        "after restart: handshake + re-register    {again_ms} ms ({:.0}/s)",
        per_s(again_ms)
    );
    println!(
        "{{\"devices\":{},\"fresh_ms\":{first_ms},\"restart_listen_ms\":{listen_ms},\"again_ms\":{again_ms}}}",
        a.devices
    );
}
