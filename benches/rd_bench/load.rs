//! The load engine: K confirmable requests in flight, spread over lanes (one UDP socket each)
//! on one current-thread runtime, with RFC 7252 retransmission, empty-ACK and RST handling,
//! and the statistics of one phase.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::net::UdpSocket;

use crate::fail;
use crate::ports::{fresh_port, MIDS_PER_SOCKET};
use crate::process::sample_proc;
use crate::workload::{Workload, TOKEN_LEN};

/// RFC 7252 §4.8 defaults, with fewer retransmissions: a loss on loopback is an overload.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_RETRANSMIT: u8 = 3;
/// How long an empty-ACKed request may wait for its separate response.
const SEPARATE_RESPONSE_WAIT: Duration = Duration::from_secs(10);
/// How long a phase waits for outstanding answers after it stops sending.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Default, Debug)]
pub struct Stats {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub retransmits: u64,
    pub resets: u64,
    pub stray: u64,
    pub codes: BTreeMap<String, u64>,
    pub latencies_us: Vec<u32>,
    /// Completion instants of successful answers, in order (registration bands).
    pub completions: Vec<Instant>,
    /// CPU seconds this process spent in the phase.
    pub client_cpu_s: Option<f64>,
    /// Successful answers that arrived before the phase's deadline, and its length.
    pub ok_in_window: u64,
    pub window_s: f64,
}

pub struct Shared<W> {
    pub work: RefCell<W>,
    pub next: Cell<u64>,
    pub count: u64,
    pub deadline: Instant,
    pub stats: RefCell<Stats>,
    pub record_completions: bool,
}

impl<W> Shared<W> {
    fn take_index(&self) -> Option<u64> {
        let i = self.next.get();
        if i >= self.count || Instant::now() >= self.deadline {
            return None;
        }
        self.next.set(i + 1);
        Some(i)
    }
}

pub struct Pending {
    pub i: u64,
    pub first: Instant,
    pub last_send: Instant,
    pub retries: u8,
    pub acked: bool,
    pub mid: u16,
    pub bytes: Vec<u8>,
}

pub fn code_str(c: u8) -> String {
    format!("{}.{:02}", c >> 5, c & 31)
}

pub async fn new_lane_socket(target: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = if target.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let local: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let s = fresh_port(|| {
        let s = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
        // Big buffers: a burst of Block2 answers must not be dropped by the kernel.
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        s.bind(&local.into())?;
        let port = s.local_addr()?.as_socket().map(|a| a.port()).unwrap_or(0);
        Ok((s, port))
    })?;
    s.set_nonblocking(true)?;
    let sock = UdpSocket::from_std(s.into())?;
    sock.connect(target).await?;
    Ok(sock)
}

pub async fn lane<W: Workload>(shared: Rc<Shared<W>>, target: SocketAddr, window: usize) {
    let mut rng = rand::thread_rng();
    let mut sock = match new_lane_socket(target).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rd_bench: cannot open a load socket: {e}");
            return;
        }
    };
    let mut port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut sent_on_socket = 0u32;
    let mut mid: u16 = rng.gen();
    let mut pending: HashMap<u64, Pending> = HashMap::with_capacity(window * 2);
    let mut buf = vec![0u8; 2048];
    let mut last_check = Instant::now();
    let hard_stop = shared.deadline + DRAIN;
    loop {
        let now = Instant::now();
        let exhausted = shared.next.get() >= shared.count || now >= shared.deadline;
        if exhausted && pending.is_empty() {
            break;
        }
        if now >= hard_stop {
            shared.stats.borrow_mut().timeouts += pending.len() as u64;
            break;
        }
        if sent_on_socket >= MIDS_PER_SOCKET && pending.is_empty() {
            match new_lane_socket(target).await {
                Ok(s) => {
                    sock = s;
                    port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
                    sent_on_socket = 0;
                }
                Err(e) => {
                    eprintln!("rd_bench: cannot rotate the load socket: {e}");
                    break;
                }
            }
        }
        while pending.len() < window && sent_on_socket < MIDS_PER_SOCKET {
            let Some(i) = shared.take_index() else { break };
            let mut bytes = shared.work.borrow_mut().request(i);
            mid = mid.wrapping_add(1);
            let token: u64 = rng.gen();
            bytes[2..4].copy_from_slice(&mid.to_be_bytes());
            bytes[4..4 + TOKEN_LEN].copy_from_slice(&token.to_be_bytes());
            if sock.send(&bytes).await.is_err() {
                shared.stats.borrow_mut().errors += 1;
                continue;
            }
            sent_on_socket += 1;
            shared.stats.borrow_mut().sent += 1;
            let t = Instant::now();
            pending.insert(
                token,
                Pending {
                    i,
                    first: t,
                    last_send: t,
                    retries: 0,
                    acked: false,
                    mid,
                    bytes,
                },
            );
        }
        // Drain what is there without blocking; block (briefly) only when nothing was.
        let mut got_any = false;
        for _ in 0..(window * 2 + 8) {
            match sock.try_recv(&mut buf) {
                Ok(n) => {
                    got_any = true;
                    handle_datagram(&shared, &sock, &buf[..n], &mut pending, port).await;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // ICMP port unreachable: the RD is gone; the timer will account for it.
                    break;
                }
            }
        }
        if !got_any && !pending.is_empty() {
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(20), sock.recv(&mut buf)).await
            {
                handle_datagram(&shared, &sock, &buf[..n], &mut pending, port).await;
            }
        } else if !got_any {
            tokio::task::yield_now().await;
        }
        let now = Instant::now();
        if now.duration_since(last_check) >= Duration::from_millis(50) {
            last_check = now;
            let mut expired = Vec::new();
            for (tok, p) in pending.iter_mut() {
                let wait = if p.acked {
                    SEPARATE_RESPONSE_WAIT
                } else {
                    ACK_TIMEOUT * (1u32 << p.retries)
                };
                if now.duration_since(p.last_send) < wait {
                    continue;
                }
                if p.acked || p.retries >= MAX_RETRANSMIT {
                    expired.push(*tok);
                } else {
                    p.retries += 1;
                    p.last_send = now;
                    shared.stats.borrow_mut().retransmits += 1;
                    let _ = sock.send(&p.bytes).await;
                }
            }
            if !expired.is_empty() {
                shared.stats.borrow_mut().timeouts += expired.len() as u64;
                for tok in expired {
                    pending.remove(&tok);
                }
            }
        }
    }
}

