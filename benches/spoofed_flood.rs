//! Release benchmark of the amplification defence under a spoofed-source flood: the
//! gateway (release binary, default limits) runs in network namespace `a` (10.77.0.1); in
//! namespace `b` a raw socket (IP_HDRINCL) writes CON lookups whose IPv4 sources cycle through
//! 10.78.0.0/22 (1,024 addresses) at `--rate` datagrams/s for `--seconds`. A route in `a` sends
//! 10.78.0.0/22 via 10.77.0.2, so every answer crosses the veth into `b`, where an AF_PACKET
//! socket counts it (and dissects it: whole, or cut to the strict bound with Echo). Meanwhile
//! an honest constrained client at 10.77.0.2 (CON, 2-byte token, no Block2, no Echo, one
//! datagram per answer, RFC 7252 retransmission) looks up a result that fits in one block, one
//! lookup at a time every `--honest-interval-ms`, from `--warmup-s` before the flood on (so
//! that it is a client the gateway knew before the flood: the excess budget's reserve).
//!
//! Prints ONE JSON line: the flood sent (datagrams, bytes), what went back to the /22 (bytes,
//! whole and cut answers), the bytes beyond 3x each request (against the excess budget times
//! the duration, plus its one-second burst), the honest client's lookups attempted / complete
//! and its latency percentiles.
//!
//! ```text
//! cargo build --release --bin coap-gateway
//! cargo bench --bench spoofed_flood -- [--gateway-bin PATH] [--rate 5000] [--seconds 10]
//! ```
//!
//! Needs root (network namespaces, raw and packet sockets). Bounded: the flood by `--seconds`
//! and `--rate` x `--seconds` datagrams, each honest lookup by its retransmission budget
//! (2 + 4 + 8 + 16 s at most, and never past the flood's end + 45 s); the namespaces and the
//! gateway are removed on every exit path (their `Drop`).

// netns.rs reports a missing namespace through `super::skip` (unused here: the bench fails).
#[path = "support/gateway_process.rs"]
mod gateway_process;
#[path = "../tests/common/netns.rs"]
mod netns;
#[path = "../tests/common/skip.rs"]
mod skip;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use gateway_process::spawn_gateway_with;
use netns::{NetnsPair, Side, A_V4, B_V4, IFACE};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release/coap-gateway")]
    gateway_bin: PathBuf,
    /// Spoofed lookups per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Pause between the honest client's lookups (each waits for its answer first).
    #[arg(long, default_value_t = 100)]
    honest_interval_ms: u64,
    /// Endpoints registered for the looked-up result (12: one ~1 KB block).
    #[arg(long, default_value_t = 12)]
    endpoints: usize,
    /// Seconds the honest client looks up before the flood begins (the excess budget's reserve
    /// pays only sources answered at least 10 s before a flood; 0: client and flood start
    /// together, so the client is a newcomer to the flood).
    #[arg(long, default_value_t = 11)]
    warmup_s: u64,
    /// Ignored (cargo bench passes it).
    #[arg(long)]
    bench: bool,
}

/// The gateway's default `limits.unproven_excess_bytes_per_s` (config.yaml).
const DEFAULT_EXCESS_BUDGET: u64 = 262_144;
const RD_PORT: u16 = 5683;
/// The spoofed sources: 10.78.0.0/22.
const SPOOF_BASE: u32 = u32::from_be_bytes([10, 78, 0, 0]);
const SPOOF_COUNT: u32 = 1024;
/// Not in libc for every target: linux/if_packet.h and asm-generic/socket.h.
const PACKET_STATISTICS: libc::c_int = 6;
const SO_RCVBUFFORCE: libc::c_int = 33;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The lookup both the flood and the honest client ask for.
fn lookup(mid: u16, token: [u8; 2]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p.add_option(CoapOption::UriPath, b"rd-lookup".to_vec());
    p.add_option(CoapOption::UriPath, b"res".to_vec());
    p.add_option(CoapOption::UriQuery, b"et=flood".to_vec());
    p.to_bytes().unwrap_or_default()
}

