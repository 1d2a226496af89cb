//! Release benchmark of the RD under a flood: one source (127.0.0.2, two sockets)
//! sends garbage, CON registrations, CON and NON lookups at up to `--rate` datagrams/s for
//! `--seconds`, while a well-behaved source (127.0.0.1) registers `--endpoints` endpoints, one
//! CON at a time with RFC 7252 retransmission (2 s, 4 retries). Prints ONE JSON line: the flood
//! rate achieved, what the flooder got back, the well-behaved success count and latency
//! percentiles.
//!
//! ```text
//! cargo build --release --bin coap-gateway
//! cargo bench --bench rd_flood -- [--gateway-bin PATH] [--rate 50000] [--seconds 5] [--endpoints 1000]
//! ```
//!
//! The gateway runs with `limits.exempt_loopback: false` and the default limits (200 req/s,
//! burst 1,000 per source; `--rate-limit 0` turns the rate limit off for comparison). Bounded: the flood by time and count, each registration by its
//! retransmission budget, the whole run by `--seconds` + 60 s.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use serde_json::json;

#[path = "support/gateway_process.rs"]
mod gateway_process;
use gateway_process::{spawn_gateway, GatewayProcess};

use device_sim::flood::flood_datagram;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release/coap-gateway")]
    gateway_bin: PathBuf,
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 1_000)]
    endpoints: usize,
    /// `limits.request_rate_per_s` of the gateway (0: rate limiting off, for comparison).
    #[arg(long, default_value_t = 200.0)]
    rate_limit: f64,
    /// Ignored (cargo bench passes it).
    #[arg(long)]
    bench: bool,
}

/// Write the flood's gateway config in `dir` and start the gateway on it.
fn spawn_flood_gateway(bin: &Path, dir: &Path, rate_limit: f64) -> Result<GatewayProcess, String> {
    let config = dir.join("config.yaml");
    let text = format!(
        "gateway:\n  data_dir: {:?}\nrd:\n  listen: [\"127.0.0.1:0\"]\npinger:\n  enabled: false\n\
         http:\n  listen: \"\"\nlimits:\n  exempt_loopback: false\n  request_rate_per_s: {rate_limit}\n",
        dir.join("data").display().to_string()
    );
    fs::write(&config, text).map_err(|e| e.to_string())?;
    spawn_gateway(bin, &config, &dir.join("gateway.log")).map(|(gateway, _)| gateway)
}

/// One CON registration with retransmission; the response code byte and the latency.
fn register(sock: &UdpSocket, rd: SocketAddr, n: usize, mid: u16) -> Option<(u8, Duration)> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = mid;
    let token: Vec<u8> = (0..8).map(|_| rand::random()).collect();
    p.set_token(token.clone());
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    p.add_option(CoapOption::ContentFormat, vec![40]);
    p.add_option(CoapOption::UriQuery, format!("ep=good-{n}").into_bytes());
    p.add_option(CoapOption::UriQuery, b"et=well-behaved".to_vec());
    p.payload = b"</sensors/temp>;rt=\"temperature\"".to_vec();
    let bytes = p.to_bytes().ok()?;
    let t0 = Instant::now();
    let mut buf = [0u8; 2048];
    let mut timeout = Duration::from_secs(2);
    for _ in 0..5 {
        sock.send_to(&bytes, rd).ok()?;
        let until = Instant::now() + timeout;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let Ok((len, _)) = sock.recv_from(&mut buf) else {
                break;
            };
            match Packet::from_bytes(&buf[..len]) {
                Ok(r) if r.get_token() == token.as_slice() && u8::from(r.header.code) != 0 => {
                    return Some((u8::from(r.header.code), t0.elapsed()));
                }
                _ => {}
            }
        }
        timeout *= 2;
    }
    None
}

fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = match spawn_flood_gateway(&args.gateway_bin, dir.path(), args.rate_limit) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("rd_flood: {e}");
            std::process::exit(1);
        }
    };
    let rd = gw.addr;
    let flood_for = Duration::from_secs(args.seconds);
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let too_many = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sockets: Vec<UdpSocket> = (0..2)
        .map(|_| UdpSocket::bind("127.0.0.2:0").expect("bind flooder"))
        .collect();
    let receivers: Vec<_> = sockets
        .iter()
        .map(|s| {
            let sock = s.try_clone().expect("clone socket");
            let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
            let (answered, too_many, stop) = (answered.clone(), too_many.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                let end = Instant::now() + flood_for + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    if let Ok((n, _)) = sock.recv_from(&mut buf) {
                        answered.fetch_add(1, Ordering::Relaxed);
                        if n > 1 && buf[1] == 0x9d {
                            too_many.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let flood_start = Instant::now();
    let flooder = {
        let (sent, rate) = (sent.clone(), args.rate);
        thread::spawn(move || {
            let mut rng = rand::thread_rng();
            let start = Instant::now();
            let mut i = 0u64;
            while start.elapsed() < flood_for && i < rate * flood_for.as_secs() {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while i < due {
                    let _ = sockets[(i % 2) as usize].send_to(&flood_datagram(i, &mut rng), rd);
                    i += 1;
                }
                thread::sleep(Duration::from_millis(1));
            }
            sent.store(i, Ordering::Relaxed);
            start.elapsed()
        })
    };
    thread::sleep(Duration::from_millis(200));
    let good = UdpSocket::bind("127.0.0.1:0").expect("bind well-behaved");
    let mut latencies = Vec::new();
    let mut completed_at = Vec::new();
    let mut failed = 0usize;
    let mid0: u16 = rand::random();
    let good_started = Instant::now();
    for n in 0..args.endpoints {
        match register(&good, rd, n, mid0.wrapping_add(n as u16)) {
            Some((0x41, took)) => {
                latencies.push(took);
                completed_at.push(Instant::now());
            }
            _ => failed += 1,
        }
    }
    let good_took = good_started.elapsed();
    let flood_took = flooder.join().expect("flooder");
    let flood_end = flood_start + flood_took;
    let done_during_flood = completed_at.iter().filter(|t| **t <= flood_end).count();
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for r in receivers {
        let _ = r.join();
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p) as usize)
            .map(|d| d.as_secs_f64() * 1000.0)
    };
    let sent = sent.load(Ordering::Relaxed);
    let answered = answered.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "bench": "rd_flood",
            "rate_limit_per_s": args.rate_limit,
            "flood_datagrams": sent,
            "flood_seconds": flood_took.as_secs_f64(),
            "flood_rate_per_s": (sent as f64 / flood_took.as_secs_f64()).round(),
            "flooder_answered": answered,
            "flooder_4_29": too_many.load(Ordering::Relaxed),
            "flooder_unanswered": sent.saturating_sub(answered),
            "well_behaved_ok": latencies.len(),
            "well_behaved_failed": failed,
            "well_behaved_seconds": good_took.as_secs_f64(),
            "well_behaved_done_during_flood": done_during_flood,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "max_ms": latencies.last().map(|d| d.as_secs_f64() * 1000.0),
        })
    );
    drop(gw);
}
