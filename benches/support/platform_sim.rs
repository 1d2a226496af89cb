//! `platform-sim` as a child process for the platform benches, with its stdout (one line per
//! frame received) counted by a thread: frames by type, the snapshot's bytes and when its
//! `last` part arrived. A frame's type is read after an optional leading `"seq":N` (protocol
//! 1.1 puts it first).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

// Each bench reads the counters it needs.
#[allow(dead_code)]
pub struct Sim {
    child: Child,
    pub url: String,
    pub data_lines: Arc<AtomicU64>,
    pub status_lines: Arc<AtomicU64>,
    pub snapshot_last_at: Arc<Mutex<Option<Instant>>>,
    pub snapshot_bytes: Arc<AtomicU64>,
}

/// The frame type of a line as platform-sim prints it: `{"type":"x"` or `{"seq":N,"type":"x"`.
fn frame_type(line: &str) -> Option<&str> {
    let rest = match line.strip_prefix("{\"seq\":") {
        Some(n) => n
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .strip_prefix(',')?,
        None => line.strip_prefix('{')?,
    };
    let rest = rest.strip_prefix("\"type\":\"")?;
    rest.split('"').next()
}

impl Sim {
    /// Start platform-sim on 127.0.0.1:0 with `extra` arguments (`--no-ack` for a v1 platform).
    pub fn start(extra: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_platform-sim"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn platform-sim");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut banner = String::new();
        stdout.read_line(&mut banner).expect("banner");
        let url = banner
            .trim()
            .strip_prefix("platform-sim listening on ")
            .expect("banner format")
            .to_owned();
        let data_lines = Arc::new(AtomicU64::new(0));
        let status_lines = Arc::new(AtomicU64::new(0));
        let snapshot_last_at = Arc::new(Mutex::new(None));
        let snapshot_bytes = Arc::new(AtomicU64::new(0));
        let (d, st, s, b) = (
            data_lines.clone(),
            status_lines.clone(),
            snapshot_last_at.clone(),
            snapshot_bytes.clone(),
        );
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                match frame_type(&line) {
                    Some("data") => {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    Some("device_status") => {
                        st.fetch_add(1, Ordering::Relaxed);
                    }
                    Some("snapshot") => {
                        b.fetch_add(line.len() as u64, Ordering::Relaxed);
                        if line.ends_with("\"last\":true}") {
                            *s.lock().unwrap() = Some(Instant::now());
                        }
                    }
                    _ => {}
                }
            }
        });
        Sim {
            child,
            url,
            data_lines,
            status_lines,
            snapshot_last_at,
            snapshot_bytes,
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