/// One IPv4/UDP datagram from `src` to the RD, UDP checksum 0 (allowed on IPv4); the kernel
/// fills in the IP checksum and ID (IP_HDRINCL).
fn spoofed(src: Ipv4Addr, sport: u16, coap: &[u8]) -> Vec<u8> {
    let udp_len = 8 + coap.len();
    let total = 20 + udp_len;
    let mut d = Vec::with_capacity(total);
    d.extend_from_slice(&[0x45, 0]); // version 4, IHL 5 words; DSCP 0
    d.extend_from_slice(&(total as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0, 0x40, 0]); // ID (the kernel's), don't fragment
    d.extend_from_slice(&[64, 17, 0, 0]); // TTL, UDP, header checksum (the kernel's)
    d.extend_from_slice(&src.octets());
    d.extend_from_slice(&A_V4.octets());
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&RD_PORT.to_be_bytes());
    d.extend_from_slice(&(udp_len as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(coap);
    d
}

/// What came back to the /22, as the packet socket in `b` saw it.
#[derive(Default)]
struct Back {
    datagrams: AtomicU64,
    bytes: AtomicU64,
    whole: AtomicU64,
    cut: AtomicU64,
    /// Sum over answers of max(0, answer - 3 x request).
    beyond_3x: AtomicU64,
    stop: AtomicBool,
}

/// An AF_PACKET socket (IP layer) made in `b`'s namespace, with a large receive buffer.
fn packet_socket(pair: &NetnsPair) -> Result<OwnedFd, String> {
    pair.run_in(Side::B, || -> Result<OwnedFd, String> {
        // SAFETY: plain socket calls on a fresh descriptor that OwnedFd then owns.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM,
                (libc::ETH_P_IP as u16).to_be() as libc::c_int,
            );
            if fd < 0 {
                return Err(format!(
                    "AF_PACKET socket: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let size: libc::c_int = 64 << 20;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            Ok(fd)
        }
    })
    .map_err(|e| format!("enter namespace b: {e}"))?
}

/// Packets the kernel dropped on `fd` for lack of buffer (PACKET_STATISTICS; reading resets it).
fn packet_drops(fd: &OwnedFd) -> u64 {
    #[repr(C)]
    #[derive(Default)]
    struct TpacketStats {
        packets: u32,
        drops: u32,
    }
    let mut st = TpacketStats::default();
    let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `st`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            (&mut st as *mut TpacketStats).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        u64::from(st.drops)
    } else {
        0
    }
}

/// Count answers from the RD to the /22 until `back.stop`.
fn count_back(fd: OwnedFd, back: Arc<Back>, request_len: u64) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut drops = 0;
        while !back.stop.load(Ordering::Relaxed) {
            // SAFETY: recv into a buffer of the given length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let pkt = &buf[..n as usize];
            if pkt.len() < 28 || pkt[0] >> 4 != 4 || pkt[9] != 17 {
                continue;
            }
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
            let dst = u32::from_be_bytes([pkt[16], pkt[17], pkt[18], pkt[19]]);
            if src != A_V4 || dst & !(SPOOF_COUNT - 1) != SPOOF_BASE || pkt.len() < ihl + 8 {
                continue;
            }
            let coap = &pkt[ihl + 8..];
            let len = coap.len() as u64;
            back.datagrams.fetch_add(1, Ordering::Relaxed);
            back.bytes.fetch_add(len, Ordering::Relaxed);
            back.beyond_3x
                .fetch_add(len.saturating_sub(3 * request_len), Ordering::Relaxed);
            match Packet::from_bytes(coap) {
                Ok(p) if p.get_option(CoapOption::Unknown(252)).is_some() => {
                    back.cut.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {
                    back.whole.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {}
            }
        }
        drops += packet_drops(&fd);
        drops
    })
}

