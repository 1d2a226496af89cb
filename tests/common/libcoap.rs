//! libcoap's `coap-client-notls` as an independent peer (its codec shares nothing with
//! coap-lite): runs it under coreutils `timeout` as a hard bound, and reads its `-v 6` output,
//! where each message sent or received is one line `v:1 t:TYPE c:CODE i:MID {TOKEN} [ OPTIONS ]`
//! followed by ` :: 'PAYLOAD'` when it has one.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOOL: &str = "coap-client-notls";

/// One message line of `coap-client-notls -v 6`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `CON`, `NON`, `ACK` or `RST`.
    pub mtype: String,
    /// `GET`, `POST`, ... for requests, `2.05`, `4.13`, ... for responses.
    pub code: String,
    /// The options as libcoap prints them, e.g. `Observe:7` or `Block1:3/M/64`.
    pub options: Vec<String>,
    pub payload: Option<String>,
}

impl Message {
    /// The value of option `name` (e.g. `Observe`, `Block1`), as printed.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(name)?.strip_prefix(':'))
    }

    pub fn is_response(&self) -> bool {
        self.code.contains('.')
    }
}

/// Parse the message lines out of `-v 6` output (payload echoes between them are skipped).
pub fn parse(out: &str) -> Vec<Message> {
    out.split("v:1 t:")
        .skip(1)
        .filter_map(|chunk| {
            let line = chunk.lines().next()?;
            let (head, payload) = match line.split_once(" :: '") {
                Some((h, p)) => (h, Some(p.strip_suffix('\'').unwrap_or(p).to_string())),
                None => (line, None),
            };
            let mut words = head.split_whitespace();
            let mtype = words.next()?.to_string();
            let code = words.next()?.strip_prefix("c:")?.to_string();
            let options = head
                .split_once('[')
                .and_then(|(_, rest)| rest.rsplit_once(']'))
                .map(|(opts, _)| {
                    opts.split(',')
                        .map(|o| o.trim().to_string())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            Some(Message {
                mtype,
                code,
                options,
                payload,
            })
        })
        .collect()
}

/// Run `coap-client-notls ARGS` to completion, bounded by `timeout SECS`.
pub fn run(bound_s: u64, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(bound_s.to_string())
        .arg(TOOL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run coap-client-notls under timeout")
}

/// A `coap-client-notls` running in the background (e.g. observing) whose stdout lines are
/// collected as they come (`stdbuf -oL`: libcoap writes through stdio, block-buffered on a pipe).
pub struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn spawn(bound_s: u64, args: &[&str]) -> Running {
        Running::spawn_with_prefix(&[], bound_s, args)
    }

    /// Like [`Running::spawn`], with `prefix` (e.g. `ip netns exec NS`) run under `timeout`
    /// in front of `stdbuf`; every program in it must exec the next, so the TERM sent to
    /// `timeout` on drop reaches coap-client.
    pub fn spawn_with_prefix(prefix: &[&str], bound_s: u64, args: &[&str]) -> Running {
        let mut child = Command::new("timeout")
            .arg(bound_s.to_string())
            .args(prefix)
            .args(["stdbuf", "-oL", TOOL])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn coap-client-notls under timeout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, lines }
    }

    /// Everything printed so far, parsed.
    pub fn messages(&self) -> Vec<Message> {
        parse(&self.lines.lock().unwrap().join("\n"))
    }

    /// Wait up to `budget` until the messages so far satisfy `pred`.
    pub fn wait_for(&self, budget: Duration, pred: impl Fn(&[Message]) -> bool) -> bool {
        let deadline = Instant::now() + budget;
        while Instant::now() < deadline {
            if pred(&self.messages()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        pred(&self.messages())
    }

    /// The raw output so far, for failure messages.
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM to `timeout` is passed on to coap-client; SIGKILL would orphan it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
