//! Runs the real `platform-sim` binary for end-to-end tests of the platform link: parses its
//! `platform-sim listening on ws://ADDR` line, collects every frame it prints (one JSON object a
//! line), lets a test send lines to its stdin, and kills it on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct PlatformSim {
    child: Child,
    stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
    frames: Arc<Mutex<Vec<Value>>>,
    /// `ws` or `wss` (with `--tls-cert`/`--tls-key`).
    scheme: &'static str,
    /// What platform-sim said on stderr (connections, refusals, closes).
    stderr: Arc<Mutex<Vec<String>>>,
}

impl PlatformSim {
    /// Start on `listen` (use port 0 for a free port), optionally requiring a token.
    pub fn start(listen: &str, token: Option<&str>) -> PlatformSim {
        PlatformSim::start_args(listen, token, &[])
    }

    /// `start` with extra platform-sim arguments, e.g. `--tls-cert C --tls-key K` for wss://.
    pub fn start_args(listen: &str, token: Option<&str>, extra: &[&str]) -> PlatformSim {
        PlatformSim::spawn(
            Command::new(env!("CARGO_BIN_EXE_platform-sim")),
            listen,
            token,
            extra,
        )
    }

    /// `start` inside network namespace `netns` (`ip netns exec` runs the binary in place, so
    /// killing the child kills platform-sim).
    pub fn start_in_netns(netns: &str, listen: &str, token: Option<&str>) -> PlatformSim {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, env!("CARGO_BIN_EXE_platform-sim")]);
        PlatformSim::spawn(cmd, listen, token, &[])
    }

    /// Run `cmd` (platform-sim, possibly behind a wrapper) with the listen arguments.
    fn spawn(mut cmd: Command, listen: &str, token: Option<&str>, extra: &[&str]) -> PlatformSim {
        cmd.args(["--listen", listen]);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        cmd.args(extra);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn platform-sim");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        {
            let sink = stderr.clone();
            let pipe = child.stderr.take().expect("stderr");
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let scheme = if extra.contains(&"--tls-cert") {
            "wss"
        } else {
            "ws"
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = frames.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("platform-sim listening on ") {
                    let addr = rest
                        .trim_start_matches("ws://")
                        .trim_start_matches("wss://")
                        .trim_end_matches('/');
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("sim address"));
                } else if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("platform-sim did not start");
        PlatformSim {
            child,
            stdin,
            addr,
            frames,
            scheme,
            stderr,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}/", self.scheme, self.addr)
    }

    /// platform-sim's stderr so far, one line each.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until a stderr line contains `needle`.
    pub fn wait_stderr(&self, needle: &str, budget: Duration) -> bool {
        let deadline = Instant::now() + budget;
        while Instant::now() < deadline {
            if self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Every frame received so far.
    pub fn frames(&self) -> Vec<Value> {
        self.frames.lock().unwrap().clone()
    }

    /// How many frames received so far satisfy `pred` (without copying them).
    pub fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|v| pred(v))
            .count()
    }

    /// Send one line (a frame, or garbage) to every connected gateway.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to platform-sim");
        stdin.flush().expect("flush");
    }

    /// Wait until a frame satisfies `pred`; returns it.
    pub fn wait_for(&self, budget: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + budget;
        loop {
            if let Some(v) = self.frames.lock().unwrap().iter().find(|v| pred(v)) {
                return Some(v.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for a frame of `type` whose `ep` is `ep` (or any `ep` when `None`).
    pub fn wait_type(&self, ty: &str, ep: Option<&str>, budget: Duration) -> Option<Value> {
        self.wait_for(budget, |v| {
            v["type"] == ty && ep.is_none_or(|ep| v["ep"] == ep || v["device"]["ep"] == ep)
        })
    }
}

impl PlatformSim {
    /// SIGTERM, then wait for the exit up to `budget`: the exit status, or `None` when it
    /// was still running at the deadline (it is killed on drop).
    pub fn terminate_within(&mut self, budget: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + budget;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for PlatformSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a platform that applies the numbered frames (acked mode) in seq order holds: the
/// device objects by `d/ep` (`ep` without a sector). Each seq counts once, wherever it arrived
/// (platform-sim logs the frames of all sessions in one list, and a re-sent frame twice); a
/// snapshot's part 0 starts the platform's view over.
pub fn mirror_in_seq_order(frames: &[Value]) -> std::collections::BTreeMap<String, Value> {
    let mut numbered = std::collections::BTreeMap::new();
    for frame in frames {
        if let Some(seq) = frame["seq"].as_u64() {
            numbered.entry(seq).or_insert(frame);
        }
    }
    let key = |v: &Value| match v["d"].as_str() {
        Some(d) if !d.is_empty() => format!("{d}/{}", v["ep"].as_str().unwrap_or("?")),
        _ => v["ep"].as_str().unwrap_or("?").to_owned(),
    };
    let mut mirror = std::collections::BTreeMap::new();
    for frame in numbered.values() {
        match frame["type"].as_str() {
            Some("snapshot") => {
                if frame["part"] == 0 {
                    mirror.clear();
                }
                for device in frame["devices"].as_array().into_iter().flatten() {
                    mirror.insert(key(device), device.clone());
                }
            }
            Some("device_registered" | "device_updated") => {
                mirror.insert(key(&frame["device"]), frame["device"].clone());
            }
            Some("device_removed") => {
                mirror.remove(&key(frame));
            }
            Some("device_status") => {
                if let Some(device) = mirror.get_mut(&key(frame)) {
                    device["status"] = frame["status"].clone();
                }
            }
            _ => {}
        }
    }
    mirror
}