/// `veth0`'s received bytes in `b` (includes Ethernet headers and the honest client's answers).
fn veth_rx_bytes(pair: &NetnsPair) -> Option<u64> {
    let out = pair
        .command(Side::B, "cat")
        .arg(format!("/sys/class/net/{IFACE}/statistics/rx_bytes"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// One register from 10.77.0.2 (before the flood), answered 2.01.
fn register(sock: &UdpSocket, rd: SocketAddr, i: usize) -> Result<(), String> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = 0x5000 + i as u16;
    p.set_token(vec![0x55, i as u8]);
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    p.add_option(CoapOption::ContentFormat, vec![40]);
    p.add_option(
        CoapOption::UriQuery,
        format!("ep=flood-{i:02}").into_bytes(),
    );
    p.add_option(CoapOption::UriQuery, b"et=flood".to_vec());
    p.payload = b"</sensors/temperature>;rt=\"temperature\";if=\"sensor\"".to_vec();
    let bytes = p.to_bytes().map_err(|e| format!("{e:?}"))?;
    let mut buf = [0u8; 1500];
    for _ in 0..5 {
        sock.send_to(&bytes, rd).map_err(|e| e.to_string())?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Ok(a) = Packet::from_bytes(&buf[..n]) {
                if a.header.message_id == p.header.message_id {
                    return match u8::from(a.header.code) {
                        0x41 => Ok(()),
                        c => Err(format!("registration {i}: code {}.{:02}", c >> 5, c & 31)),
                    };
                }
            }
        }
    }
    Err(format!("registration {i}: no answer"))
}

/// The honest client's tally.
#[derive(Default, Debug)]
struct Honest {
    /// Lookups begun before the flood (all expected complete).
    calm_attempted: u64,
    calm_complete: u64,
    attempted: u64,
    complete: u64,
    cut: u64,
    failed: u64,
    latencies: Vec<Duration>,
}

/// Lookups one at a time until `stop`; complete = one datagram, 2.05, no Block2 (so nothing
/// was cut) and no Echo, all `expect` links in it.
fn honest_client(
    sock: UdpSocket,
    rd: SocketAddr,
    expect: usize,
    interval: Duration,
    flooding: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    hard_stop: Instant,
) -> Honest {
    let mut h = Honest::default();
    let mut buf = [0u8; 1500];
    let mut mid: u16 = 0x9000;
    while !stop.load(Ordering::Relaxed) && Instant::now() < hard_stop {
        mid = mid.wrapping_add(1);
        let req = lookup(mid, mid.to_be_bytes());
        let calm = !flooding.load(Ordering::Relaxed);
        if !calm {
            h.attempted += 1;
        }
        let t0 = Instant::now();
        let mut answer = None;
        let mut timeout = Duration::from_secs(2);
        'tries: for _ in 0..5 {
            if sock.send_to(&req, rd).is_err() {
                break;
            }
            let until = Instant::now() + timeout;
            while let Some(left) = until
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            {
                let _ = sock.set_read_timeout(Some(left));
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    break;
                };
                if let Ok(p) = Packet::from_bytes(&buf[..n]) {
                    if p.header.message_id == mid && p.get_token() == mid.to_be_bytes() {
                        answer = Some(p);
                        break 'tries;
                    }
                }
            }
            timeout *= 2;
            if Instant::now() >= hard_stop {
                break;
            }
        }
        match answer {
            None if calm => h.calm_attempted += 1,
            None => h.failed += 1,
            Some(p) if calm => {
                h.calm_attempted += 1;
                let whole = u8::from(p.header.code) == 0x45
                    && p.get_option(CoapOption::Block2).is_none()
                    && p.payload.len() > 3 * req.len();
                h.calm_complete += u64::from(whole);
            }
            Some(p) => {
                h.latencies.push(t0.elapsed());
                let body = String::from_utf8_lossy(&p.payload);
                let whole = u8::from(p.header.code) == 0x45
                    && p.get_option(CoapOption::Block2).is_none()
                    && p.get_option(CoapOption::Unknown(252)).is_none()
                    && body.matches('<').count() == expect;
                if whole {
                    h.complete += 1;
                } else {
                    h.cut += 1;
                }
            }
        }
        thread::sleep(interval);
    }
    h
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn run(args: &Args) -> Result<serde_json::Value, String> {
    let bin = fs::canonicalize(&args.gateway_bin)
        .map_err(|e| format!("{}: {e} (build it first)", args.gateway_bin.display()))?;
    let pair = NetnsPair::create("flood")?;
    ip(&[
        "-n",
        &pair.a,
        "route",
        "add",
        "10.78.0.0/22",
        "via",
        &B_V4.to_string(),
    ])?;

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = dir.path().join("config.yaml");
    // Default limits: no `limits:` section.
    fs::write(
        &config,
        format!(
            "gateway:\n  data_dir: {:?}\nrd:\n  listen: [\"{A_V4}:{RD_PORT}\"]\npinger:\n  enabled: false\nhttp:\n  listen: \"\"\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &pair.a]).arg(&bin);
    let (_gateway, _) = spawn_gateway_with(cmd, &bin, &config, &dir.path().join("gateway.log"))?;
    let rd = SocketAddr::V4(SocketAddrV4::new(A_V4, RD_PORT));

    let honest_sock = pair
        .run_in(Side::B, || UdpSocket::bind((B_V4, 0)))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    honest_sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    for i in 0..args.endpoints {
        register(&honest_sock, rd, i)?;
    }

    let raw = pair
        .run_in(Side::B, || {
            socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
            )
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("raw socket: {e}"))?;
    let request_len = lookup(0, [0, 0]).len() as u64;
    let back = Arc::new(Back::default());
    let counter = count_back(packet_socket(&pair)?, back.clone(), request_len);
    let rx_before = veth_rx_bytes(&pair);

    let stop = Arc::new(AtomicBool::new(false));
    let flooding = Arc::new(AtomicBool::new(false));
    let flood_end_bound = Instant::now() + Duration::from_secs(args.warmup_s + args.seconds);
    let honest = {
        let (stop, interval) = (stop.clone(), Duration::from_millis(args.honest_interval_ms));
        let flooding = flooding.clone();
        let expect = args.endpoints;
        let hard_stop = flood_end_bound + Duration::from_secs(45);
        thread::spawn(move || {
            honest_client(honest_sock, rd, expect, interval, flooding, stop, hard_stop)
        })
    };
    thread::sleep(Duration::from_secs(args.warmup_s));
    flooding.store(true, Ordering::Relaxed);

    // The flood, paced per millisecond, bounded by time and by count.
    let dst = socket2::SockAddr::from(SocketAddrV4::new(A_V4, RD_PORT));
    let total = args.rate.saturating_mul(args.seconds);
    let started = Instant::now();
    let (mut sent, mut sent_bytes, mut send_errors) = (0u64, 0u64, 0u64);
    while sent < total && started.elapsed() < Duration::from_secs(args.seconds) {
        let due = ((started.elapsed().as_secs_f64() * args.rate as f64) as u64).min(total);
        while sent < due {
            let src = SPOOF_BASE + (sent % u64::from(SPOOF_COUNT)) as u32;
            let round = sent / u64::from(SPOOF_COUNT);
            let coap = lookup(round as u16, (round as u16).to_be_bytes());
            let d = spoofed(Ipv4Addr::from(src), 40_000 + (round % 20_000) as u16, &coap);
            match raw.send_to(&d, &dst) {
                Ok(_) => sent_bytes += coap.len() as u64,
                Err(_) => send_errors += 1,
            }
            sent += 1;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let flood_elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let honest = honest.join().map_err(|_| "honest client panicked")?;
    // Late answers still on their way.
    thread::sleep(Duration::from_secs(2));
    let counted_for = started.elapsed();
    back.stop.store(true, Ordering::Relaxed);
    let drops = counter.join().map_err(|_| "counter panicked")?;
    let rx_delta = match (rx_before, veth_rx_bytes(&pair)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };

    let mut lat = honest.latencies.clone();
    lat.sort();
    let budget_allowance = DEFAULT_EXCESS_BUDGET as f64 * (1.0 + counted_for.as_secs_f64());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    Ok(json!({
        "bench": "spoofed_flood",
        "flood": {
            "sources": format!("10.78.0.0/22 ({SPOOF_COUNT})"),
            "rate_asked": args.rate,
            "seconds": flood_elapsed.as_secs_f64(),
            "datagrams": sent,
            "send_errors": send_errors,
            "coap_bytes": sent_bytes,
            "request_bytes": request_len,
        },
        "back_to_the_22": {
            "datagrams": back.datagrams.load(Ordering::Relaxed),
            "coap_bytes": back.bytes.load(Ordering::Relaxed),
            "whole_answers": back.whole.load(Ordering::Relaxed),
            "cut_with_echo": back.cut.load(Ordering::Relaxed),
            "bytes_beyond_3x": back.beyond_3x.load(Ordering::Relaxed),
            "budget_allowance_bytes": budget_allowance as u64,
            "counted_for_s": counted_for.as_secs_f64(),
            "packet_socket_drops": drops,
            "veth_rx_bytes_in_b": rx_delta,
        },
        "honest": {
            "warmup_s": args.warmup_s,
            "calm_complete_of": format!("{}/{}", honest.calm_complete, honest.calm_attempted),
            "attempted": honest.attempted,
            "complete": honest.complete,
            "cut": honest.cut,
            "failed": honest.failed,
            "p50_ms": percentile(&lat, 0.5),
            "p99_ms": percentile(&lat, 0.99),
            "max_ms": percentile(&lat, 1.0),
        },
        "loadavg": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    }))
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("spoofed_flood: {e}");
            std::process::exit(1);
        }
    }
}
