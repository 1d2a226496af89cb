//! CoAP over DTLS peers for end-to-end tests: libcoap's `coap-server-openssl` as a `coaps://`
//! device (plain UDP on its port, DTLS on port + 1), `coap-client-openssl` runs with a PSK, the
//! gateway's coaps address from its log, and a [`Tap`]: a UDP relay in front of a device that
//! keeps every datagram sent to it, so a test can tell DTLS records from plaintext CoAP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Gateway;

pub const SERVER: &str = "coap-server-openssl";
pub const CLIENT: &str = "coap-client-openssl";

/// `key` as the identities file's `psk_hex`.
pub fn psk_hex(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The gateway's first coaps address, from its `rd listening on coaps://ADDR` line.
pub fn coaps_addr(gw: &Gateway) -> SocketAddr {
    const LINE: &str = "rd listening on coaps://";
    assert!(
        gw.wait_for_log(LINE, Duration::from_secs(20)),
        "the gateway logged no coaps listener:\n{}",
        gw.log_text()
    );
    gw.log_text()
        .lines()
        .find_map(|l| {
            let rest = l.split(LINE).nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("unparsable coaps listener line:\n{}", gw.log_text()))
}

/// Two free consecutive UDP ports on 127.0.0.1, both bound (so nothing else takes them), or
/// `None` after a bounded number of tries.
pub fn bound_pair() -> Option<(UdpSocket, UdpSocket)> {
    for _ in 0..100 {
        let Ok(a) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = a.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port >= 65_000 {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(("127.0.0.1", port + 1)) {
            return Some((a, b));
        }
    }
    None
}

/// A free port `P` with `P + 1` free too, for libcoap's server (it binds both itself).
pub fn free_port_pair() -> u16 {
    let (a, _b) = bound_pair().expect("no two consecutive free UDP ports on 127.0.0.1");
    a.local_addr().expect("local addr").port()
}

/// `coap-server-openssl -A 127.0.0.1 -p PORT -k KEY -v 7`: plain CoAP on `port`, DTLS with
/// `key` (for any identity) on `port + 1`. Its log lines are kept; killed on drop.
pub struct CoapsServer {
    child: Option<Child>,
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl CoapsServer {
    /// Start it and wait (bounded) until it says its DTLS endpoint exists.
    pub fn start(port: u16, key: &str) -> CoapsServer {
        let mut child = Command::new("stdbuf")
            .args(["-oL", "-eL", SERVER, "-A", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(["-k", key, "-v", "7"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn coap-server-openssl");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let server = CoapsServer {
            child: Some(child),
            port,
            lines,
        };
        assert!(
            server.wait_for("created DTLS endpoint", Duration::from_secs(10)),
            "coap-server-openssl did not open its DTLS endpoint:\n{}",
            server.text()
        );
        server
    }

    /// Where it speaks DTLS.
    pub fn dtls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + 1))
    }

    /// Its output so far.
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Wait until a line contains `needle`.
    pub fn wait_for(&self, needle: &str, budget: Duration) -> bool {
        let deadline = Instant::now() + budget;
        loop {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until at least `n` lines contain `needle`.
    pub fn wait_for_count(&self, needle: &str, n: usize, budget: Duration) -> bool {
        let deadline = Instant::now() + budget;
        loop {
            let got = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if got >= n {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (the device vanishes without a DTLS close_notify) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for CoapsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `coap-client-openssl -u IDENTITY -k KEY -v 6 ARGS URI` to completion, bounded by `timeout`.
pub fn client(identity: &str, key: &str, args: &[&str], uri: &str) -> Output {
    Command::new("timeout")
        .arg("20")
        .args([CLIENT, "-B", "10", "-u", identity, "-k", key, "-v", "6"])
        .args(args)
        .arg(uri)
        .stdin(Stdio::null())
        .output()
        .expect("run coap-client-openssl under timeout")
}

/// The code of the first response line (`v:1 t:ACK c:2.01 ...`) in `-v 6` output.
pub fn response_code(out: &Output) -> Option<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    super::libcoap::parse(&text)
        .into_iter()
        .find(|m| m.is_response())
        .map(|m| m.code)
}

/// What a datagram looks like from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A DTLS 1.0/1.2 record of this content type (20 change_cipher_spec, 21 alert,
    /// 22 handshake, 23 application_data).
    Dtls(u8),
    /// A CoAP version 1 message in the clear (RFC 7252 §3: the first two bits are 01).
    PlainCoap,
    Other,
}

pub fn classify(datagram: &[u8]) -> Kind {
    match datagram {
        [t @ 20..=25, 0xfe, 0xfd | 0xff, ..] if datagram.len() >= 13 => Kind::Dtls(*t),
        [first, ..] if first >> 6 == 1 => Kind::PlainCoap,
        _ => Kind::Other,
    }
}

/// Whether `datagram` starts with a DTLS handshake record carrying a ClientHello.
pub fn is_client_hello(datagram: &[u8]) -> bool {
    classify(datagram) == Kind::Dtls(22) && datagram.get(13) == Some(&1)
}

/// A stand-in for a device's address pair: `addr()` (the "coaps" port, `plain_port + 1`)
/// relays every datagram to `upstream`, from one upstream socket per sender so that each
/// sender gets its own answers; the plain port (`addr().port() - 1`, where a libcoap device
/// would speak plain CoAP) only listens. Both keep everything they receive, in order.
pub struct Tap {
    coaps: SocketAddr,
    pub to_coaps: Arc<Mutex<Vec<Vec<u8>>>>,
    pub to_plain: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Senders a [`Tap`] relays for at once (a gateway uses one or two sockets).
const TAP_SENDERS: usize = 16;

impl Tap {
    pub fn start(upstream: SocketAddr) -> Tap {
        let (plain, coaps) = bound_pair().expect("no two consecutive free UDP ports");
        for s in [&plain, &coaps] {
            s.set_nonblocking(true).expect("nonblocking");
        }
        let addr = coaps.local_addr().expect("tap address");
        let to_coaps = Arc::new(Mutex::new(Vec::new()));
        let to_plain = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tc, tp, st) = (to_coaps.clone(), to_plain.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut senders: Vec<(SocketAddr, UdpSocket)> = Vec::new();
            // Bounded: the test stops it on drop, and it gives up after a minute regardless.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut idle = true;
                if let Ok((n, from)) = coaps.recv_from(&mut buf) {
                    idle = false;
                    tc.lock().unwrap().push(buf[..n].to_vec());
                    if !senders.iter().any(|(a, _)| *a == from) && senders.len() < TAP_SENDERS {
                        if let Ok(back) = UdpSocket::bind("127.0.0.1:0") {
                            if back.connect(upstream).is_ok() && back.set_nonblocking(true).is_ok()
                            {
                                senders.push((from, back));
                            }
                        }
                    }
                    if let Some((_, back)) = senders.iter().find(|(a, _)| *a == from) {
                        let _ = back.send(&buf[..n]);
                    }
                }
                // A dead upstream makes recv fail (ICMP port unreachable): just go on.
                for (client, back) in &senders {
                    if let Ok(n) = back.recv(&mut buf) {
                        idle = false;
                        let _ = coaps.send_to(&buf[..n], client);
                    }
                }
                if let Ok((n, _)) = plain.recv_from(&mut buf) {
                    idle = false;
                    tp.lock().unwrap().push(buf[..n].to_vec());
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Tap {
            coaps: addr,
            to_coaps,
            to_plain,
            stop,
            thread: Some(thread),
        }
    }

    /// The address that stands for the device's coaps port.
    pub fn addr(&self) -> SocketAddr {
        self.coaps
    }

    /// Everything sent to the coaps port so far.
    pub fn coaps_datagrams(&self) -> Vec<Vec<u8>> {
        self.to_coaps.lock().unwrap().clone()
    }

    /// Everything sent to the plain port so far.
    pub fn plain_datagrams(&self) -> Vec<Vec<u8>> {
        self.to_plain.lock().unwrap().clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