pub async fn handle_datagram<W: Workload>(
    shared: &Shared<W>,
    sock: &UdpSocket,
    msg: &[u8],
    pending: &mut HashMap<u64, Pending>,
    port: u16,
) {
    if msg.len() < 4 || msg[0] >> 6 != 1 {
        shared.stats.borrow_mut().stray += 1;
        return;
    }
    let mtype = (msg[0] >> 4) & 3;
    let tkl = usize::from(msg[0] & 0x0f);
    let code = msg[1];
    let mid = u16::from_be_bytes([msg[2], msg[3]]);
    if code == 0 {
        match mtype {
            // Empty ACK: a separate response follows; stop retransmitting.
            2 => {
                if let Some(p) = pending.values_mut().find(|p| p.mid == mid) {
                    p.acked = true;
                }
            }
            3 => {
                let tok = pending.iter().find(|(_, p)| p.mid == mid).map(|(t, _)| *t);
                if let Some(tok) = tok {
                    pending.remove(&tok);
                    let mut st = shared.stats.borrow_mut();
                    st.resets += 1;
                    st.errors += 1;
                }
            }
            // A CoAP ping (e.g. from a pinger): answer RST as RFC 7252 §4.3 says.
            0 => {
                let rst = [0x70, 0, msg[2], msg[3]];
                let _ = sock.send(&rst).await;
            }
            _ => shared.stats.borrow_mut().stray += 1,
        }
        return;
    }
    if mtype == 0 {
        let ack = [0x60, 0, msg[2], msg[3]];
        let _ = sock.send(&ack).await;
    }
    if tkl != TOKEN_LEN || msg.len() < 4 + TOKEN_LEN {
        shared.stats.borrow_mut().stray += 1;
        return;
    }
    let mut tb = [0u8; 8];
    tb.copy_from_slice(&msg[4..12]);
    let Some(p) = pending.remove(&u64::from_be_bytes(tb)) else {
        shared.stats.borrow_mut().stray += 1;
        return;
    };
    let good = shared.work.borrow_mut().response(p.i, code, msg, port);
    let now = Instant::now();
    let mut st = shared.stats.borrow_mut();
    *st.codes.entry(code_str(code)).or_insert(0) += 1;
    st.latencies_us.push(
        now.duration_since(p.first)
            .as_micros()
            .min(u128::from(u32::MAX)) as u32,
    );
    if good {
        st.ok += 1;
        if now <= shared.deadline {
            st.ok_in_window += 1;
        }
        if shared.record_completions {
            st.completions.push(now);
        }
    } else {
        st.errors += 1;
    }
}

/// Run `count` requests (or until `seconds`) with `inflight` outstanding over `sockets` lanes.
pub fn run_phase<W: Workload + 'static>(
    target: SocketAddr,
    work: W,
    count: u64,
    inflight: usize,
    sockets: usize,
    seconds: f64,
    record_completions: bool,
) -> (W, Stats, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot build a tokio runtime: {e}")));
    let lanes = sockets.clamp(1, inflight.max(1));
    let shared = Rc::new(Shared {
        work: RefCell::new(work),
        next: Cell::new(0),
        count,
        deadline: Instant::now() + Duration::from_secs_f64(seconds),
        stats: RefCell::new(Stats::default()),
        record_completions,
    });
    let start = Instant::now();
    let cpu_before = sample_proc(Some(std::process::id()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut handles = Vec::new();
        for l in 0..lanes {
            // Split K as evenly as possible over the lanes.
            let window = inflight / lanes + usize::from(l < inflight % lanes);
            handles.push(tokio::task::spawn_local(lane(
                shared.clone(),
                target,
                window.max(1),
            )));
        }
        for h in handles {
            let _ = h.await;
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = sample_proc(Some(std::process::id()));
    // Every lane was awaited above and dropped its clone: this is the last reference.
    let shared = Rc::try_unwrap(shared).ok().expect("lanes finished");
    let mut stats = shared.stats.into_inner();
    stats.client_cpu_s = cpu_before.zip(cpu_after).map(|(a, b)| b.cpu_s - a.cpu_s);
    stats.window_s = seconds;
    (shared.work.into_inner(), stats, elapsed)
}
