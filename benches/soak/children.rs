//! The processes beside the gateway: platform-sim (its stdout counted into [`Counts`]) and the
//! device-sim processes (their `--per-second` lines counted into [`Sent`]), each killed and
//! reaped when dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::buckets::{unix_ms, Counts};
use crate::Args;

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
    }
}

pub fn spawn_platform(counts: Arc<Counts>) -> Result<(Proc, String), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_platform-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("platform-sim: {e}"))?;
    let out = child.stdout.take().ok_or("platform-sim stdout")?;
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("\"type\":\"data\"") {
                counts.data.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut b) = counts.buckets.lock() {
                    b.data_frame(&line, unix_ms());
                }
            } else if line.contains("\"type\":\"device_status\"") {
                counts.status.fetch_add(1, Ordering::Relaxed);
            } else if line.contains("\"type\":\"device_registered\"") {
                counts.registered.fetch_add(1, Ordering::Relaxed);
            } else if let Some(addr) = line.strip_prefix("platform-sim listening on ") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "platform-sim did not say where it listens")?;
    Ok((proc, url))
}

/// One device-sim process: its stdin (control commands) and a channel of its stdout lines
/// (the `--per-second` lines are taken out into `sent`).
pub struct Sim {
    pub proc: Proc,
    pub control: ChildStdin,
    pub lines: mpsc::Receiver<String>,
}

/// Notifications started per Unix second, over every device-sim.
pub type Sent = Arc<Mutex<BTreeMap<u64, u64>>>;

pub fn spawn_devices(
    a: &Args,
    rd: &str,
    k: usize,
    count: usize,
    sent: Sent,
) -> Result<Sim, String> {
    let mut cmd = match &a.device_sim_bin {
        Some(bin) => Command::new(bin),
        None => {
            let bin = device_sim::binary::path().map_err(|e| format!("device-sim binary: {e}"))?;
            let mut cmd = Command::new(bin);
            cmd.arg("--per-second");
            cmd
        }
    };
    let mut child = cmd
        .args(["--rd", rd, "--count", &count.to_string()])
        .args(["--lt", &a.lt.to_string(), "--prefix", &format!("soak{k}-")])
        .args(["--silent-fraction", &a.silent_fraction.to_string()])
        // Each process on its own loopback address: a device takes a free port, and one
        // address has only the ephemeral range (32768-60999 here, ~28,000 ports).
        .args(["--bind", &format!("127.0.0.{}", k + 1)])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("device-sim: {e}"))?;
    let control = child.stdin.take().ok_or("device-sim stdin")?;
    let out = child.stdout.take().ok_or("device-sim stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // "device-sim second S: notified N, observe answers M"
            if let Some(rest) = line.strip_prefix("device-sim second ") {
                let parsed = rest.split_once(": notified ").and_then(|(s, r)| {
                    Some((
                        s.parse::<u64>().ok()?,
                        r.split(',').next()?.parse::<u64>().ok()?,
                    ))
                });
                if let (Some((s, n)), Ok(mut sent)) = (parsed, sent.lock()) {
                    *sent.entry(s).or_default() += n;
                }
                continue;
            }
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok(Sim {
        proc: Proc(child),
        control,
        lines: rx,
    })
}

/// "... (with Observe, notifications included: N), ..." from device-sim's exit summary.
pub fn notifications_sent(summary: &str) -> Option<u64> {
    summary
        .split("notifications included: ")
        .nth(1)?
        .split(')')
        .next()?
        .trim()
        .parse()
        .ok()
}
