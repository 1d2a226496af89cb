//! Runs the real `device-sim` binary for integration tests: collects its stdout lines (the
//! `device-sim ready: N devices registered` line, and its request summary on exit), sends
//! control lines to its stdin (`silent <i>`, `wake <i>`), and kills it on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `device-sim` binary (crates/device-sim), built up to date for these tests: another
/// package's binary, so cargo gives no `CARGO_BIN_EXE_device-sim` here.
pub fn bin() -> PathBuf {
    ::device_sim::binary::path().unwrap_or_else(|e| panic!("device-sim binary: {e}"))
}

pub struct DeviceSim {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, so a line can be found after it arrived.
    seen: Vec<String>,
}

impl DeviceSim {
    /// `device-sim --rd RD --count N` plus `extra` arguments; stderr is discarded.
    pub fn spawn(rd: SocketAddr, count: usize, extra: &[&str]) -> DeviceSim {
        let mut cmd = Command::new(bin());
        cmd.args(["--rd", &rd.to_string(), "--count", &count.to_string()])
            .args(extra);
        DeviceSim::spawn_command(cmd)
    }

    /// Run `cmd`, a device-sim command line built by the caller, e.g. inside a network
    /// namespace: `pair.command(Side::B, device_sim::bin())` plus its arguments.
    pub fn spawn_command(mut cmd: Command) -> DeviceSim {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn device-sim");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        DeviceSim {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line starting with `prefix`, waiting up to `budget`; `None` when it did not
    /// come (or device-sim exited first, e.g. because a port it wanted was taken).
    pub fn try_line(&mut self, prefix: &str, budget: Duration) -> Option<String> {
        let deadline = Instant::now() + budget;
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
                return Some(l.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return None,
            }
        }
    }

    /// Like [`Self::try_line`], but a missing line fails the test with what was printed.
    pub fn wait_line(&mut self, prefix: &str, budget: Duration) -> String {
        match self.try_line(prefix, budget) {
            Some(line) => line,
            None => panic!("device-sim never printed {prefix:?}; got {:?}", self.seen),
        }
    }

    /// Wait for `device-sim ready`; false when it did not come within `budget`.
    pub fn ready(&mut self, budget: Duration) -> bool {
        self.try_line("device-sim ready", budget).is_some()
    }

    /// One control line on stdin, e.g. `silent 3`.
    pub fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to device-sim");
        self.stdin.flush().expect("flush device-sim stdin");
    }

    /// SIGTERM: device-sim prints its request summary and exits.
    pub fn sigterm(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for DeviceSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
