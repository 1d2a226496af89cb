//! Release benchmark of the Resource Directory over real UDP on loopback: every figure of the
//! performance issue (issue 10) from one run, printed as ONE JSON line on stdout, each phase
//! also logged on stderr as it finishes.
//!
//! ```text
//! cargo bench --bench rd_bench -- [--target ADDR [--pid PID] | --gateway-bin PATH]
//!     --endpoints N --inflight K --seconds S --checkpoints 1000,10000,100000
//! ```
//!
//! Spawn mode (default) starts `target/release/coap-gateway` (it builds nothing itself) on a
//! temporary data dir with `rd.listen: ["127.0.0.1:0"]`, reads the bound address from its
//! `rd listening on udp://ADDR` log line, and reads its memory from `/proc/PID/status`. After
//! the last checkpoint it SIGKILLs the gateway, starts it again on the same data dir and times
//! the first successful endpoint lookup (restart figure). `--target` measures a running RD.
//!
//! The load generator is independent of the gateway's CoAP code: coap-lite 0.13 builds and
//! parses messages, tokio UDP sockets carry them. K confirmable requests are spread over
//! several sockets ("lanes"), each with its own Message IDs, random 8-byte tokens, an RFC 7252
//! retransmission timer (given up after `MAX_RETRANSMIT`), and a fresh source socket every
//! `MIDS_PER_SOCKET` messages: a server deduplicates on (peer, MID) for EXCHANGE_LIFETIME
//! (247 s), so a reused MID would be answered from its cache instead of being processed.
//! Every loop is bounded both by a count and by a deadline.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use rand::Rng;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

#[path = "support/gateway_process.rs"]
mod gateway_process;
use gateway_process::{spawn_gateway, GatewayProcess};

/// A fresh source socket after this many messages: 65,536 MIDs must not wrap within 247 s.
const MIDS_PER_SOCKET: u32 = 30_000;
/// RFC 7252 §4.8 defaults, with fewer retransmissions: a loss on loopback is an overload.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_RETRANSMIT: u8 = 3;
/// How long an empty-ACKed request may wait for its separate response.
const SEPARATE_RESPONSE_WAIT: Duration = Duration::from_secs(10);
/// How long a phase waits for outstanding answers after it stops sending.
const DRAIN: Duration = Duration::from_secs(10);
const TOKEN_LEN: usize = 8;
const CONTENT_FORMAT_LINK: u16 = 40;

const PAYLOAD3: &str = "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs,\
</sensors/hum>;rt=\"humidity\";if=\"sensor\",\
</actuators/led>;rt=\"light\";if=\"actuator\"";
const RARE_LINK: &str = ",</x>;rt=\"rare\"";
const RARE_ENDPOINTS: u64 = 10;

const CODE_CREATED: u8 = 0x41; // 2.01
const CODE_CHANGED: u8 = 0x44; // 2.04
const CODE_CONTENT: u8 = 0x45; // 2.05

#[derive(Debug, Parser)]
#[command(about = "CoRE Resource Directory benchmark (issue 10 figures)")]
struct Args {
    /// Measure an already running RD at this address instead of spawning the gateway.
    #[arg(long)]
    target: Option<SocketAddr>,
    /// Pid of the --target RD, for RSS and CPU figures.
    #[arg(long)]
    pid: Option<u32>,
    /// The gateway binary spawn mode runs (built beforehand with `cargo build --release`).
    #[arg(long, default_value = "target/release/coap-gateway")]
    gateway_bin: PathBuf,
    /// sled cache of the spawned gateway, MiB.
    #[arg(long, default_value_t = 32)]
    cache_mb: u64,
    #[arg(long, default_value_t = 10_000)]
    endpoints: u64,
    /// Requests in flight for registrations, updates and lookups.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    /// Source sockets sharing the in-flight window.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Duration of each throughput phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value = "1000,10000,100000", value_delimiter = ',')]
    checkpoints: Vec<u64>,
    /// Cap on the total registration time.
    #[arg(long, default_value_t = 600.0)]
    max_register_seconds: f64,
    #[arg(long, default_value_t = 90_000)]
    lt: u32,
    /// Skip the SIGKILL + restart measurement (spawn mode only).
    #[arg(long)]
    no_restart: bool,
    /// Give every endpoint links of its own (per-device paths and a `title`), so no two
    /// registrations have equal link sets: the registry's memory without link-set sharing.
    #[arg(long)]
    distinct_links: bool,
    /// `perf record` the gateway during each phase of the last checkpoint into FILE.<phase>.
    #[arg(long)]
    perf_record: Option<PathBuf>,
    /// Passed by `cargo bench` to harness-less benches; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

// ------------------------------------------------------------------------------------------
// Requests and the per-phase workload

/// Encode a CON request with a zeroed MID and an 8-byte zero token; lanes patch both in place.
fn encode_request(
    code: u8,
    path: &[&str],
    query: &[String],
    extra: &[(CoapOption, Vec<u8>)],
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::from(code);
    p.set_token(vec![0; TOKEN_LEN]);
    for seg in path {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    for (opt, value) in extra {
        p.add_option(*opt, value.clone());
    }
    p.payload = payload.to_vec();
    // Our own requests are far below any size limit: an encoding failure is a bug here.
    p.to_bytes_unlimited().expect("request encodes")
}

fn uint_bytes(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

fn block2_value(num: u32, szx: u8) -> Vec<u8> {
    uint_bytes((num << 4) | u32::from(szx))
}

fn split_target(target: &str) -> (Vec<&str>, Vec<String>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs = path.split('/').filter(|s| !s.is_empty()).collect();
    let qs = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    (segs, qs)
}

fn get_request(target: &str, extra: &[(CoapOption, Vec<u8>)]) -> Vec<u8> {
    let (p, q) = split_target(target);
    encode_request(1, &p, &q, extra, b"")
}

/// What a phase sends and how it judges an answer.
trait Workload {
    fn request(&mut self, i: u64) -> Vec<u8>;
    /// `local_port` is the source port the request left from (the registrant's base).
    fn response(&mut self, i: u64, code: u8, msg: &[u8], local_port: u16) -> bool;
}

/// The same request every time; any answer with `want` counts.
struct Fixed {
    bytes: Vec<u8>,
    want: u8,
}

impl Workload for Fixed {
    fn request(&mut self, _i: u64) -> Vec<u8> {
        self.bytes.clone()
    }
    fn response(&mut self, _i: u64, code: u8, _msg: &[u8], _port: u16) -> bool {
        code == self.want
    }
}

/// The endpoints this run registered: where each one lives and which source port its base is.
#[derive(Default)]
struct Directory {
    locations: Vec<Option<Vec<String>>>,
    base_port: Vec<u16>,
    rare: Vec<bool>,
}

impl Directory {
    fn registered(&self) -> u64 {
        self.locations.iter().filter(|l| l.is_some()).count() as u64
    }

    /// Registered endpoints per base (source) port: what a resource lookup must list.
    fn base_histogram(&self) -> HashMap<u16, u64> {
        let mut want = HashMap::new();
        for (loc, port) in self.locations.iter().zip(&self.base_port) {
            if loc.is_some() {
                *want.entry(*port).or_insert(0) += 1;
            }
        }
        want
    }
}

struct Registrations {
    first: u64,
    lt: u32,
    dir: Rc<RefCell<Directory>>,
    distinct_links: bool,
}

impl Workload for Registrations {
    fn request(&mut self, i: u64) -> Vec<u8> {
        let ep = self.first + i;
        let query = vec![format!("ep=dev-{ep}"), format!("lt={}", self.lt)];
        let rare = self.dir.borrow().rare[ep as usize];
        let links = if self.distinct_links {
            format!(
                "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs;title=\"dev-{ep}\",\
                 </sensors/hum/{ep}>;rt=\"humidity\";if=\"sensor\",\
                 </actuators/led/{ep}>;rt=\"light\";if=\"actuator\""
            )
        } else {
            PAYLOAD3.to_string()
        };
        let payload = if rare {
            format!("{links}{RARE_LINK}")
        } else {
            links
        };
        encode_request(
            2,
            &["rd"],
            &query,
            &[(
                CoapOption::ContentFormat,
                uint_bytes(u32::from(CONTENT_FORMAT_LINK)),
            )],
            payload.as_bytes(),
        )
    }
    fn response(&mut self, i: u64, code: u8, msg: &[u8], port: u16) -> bool {
        if code != CODE_CREATED {
            return false;
        }
        let Ok(p) = Packet::from_bytes(msg) else {
            return false;
        };
        let Some(loc) = p.get_option(CoapOption::LocationPath) else {
            return false;
        };
        let segs: Vec<String> = loc
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let ep = (self.first + i) as usize;
        let mut dir = self.dir.borrow_mut();
        dir.locations[ep] = Some(segs);
        dir.base_port[ep] = port;
        true
    }
}

/// Empty POSTs to the registration resources, round-robin over the registered endpoints.
struct Updates {
    endpoints: Vec<usize>,
    dir: Rc<RefCell<Directory>>,
}

impl Updates {
    fn endpoint(&self, i: u64) -> usize {
        self.endpoints[(i % self.endpoints.len() as u64) as usize]
    }
}

impl Workload for Updates {
    fn request(&mut self, i: u64) -> Vec<u8> {
        let ep = self.endpoint(i);
        let dir = self.dir.borrow();
        let segs: Vec<&str> = dir.locations[ep]
            .as_ref()
            .map(|l| l.iter().map(String::as_str).collect())
            .unwrap_or_default();
        encode_request(2, &segs, &[], &[], b"")
    }
    fn response(&mut self, i: u64, code: u8, _msg: &[u8], port: u16) -> bool {
        if code != CODE_CHANGED {
            return false;
        }
        // The RD moves a base it derived from the source address to the update's source.
        let ep = self.endpoint(i);
        self.dir.borrow_mut().base_port[ep] = port;
        true
    }
}

// ------------------------------------------------------------------------------------------
// The load engine: lanes on one current-thread runtime

#[derive(Default, Debug)]
struct Stats {
    sent: u64,
    ok: u64,
    errors: u64,
    timeouts: u64,
    retransmits: u64,
    resets: u64,
    stray: u64,
    codes: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
    /// Completion instants of successful answers, in order (registration bands).
    completions: Vec<Instant>,
    /// CPU seconds this process spent in the phase.
    client_cpu_s: Option<f64>,
    /// Successful answers that arrived before the phase's deadline, and its length.
    ok_in_window: u64,
    window_s: f64,
}

struct Shared<W> {
    work: RefCell<W>,
    next: Cell<u64>,
    count: u64,
    deadline: Instant,
    stats: RefCell<Stats>,
    record_completions: bool,
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

struct Pending {
    i: u64,
    first: Instant,
    last_send: Instant,
    retries: u8,
    acked: bool,
    mid: u16,
    bytes: Vec<u8>,
}

fn code_str(c: u8) -> String {
    format!("{}.{:02}", c >> 5, c & 31)
}

/// Source ports this run has used. The RD remembers (peer, MID) for EXCHANGE_LIFETIME, so a
/// new socket that the kernel happens to give a port used minutes ago could collide with old
/// MIDs and be answered from the RD's cache (seen as lost requests plus stray answers).
static USED_PORTS: std::sync::Mutex<Option<std::collections::HashSet<u16>>> =
    std::sync::Mutex::new(None);

fn claim_port(port: u16) -> bool {
    let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    used.get_or_insert_with(Default::default).insert(port)
}

/// Open sockets until one has a port not used before in this run (≤ 64 tries); the rejected
/// ones stay open meanwhile so the kernel cannot hand their port out again at once.
fn fresh_port<S>(mut open: impl FnMut() -> std::io::Result<(S, u16)>) -> std::io::Result<S> {
    let mut rejected = Vec::new();
    for _ in 0..64 {
        let (s, port) = open()?;
        if claim_port(port) {
            return Ok(s);
        }
        rejected.push(s);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no fresh source port in 64 tries",
    ))
}

async fn new_lane_socket(target: SocketAddr) -> std::io::Result<UdpSocket> {
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

async fn lane<W: Workload>(shared: Rc<Shared<W>>, target: SocketAddr, window: usize) {
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

async fn handle_datagram<W: Workload>(
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
fn run_phase<W: Workload + 'static>(
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

fn percentile(sorted: &[u32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    Some(f64::from(sorted[idx]) / 1000.0)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn stats_json(
    st: &mut Stats,
    elapsed: f64,
    server: Option<&ProcSample>,
    server_after: Option<&ProcSample>,
) -> Value {
    st.latencies_us.sort_unstable();
    let mut v = json!({
        "sent": st.sent, "ok": st.ok, "errors": st.errors, "timeouts": st.timeouts,
        "retransmits": st.retransmits, "resets": st.resets, "stray": st.stray, "codes": st.codes,
        "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        // Bounded by time: answers within the window over the window (stragglers drained
        // afterwards do not dilute it). Bounded by count: all answers over the time taken.
        "rate_per_s": if st.window_s > 0.0 && elapsed >= st.window_s {
            round1(st.ok_in_window as f64 / st.window_s)
        } else if elapsed > 0.0 {
            round1(st.ok as f64 / elapsed)
        } else {
            0.0
        },
        "p50_ms": percentile(&st.latencies_us, 0.5), "p99_ms": percentile(&st.latencies_us, 0.99),
        "max_ms": st.latencies_us.last().map(|x| f64::from(*x) / 1000.0),
    });
    if let (Some(a), Some(b)) = (server, server_after) {
        let cpu = b.cpu_s - a.cpu_s;
        v["server_cpu_s"] = json!(round2(cpu));
        v["server_cpu_util"] = json!(if elapsed > 0.0 {
            round2(cpu / elapsed)
        } else {
            0.0
        });
        // Capacity per core, independent of what else the shared machine runs meanwhile.
        if cpu > 0.0 {
            v["ok_per_server_cpu_s"] = json!((st.ok as f64 / cpu).round());
        }
    }
    // The load generator's own CPU: near 1.0 means it, not the RD, may be the limit.
    if let Some(c) = st.client_cpu_s {
        v["client_cpu_util"] = json!(if elapsed > 0.0 {
            round2(c / elapsed)
        } else {
            0.0
        });
    }
    v
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn log_phase(label: &str, v: &Value) {
    eprintln!("{} {label:<34} {v}", clock());
}

fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

// ------------------------------------------------------------------------------------------
// The RD process: spawn, memory, CPU

struct ProcSample {
    rss_kb: Option<u64>,
    hwm_kb: Option<u64>,
    cpu_s: f64,
}

fn sample_proc(pid: Option<u32>) -> Option<ProcSample> {
    let pid = pid?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |k: usize| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // CLK_TCK is 100 on every Linux this runs on.
    let cpu_s = (ticks(11) + ticks(12)) / 100.0;
    Some(ProcSample {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        cpu_s,
    })
}

fn mem_json(s: Option<&ProcSample>) -> Value {
    match s {
        Some(s) => json!({"VmRSS_kB": s.rss_kb, "VmHWM_kB": s.hwm_kb, "cpu_s": s.cpu_s}),
        None => Value::Null,
    }
}

fn write_config(dir: &Path, listen: &str, cache_mb: u64) -> std::io::Result<PathBuf> {
    let cfg = dir.join("config.yaml");
    let text = format!(
        "gateway:\n  data_dir: {data}\n  cache_mb: {cache_mb}\nrd:\n  listen: [\"{listen}\"]\nhttp:\n  listen: \"\"\n",
        data = dir.join("data").display()
    );
    fs::write(&cfg, text)?;
    Ok(cfg)
}

/// SIGTERM, then SIGKILL after 10 s: the end of the run is bounded.
fn stop_gateway(mut g: GatewayProcess) {
    let pid = g.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = g.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("rd_bench: gateway ignored SIGTERM for 10 s; killing it");
    let _ = g.child.kill();
    let _ = g.child.wait();
}

// ------------------------------------------------------------------------------------------
// One-at-a-time requests (checks, Block2 retrieval, restart probing)

struct Probe {
    sock: StdUdpSocket,
    mid: u16,
    sent: u32,
    target: SocketAddr,
}

impl Probe {
    fn new(target: SocketAddr) -> std::io::Result<Probe> {
        let local = if target.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let sock = fresh_port(|| {
            let s = StdUdpSocket::bind(local)?;
            let port = s.local_addr()?.port();
            Ok((s, port))
        })?;
        sock.connect(target)?;
        Ok(Probe {
            sock,
            mid: rand::thread_rng().gen(),
            sent: 0,
            target,
        })
    }

    /// One request with up to `attempts` transmissions `timeout` apart; the parsed answer.
    fn request(&mut self, mut bytes: Vec<u8>, timeout: Duration, attempts: u32) -> Option<Packet> {
        if self.sent >= MIDS_PER_SOCKET {
            *self = Probe::new(self.target).ok()?;
        }
        self.sent += 1;
        self.mid = self.mid.wrapping_add(1);
        let token: u64 = rand::thread_rng().gen();
        bytes[2..4].copy_from_slice(&self.mid.to_be_bytes());
        bytes[4..12].copy_from_slice(&token.to_be_bytes());
        self.sock.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = vec![0u8; 2048];
        for _ in 0..attempts {
            self.sock.send(&bytes).ok()?;
            let until = Instant::now() + timeout;
            while Instant::now() < until {
                let Ok(n) = self.sock.recv(&mut buf) else {
                    break;
                };
                let Ok(p) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if p.header.code == MessageClass::Empty {
                    continue; // empty ACK; the answer follows
                }
                if p.header.get_type() == MessageType::Confirmable {
                    let ack = [0x60, 0, buf[2], buf[3]];
                    let _ = self.sock.send(&ack);
                }
                if p.get_token() == token.to_be_bytes() {
                    return Some(p);
                }
            }
        }
        None
    }
}

fn code_u8(p: &Packet) -> u8 {
    u8::from(p.header.code)
}

/// Links of a link-format document, split at top-level commas (quotes respected).
fn split_links(doc: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_quote, mut in_uri) = (0, false, false);
    for (i, c) in doc.char_indices() {
        match c {
            '"' if !in_uri => in_quote = !in_quote,
            '<' if !in_quote => in_uri = true,
            '>' if !in_quote => in_uri = false,
            ',' if !in_quote && !in_uri => {
                out.push(&doc[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < doc.len() {
        out.push(&doc[start..]);
    }
    out
}

fn href(link: &str) -> Option<&str> {
    let l = link.trim_start();
    l.strip_prefix('<')?.split_once('>').map(|(h, _)| h)
}

/// Port of an absolute `coap://host:port/...` href.
fn href_port(h: &str) -> Option<u16> {
    let rest = h.strip_prefix("coap://")?;
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// Sequential Block2 retrieval of `target` (szx 6), checked against the registered bases.
/// `want` maps each registrant's base port to its number of endpoints (exact check); without
/// it (the RD changes while the transfer runs) only the total is checked against `expected`.
fn full_block2(
    target_addr: SocketAddr,
    target: &str,
    want: Option<&HashMap<u16, u64>>,
    expected: u64,
    limit: Duration,
) -> Value {
    let Ok(mut probe) = Probe::new(target_addr) else {
        return json!({"error": "socket"});
    };
    let start = Instant::now();
    let mut body = Vec::new();
    let mut num = 0u32;
    let mut etags = std::collections::BTreeSet::new();
    let mut complete = false;
    let mut error = None;
    while start.elapsed() < limit && num < 1_000_000 {
        let req = get_request(target, &[(CoapOption::Block2, block2_value(num, 6))]);
        // Generous: block 0 renders the whole result, behind any backlog of earlier phases.
        let Some(p) = probe.request(req, Duration::from_secs(2), 5) else {
            error = Some(format!("timeout at block {num}"));
            break;
        };
        if code_u8(&p) != CODE_CONTENT {
            error = Some(format!("{} at block {num}", code_str(code_u8(&p))));
            break;
        }
        if let Some(e) = p.get_first_option(CoapOption::ETag) {
            etags.insert(e.clone());
        }
        body.extend_from_slice(&p.payload);
        let Some(b2) = p.get_first_option(CoapOption::Block2) else {
            complete = true;
            break;
        };
        let v = b2.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
        if v >> 4 != num || v & 7 != 6 {
            error = Some(format!(
                "asked block {num} szx 6, got block {} szx {}",
                v >> 4,
                v & 7
            ));
            break;
        }
        num += 1;
        if v & 8 == 0 {
            complete = true;
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&body);
    let links = split_links(&text);
    let mut got: HashMap<u16, u64> = HashMap::new();
    let mut unexpected = 0u64;
    for l in &links {
        match href(l)
            .filter(|h| h.ends_with("/sensors/temp"))
            .and_then(href_port)
        {
            Some(port) => *got.entry(port).or_insert(0) += 1,
            None => unexpected += 1,
        }
    }
    let (mut missing, mut duplicated) = (0u64, 0u64);
    match want {
        Some(want) => {
            for (port, w) in want {
                let g = got.get(port).copied().unwrap_or(0);
                missing += w.saturating_sub(g);
                duplicated += g.saturating_sub(*w);
            }
            for (port, g) in &got {
                if !want.contains_key(port) {
                    duplicated += g;
                }
            }
        }
        None => {
            let n: u64 = got.values().sum();
            missing = expected.saturating_sub(n);
            duplicated = n.saturating_sub(expected);
        }
    }
    json!({
        "blocks": num, "bytes": body.len(), "seconds": (elapsed * 1000.0).round() / 1000.0,
        "links": links.len(), "expected_links": expected, "exact_check": want.is_some(), "missing": missing,
        "duplicated": duplicated, "unexpected_links": unexpected, "distinct_etags": etags.len(),
        "complete": complete, "error": error,
        "consistent": complete && missing == 0 && duplicated == 0 && unexpected == 0 && etags.len() <= 1,
    })
}

/// One GET; the payload of a 2.05 or None.
fn get_once(addr: SocketAddr, target: &str) -> Option<(u8, String)> {
    let mut probe = Probe::new(addr).ok()?;
    let p = probe.request(get_request(target, &[]), Duration::from_secs(2), 3)?;
    Some((
        code_u8(&p),
        String::from_utf8_lossy(&p.payload).into_owned(),
    ))
}

// ------------------------------------------------------------------------------------------
// The run

struct Run {
    args: Args,
    addr: SocketAddr,
    pid: Option<u32>,
    dir: Rc<RefCell<Directory>>,
}

impl Run {
    fn throughput(
        &self,
        label: &str,
        bytes: Vec<u8>,
        want: u8,
        inflight: usize,
        sockets: usize,
    ) -> Value {
        let before = sample_proc(self.pid);
        let (_, mut st, el) = run_phase(
            self.addr,
            Fixed { bytes, want },
            u64::MAX,
            inflight,
            sockets,
            self.args.seconds,
            false,
        );
        let after = sample_proc(self.pid);
        let mut v = stats_json(&mut st, el, before.as_ref(), after.as_ref());
        v["settle_s"] = json!(self.settle());
        log_phase(label, &v);
        v
    }

    /// Wait (≤ 60 s) until the RD is idle, so a backlog (answers it still computes for requests
    /// this phase gave up on) does not run into the next phase. Returns the seconds waited.
    fn settle(&self) -> f64 {
        let start = Instant::now();
        let Some(mut prev) = sample_proc(self.pid) else {
            return 0.0;
        };
        while start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
            let Some(now) = sample_proc(self.pid) else {
                break;
            };
            // Under 10% of a core over the last 100 ms: idle.
            if now.cpu_s - prev.cpu_s < 0.011 {
                break;
            }
            prev = now;
        }
        round2(start.elapsed().as_secs_f64())
    }

    /// `perf record` of the gateway into `<--perf-record>.<phase>`, at the last checkpoint only.
    fn perf(&self, last: bool, phase: &str) -> Option<Child> {
        let base = self.args.perf_record.as_ref().filter(|_| last)?;
        let mut file = base.clone().into_os_string();
        file.push(format!(".{phase}"));
        start_perf(self.pid, Path::new(&file))
    }

    fn checkpoint(&self, cp: u64, last: bool) -> Value {
        let k = self.args.inflight;
        let socks = self.args.sockets;
        let registered = self.dir.borrow().registered();
        let mut out =
            json!({"registered": registered, "mem": mem_json(sample_proc(self.pid).as_ref())});
        let ep_target = "/rd-lookup/ep?ep=dev-123";
        let check = get_once(self.addr, ep_target);
        out["lookup_ep_check"] = json!(check.as_ref().map(|(c, p)| json!({"code": code_str(*c), "has_dev_123": p.contains("dev-123"), "links": split_links(p).len()})));
        let rare_expected = {
            let d = self.dir.borrow();
            d.rare
                .iter()
                .zip(&d.locations)
                .filter(|(r, l)| **r && l.is_some())
                .count()
        };
        let rare = get_once(self.addr, "/rd-lookup/res?rt=rare");
        out["lookup_rare_check"] = json!({
            "expected_links": rare_expected,
            "code": rare.as_ref().map(|(c, _)| code_str(*c)),
            "links": rare.as_ref().map(|(_, p)| split_links(p).iter().filter(|l| href(l).is_some_and(|h| h.ends_with("/x"))).count()),
        });
        let perf = self.perf(last, "lookup_ep");
        out["lookup_ep"] = self.throughput(
            &format!("@{cp} GET {ep_target}"),
            get_request(ep_target, &[]),
            CODE_CONTENT,
            k,
            socks,
        );
        stop_perf(perf);
        let perf = self.perf(last, "lookup_rare");
        out["lookup_res_rare"] = self.throughput(
            &format!("@{cp} GET /rd-lookup/res?rt=rare"),
            get_request("/rd-lookup/res?rt=rare", &[]),
            CODE_CONTENT,
            k,
            socks,
        );
        stop_perf(perf);
        let first_block = get_request(
            "/rd-lookup/res?rt=temperature",
            &[(CoapOption::Block2, block2_value(0, 6))],
        );
        let perf = self.perf(last, "block0");
        out["lookup_res_temperature_block0"] = self.throughput(
            &format!("@{cp} GET ?rt=temperature block 0"),
            first_block,
            CODE_CONTENT,
            k,
            socks,
        );
        stop_perf(perf);
        let limit = Duration::from_secs_f64((self.args.seconds * 6.0).max(60.0));
        let want = self.dir.borrow().base_histogram();
        let fb = full_block2(
            self.addr,
            "/rd-lookup/res?rt=temperature",
            Some(&want),
            registered,
            limit,
        );
        log_phase(&format!("@{cp} full Block2 ?rt=temperature"), &fb);
        out["lookup_res_temperature_full"] = fb;
        let endpoints: Vec<usize> = self
            .dir
            .borrow()
            .locations
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .map(|(i, _)| i)
            .collect();
        if endpoints.is_empty() {
            return out;
        }
        let perf = self.perf(last, "update");
        let before = sample_proc(self.pid);
        let updates = Updates {
            endpoints: endpoints.clone(),
            dir: self.dir.clone(),
        };
        let (_, mut st, el) = run_phase(
            self.addr,
            updates,
            u64::MAX,
            k,
            socks,
            self.args.seconds,
            false,
        );
        let after = sample_proc(self.pid);
        stop_perf(perf);
        let mut upd = stats_json(&mut st, el, before.as_ref(), after.as_ref());
        upd["settle_s"] = json!(self.settle());
        log_phase(&format!("@{cp} update POST <location>"), &upd);
        out["updates"] = upd;
        // Consistency while the directory changes: a second client fetches the whole result
        // block by block during more updates (which move bases, so the representation changes
        // under it); its blocks must still come from one snapshot.
        let addr = self.addr;
        let concurrent = std::thread::spawn(move || {
            full_block2(
                addr,
                "/rd-lookup/res?rt=temperature",
                None,
                registered,
                limit,
            )
        });
        let updates = Updates {
            endpoints,
            dir: self.dir.clone(),
        };
        let (_, mut st, el) = run_phase(
            self.addr,
            updates,
            u64::MAX,
            k,
            socks,
            self.args.seconds,
            false,
        );
        let during = concurrent
            .join()
            .unwrap_or_else(|_| json!({"error": "retrieval thread panicked"}));
        log_phase(&format!("@{cp} full Block2 during updates"), &during);
        out["lookup_res_temperature_full_during_updates"] = during;
        out["updates_during_full_block2"] = stats_json(&mut st, el, None, None);
        self.settle();
        out["mem_after"] = mem_json(sample_proc(self.pid).as_ref());
        eprintln!("{} @{cp} memory {}", clock(), out["mem_after"]);
        out
    }
}

fn start_perf(pid: Option<u32>, file: &Path) -> Option<Child> {
    let pid = pid?;
    Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "--call-graph",
            "dwarf,8192",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("rd_bench: perf record: {e}"))
        .ok()
}

fn stop_perf(p: Option<Child>) {
    let Some(mut p) = p else { return };
    let _ = Command::new("kill")
        .args(["-INT", &p.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = p.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = p.kill();
    let _ = p.wait();
}

/// A setup failure the benchmark cannot measure around: say why and stop.
fn fail(msg: &str) -> ! {
    eprintln!("rd_bench: {msg}");
    std::process::exit(1)
}

/// Registration-rate bands from the completion instants (pauses for checkpoints excluded).
fn bands(completions: &[(u64, Instant, Duration)], n: u64) -> Value {
    // completions: (cumulative count, instant, paused time before it)
    let at = |c: u64| -> Option<f64> {
        if c == 0 {
            return Some(0.0);
        }
        completions.get((c - 1) as usize).map(|(_, t, paused)| {
            t.duration_since(completions[0].1).as_secs_f64() - paused.as_secs_f64()
        })
    };
    let rate = |a: u64, b: u64| -> Option<f64> {
        let (ta, tb) = (at(a)?, at(b)?);
        // The first completion is time zero; add one mean interval so band 0 is not short.
        (tb > ta).then(|| round1((b - a) as f64 / (tb - ta)))
    };
    // The bands of issue 10 (0..1k, 1k..10k, 10k..N), cut short when N is smaller.
    let mut v = json!({});
    for (from, to) in [(0u64, 1_000u64), (1_000, 10_000), (10_000, u64::MAX)] {
        if n > from {
            let end = to.min(n);
            let label = format!(
                "{from}..{}",
                if end == n {
                    "N".to_string()
                } else {
                    end.to_string()
                }
            );
            v[label] = json!(rate(from.max(1), end));
        }
    }
    v["N"] = json!(n);
    if n >= 100_000 {
        let early = rate(1, 1000);
        let late = rate(90_000, 100_000);
        v["90k..100k"] = json!(late);
        v["ratio_90k..100k_over_0..1k"] = json!(early
            .zip(late)
            .map(|(e, l)| (l / e * 1000.0).round() / 1000.0));
    }
    v
}

fn main() {
    let args = Args::parse();
    let n = args.endpoints;
    let mut checkpoints: Vec<u64> = args
        .checkpoints
        .iter()
        .copied()
        .filter(|c| *c > 0 && *c <= n)
        .collect();
    if n == 0 {
        fail("--endpoints must be at least 1");
    }
    if !checkpoints.contains(&n) {
        checkpoints.push(n);
    }
    checkpoints.sort_unstable();
    checkpoints.dedup();

    let tmp = tempfile::Builder::new()
        .prefix("rd_bench")
        .tempdir()
        .unwrap_or_else(|e| fail(&format!("cannot create a temporary directory: {e}")));
    let mut gateway = None;
    let (addr, pid) = match args.target {
        Some(a) => (a, args.pid),
        None => {
            let cfg = write_config(tmp.path(), "127.0.0.1:0", args.cache_mb)
                .unwrap_or_else(|e| fail(&format!("cannot write the gateway config: {e}")));
            match spawn_gateway(&args.gateway_bin, &cfg, &tmp.path().join("gateway.log")) {
                Ok((g, t)) => {
                    eprintln!(
                        "{} spawned {} pid {} on {} in {:.3}s",
                        clock(),
                        args.gateway_bin.display(),
                        g.child.id(),
                        g.addr,
                        t.as_secs_f64()
                    );
                    let r = (g.addr, Some(g.child.id()));
                    gateway = Some(g);
                    r
                }
                Err(e) => {
                    eprintln!("rd_bench: {e}");
                    std::process::exit(1);
                }
            }
        }
    };

    // The rare link goes to 10 endpoints among the first checkpoint, so every checkpoint sees 10.
    let first_cp = checkpoints[0];
    let step = (first_cp / RARE_ENDPOINTS).max(1);
    let dir = Rc::new(RefCell::new(Directory {
        locations: vec![None; n as usize],
        base_port: vec![0; n as usize],
        rare: (0..n)
            .map(|i| i % step == step / 2 && i / step < RARE_ENDPOINTS)
            .collect(),
    }));
    let run = Run {
        args,
        addr,
        pid,
        dir: dir.clone(),
    };
    let mut result = json!({
        "bench": "rd_bench", "target": addr.to_string(), "pid": pid,
        "spawned": gateway.is_some(), "endpoints": n, "inflight": run.args.inflight, "distinct_links": run.args.distinct_links,
        "sockets": run.args.sockets, "seconds_each": run.args.seconds, "checkpoints": checkpoints,
        "mem_start": mem_json(sample_proc(pid).as_ref()),
    });

    result["well_known_core_k16"] = run.throughput(
        "GET /.well-known/core K=16",
        get_request("/.well-known/core", &[]),
        CODE_CONTENT,
        16,
        run.args.sockets,
    );

    // Registrations, paused at each checkpoint for the lookup phases.
    let mut completions: Vec<(u64, Instant, Duration)> = Vec::with_capacity(n as usize);
    let mut paused = Duration::ZERO;
    let mut last_end: Option<Instant> = None;
    let mut reg_total = Stats::default();
    let mut reg_elapsed = 0.0;
    let reg_budget = Instant::now() + Duration::from_secs_f64(run.args.max_register_seconds);
    let mut cps = serde_json::Map::new();
    let mut reg_segments = Vec::new();
    let mut from = 0u64;
    for (ci, &cp) in checkpoints.iter().enumerate() {
        let remaining = reg_budget
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        if remaining <= 0.0 {
            eprintln!("rd_bench: registration budget exhausted at {from}");
            break;
        }
        if let Some(end) = last_end {
            paused += end.elapsed();
        }
        let last = ci + 1 == checkpoints.len();
        let perf = run.perf(last, "register");
        let before = sample_proc(pid);
        let work = Registrations {
            first: from,
            lt: run.args.lt,
            dir: dir.clone(),
            distinct_links: run.args.distinct_links,
        };
        let (_, mut st, el) = run_phase(
            addr,
            work,
            cp - from,
            run.args.inflight,
            run.args.sockets,
            remaining,
            true,
        );
        let after = sample_proc(pid);
        stop_perf(perf);
        // Band rates count registration time only: from here to the next segment is a pause.
        last_end = Some(st.completions.last().copied().unwrap_or_else(Instant::now));
        run.settle();
        for t in &st.completions {
            completions.push((completions.len() as u64 + 1, *t, paused));
        }
        let mut seg = stats_json(&mut st, el, before.as_ref(), after.as_ref());
        seg["from"] = json!(from);
        seg["to"] = json!(cp);
        log_phase(&format!("register {from}..{cp}"), &seg);
        reg_segments.push(seg);
        reg_elapsed += el;
        reg_total.sent += st.sent;
        reg_total.ok += st.ok;
        reg_total.errors += st.errors;
        reg_total.timeouts += st.timeouts;
        reg_total.retransmits += st.retransmits;
        for (c, k) in &st.codes {
            *reg_total.codes.entry(c.clone()).or_insert(0) += k;
        }
        if st.ok < cp - from {
            eprintln!(
                "rd_bench: only {} of {} registrations in {from}..{cp} succeeded",
                st.ok,
                cp - from
            );
        }
        from = cp;
        cps.insert(cp.to_string(), run.checkpoint(cp, last));
    }
    // Completion instants are stamped in arrival order, so count c completed at completions[c-1].
    completions.sort_by_key(|(_, t, _)| *t);
    let registered = dir.borrow().registered();
    result["registrations"] = json!({
        "ok": reg_total.ok, "sent": reg_total.sent, "errors": reg_total.errors,
        "timeouts": reg_total.timeouts, "retransmits": reg_total.retransmits, "codes": reg_total.codes,
        "non_2_01": reg_total.sent.saturating_sub(reg_total.codes.get("2.01").copied().unwrap_or(0)),
        "elapsed_s": (reg_elapsed * 1000.0).round() / 1000.0,
        "rate_per_s": if reg_elapsed > 0.0 { round1(reg_total.ok as f64 / reg_elapsed) } else { 0.0 },
        "bands_per_s": bands(&completions, registered),
        "segments": reg_segments,
    });
    eprintln!(
        "{} registrations {}",
        clock(),
        result["registrations"]["bands_per_s"]
    );
    result["checkpoints"] = Value::Object(cps);
    result["mem_end"] = mem_json(sample_proc(pid).as_ref());

    if let Some(mut g) = gateway {
        if run.args.no_restart {
            stop_gateway(g);
        } else {
            result["restart"] = restart(&mut g, &run.args, tmp.path());
            log_phase("restart", &result["restart"]);
            stop_gateway(g);
        }
    }
    result["gateway_log"] = gateway_log_summary(tmp.path());
    println!("{result}");
}

/// Warnings and errors the spawned gateway logged (both runs), so none goes unnoticed.
fn gateway_log_summary(dir: &Path) -> Value {
    let mut count = 0usize;
    let mut first = Vec::new();
    for name in ["gateway.log", "gateway-restart.log"] {
        let text = fs::read_to_string(dir.join(name)).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        {
            count += 1;
            if first.len() < 5 {
                first.push(line.to_string());
            }
        }
    }
    json!({"warn_error_lines": count, "first": first})
}

/// SIGKILL the gateway, start it on the same data dir and port, and time the first good lookup.
fn restart(g: &mut GatewayProcess, args: &Args, dir: &Path) -> Value {
    let old_addr = g.addr;
    let _ = g.child.kill();
    let _ = g.child.wait();
    let cfg = match write_config(dir, &old_addr.to_string(), args.cache_mb) {
        Ok(c) => c,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let log = dir.join("gateway-restart.log");
    let spawned = Instant::now();
    let out = match fs::File::create(&log) {
        Ok(f) => f,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let child = match Command::new(&args.gateway_bin)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let Ok(mut probe) = Probe::new(g.addr) else {
        return json!({"error": "socket"});
    };
    let deadline = spawned + Duration::from_secs(120);
    let mut answered = None;
    let mut attempts = 0u32;
    while Instant::now() < deadline {
        attempts += 1;
        let req = get_request("/rd-lookup/ep?ep=dev-123", &[]);
        // Until the socket is bound, the probe gets ICMP unreachable at once; retry quickly.
        if let Some(p) = probe.request(req, Duration::from_millis(20), 1) {
            if code_u8(&p) == CODE_CONTENT
                && String::from_utf8_lossy(&p.payload).contains("dev-123")
            {
                answered = Some(spawned.elapsed());
                break;
            }
        } else {
            std::thread::sleep(Duration::from_millis(2));
            if let Ok(p) = Probe::new(g.addr) {
                probe = p;
            }
        }
    }
    let log_text = {
        let mut s = String::new();
        let _ = fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    let registry_line = log_text
        .lines()
        .find(|l| l.contains("registry opened"))
        .map(String::from);
    let new_pid = child.id();
    let mem = mem_json(sample_proc(Some(new_pid)).as_ref());
    // Swap the restarted process in so the caller stops it.
    g.child = child;
    json!({
        "first_lookup_s": answered.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
        "probes": attempts, "registry_log": registry_line, "mem_after_restart": mem, "pid": new_pid,
    })
}
