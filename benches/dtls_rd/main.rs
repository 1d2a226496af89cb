//! Resource Directory lookups and registration updates over established DTLS sessions
//! against the same over plain CoAP, against the real release gateway, in one run (issue 20:
//! "lookups and registrations over established sessions, target ≥ 0.6 of the plaintext
//! rate in the same run").
//!
//! ```sh
//! cargo bench --bench dtls_rd -- --endpoints 10000 --sessions 32 --k 16,64 --seconds 5
//! ```
//!
//! The gateway (`CARGO_BIN_EXE_coap-gateway`, a temporary data directory, Pinger and admin
//! HTTP off, `security.plain_coap: open`, coaps with an identities file of M PSK identities
//! `bench-<i>` sharing one key; `limits.exempt_loopback` left at its default, true, so no rate
//! limit or handshake budget bites on loopback) is preloaded with N registrations `dev-<i>`
//! over plain CoAP. Then M DTLS sessions (PSK-AES128-CCM8, identity `bench-<i>`) each
//! register their own endpoint `bench-<i>` over coaps, and M plain sockets register
//! `plain-<i>`. For each K, each phase runs `--seconds`: (a) `GET /rd-lookup/ep?ep=dev-<rnd>`
//! plain, then DTLS; (b) `POST <own location>` (a registration update, 2.04, durable) plain,
//! then DTLS; K requests in flight over the M lanes, one load thread (`engine`), the same code
//! for both modes. Reported: rates, p50/p99, DTLS ÷ plain, and the gateway's CPU per request
//! from /proc/PID/stat (utime + stime) deltas. A table, then one JSON line.
//!
//! Modules: `client` (the OpenSSL DTLS client), `channel` (plain and DTLS lanes), `engine`
//! (the load loop), `work` (requests and judging). Loopback only; every loop is bounded by a
//! count and a deadline.

mod channel;
mod client;
mod engine;
#[path = "../support/gateway_process.rs"]
mod gateway_process;
#[allow(dead_code)]
#[path = "../support/proc_stats.rs"]
mod proc_stats;
mod work;

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use channel::{Lane, Plain};
use engine::Stats;
use work::{Lookups, OwnRegistration, Preload, Updates};

#[derive(Debug, Parser)]
#[command(about = "RD lookups and updates over DTLS sessions vs plain CoAP, real gateway")]
struct Args {
    /// Registrations `dev-<i>` preloaded over plain CoAP (what lookups search).
    #[arg(long, default_value_t = 10_000)]
    endpoints: u64,
    /// Established DTLS sessions (and plain sockets) the load is spread over.
    #[arg(long, default_value_t = 32)]
    sessions: usize,
    /// Requests in flight, one or more values (each measured in turn).
    #[arg(long, default_value = "16,64", value_delimiter = ',')]
    k: Vec<usize>,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Bound on the preload and each setup step.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Passed by `cargo bench` to harness-less benches; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn fail(msg: &str) -> ! {
    eprintln!("dtls_rd: {msg}");
    std::process::exit(1)
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| fail(&format!("no free port: {e}")))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The gateway's coaps address, from its log, within `budget`.
fn coaps_addr(log: &Path, budget: Duration) -> Option<SocketAddr> {
    let deadline = Instant::now() + budget;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let addr = text
            .lines()
            .find_map(|l| l.split("rd listening on coaps://").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        if addr.is_some() {
            return addr;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn write_config(dir: &Path, m: usize, plain: u16, secure: u16) -> std::io::Result<()> {
    let key: String = client::PSK_KEY.iter().map(|b| format!("{b:02x}")).collect();
    let mut ids = String::from("identities:\n");
    for i in 0..m {
        let _ = writeln!(ids, "  - {{identity: bench-{i}, psk_hex: \"{key}\"}}");
    }
    let ids_path = dir.join("identities.yaml");
    std::fs::write(&ids_path, ids)?;
    std::fs::write(
        dir.join("gateway.yaml"),
        format!(
            "gateway:\n  data_dir: \"{}\"\nrd:\n  listen: [\"127.0.0.1:{plain}\"]\n\
             dtls:\n  listen: [\"127.0.0.1:{secure}\"]\n  identities_file: \"{}\"\n\
             security:\n  plain_coap: open\nhttp:\n  listen: \"\"\npinger:\n  enabled: false\n",
            dir.join("data").display(),
            ids_path.display()
        ),
    )
}

/// One measured phase: its statistics and the CPU both processes spent in it.
struct Measured {
    stats: Stats,
    gateway_cpu_s: f64,
    client_cpu_s: f64,
}

fn measure(
    pid: u32,
    lanes: &mut [Lane],
    work: &mut dyn engine::Work,
    k: usize,
    max: u64,
    window: Duration,
) -> Measured {
    let me = std::process::id();
    let tck = proc_stats::clk_tck();
    let (g0, c0) = (proc_stats::cpu_ticks(pid), proc_stats::cpu_ticks(me));
    let stats = engine::run(lanes, work, k, max, window);
    let (g1, c1) = (proc_stats::cpu_ticks(pid), proc_stats::cpu_ticks(me));
    let delta = |a: Option<u64>, b: Option<u64>| {
        a.zip(b)
            .map(|(a, b)| b.saturating_sub(a) as f64 / tck)
            .unwrap_or(f64::NAN)
    };
    Measured {
        stats,
        gateway_cpu_s: delta(g0, g1),
        client_cpu_s: delta(c0, c1),
    }
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn phase_json(name: &str, mode: &str, k: usize, m: &mut Measured) -> Value {
    let s = &mut m.stats;
    let rate = s.rate();
    let (p50, p99) = (s.percentile_ms(0.5), s.percentile_ms(0.99));
    json!({
        "phase": name, "mode": mode, "k": k, "rate_per_s": r1(rate),
        "p50_ms": r3(p50), "p99_ms": r3(p99), "sent": s.sent, "ok": s.ok, "bad": s.bad,
        "lost": s.lost, "send_failed": s.send_failed, "codes": s.codes,
        "elapsed_s": r3(s.elapsed_s),
        "gateway_cpu_s": r3(m.gateway_cpu_s),
        "gateway_cpu_us_per_req": r1(m.gateway_cpu_s * 1e6 / (s.ok.max(1) as f64)),
        "gateway_util": r3(m.gateway_cpu_s / s.elapsed_s.max(1e-9)),
        "client_util": r3(m.client_cpu_s / s.elapsed_s.max(1e-9)),
    })
}

fn main() {
    let args = Args::parse();
    let m = args.sessions.max(1);
    let n = args.endpoints.max(1);
    let window = Duration::from_secs_f64(args.seconds.max(0.1));
    let budget = Duration::from_secs(args.timeout_s.max(1));
    let load_start = loadavg();

    let dir = tempfile::Builder::new()
        .prefix("dtls_rd")
        .tempdir()
        .unwrap_or_else(|e| fail(&format!("tempdir: {e}")));
    let (plain_port, secure_port) = (free_port(), free_port());
    write_config(dir.path(), m, plain_port, secure_port)
        .unwrap_or_else(|e| fail(&format!("cannot write the config: {e}")));
    let log = dir.path().join("gateway.log");
    let bin = Path::new(env!("CARGO_BIN_EXE_coap-gateway"));
    let (gateway, _) = gateway_process::spawn_gateway(bin, &dir.path().join("gateway.yaml"), &log)
        .unwrap_or_else(|e| fail(&e));
    let pid = gateway.child.id();
    let coaps = coaps_addr(&log, Duration::from_secs(30))
        .unwrap_or_else(|| fail("the gateway logged no coaps address within 30 s"));
    eprintln!("gateway pid {pid}: udp {} coaps {coaps}", gateway.addr);

    // The directory lookups search: N registrations over 8 plain sockets, 64 in flight.
    let mut loaders: Vec<Lane> = (0..8)
        .map(|_| {
            Plain::connect(gateway.addr)
                .map(|p| Lane::new(Box::new(p)))
                .unwrap_or_else(|e| fail(&format!("socket: {e}")))
        })
        .collect();
    let mut preload = Preload {
        n,
        next: 0,
        lt: 86_400,
    };
    let pre = engine::run(&mut loaders, &mut preload, 64, n, budget);
    eprintln!(
        "preloaded {} of {n} registrations in {:.1} s ({:.0}/s; codes {:?})",
        pre.ok,
        pre.elapsed_s,
        pre.rate(),
        pre.codes
    );
    if pre.ok < n {
        fail("the preload did not complete");
    }
    drop(loaders);

    // M plain lanes and M DTLS sessions, each with a registration of its own.
    let mut plain: Vec<Lane> = (0..m)
        .map(|_| {
            Plain::connect(gateway.addr)
                .map(|p| Lane::new(Box::new(p)))
                .unwrap_or_else(|e| fail(&format!("socket: {e}")))
        })
        .collect();
    let ctx = client::Context::new().unwrap_or_else(|e| fail(&e));
    let handshakes = Instant::now();
    let conns = client::establish(&ctx, coaps, "bench-", m, budget).unwrap_or_else(|e| fail(&e));
    let handshake_s = handshakes.elapsed().as_secs_f64();
    let cipher = conns.first().map(|c| c.cipher()).unwrap_or_default();
    eprintln!("{m} DTLS sessions ({cipher}) in {handshake_s:.3} s");
    let mut secure: Vec<Lane> = conns.into_iter().map(|c| Lane::new(Box::new(c))).collect();
    let mut own_plain = OwnRegistration::new("plain-", m, 86_400);
    let r = engine::run(&mut plain, &mut own_plain, m, m as u64, budget);
    let mut own_secure = OwnRegistration::new("bench-", m, 86_400);
    let s = engine::run(&mut secure, &mut own_secure, m, m as u64, budget);
    if r.ok < m as u64 || s.ok < m as u64 {
        fail(&format!(
            "own registrations: plain {} of {m} ({:?}), DTLS {} of {m} ({:?})",
            r.ok, r.codes, s.ok, s.codes
        ));
    }

    let mut phases = Vec::new();
    let mut ratios = Vec::new();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<8} {:>3} {:<5} {:>9} {:>8} {:>8} {:>5} {:>4} {:>10} {:>7} {:>7}",
        "phase",
        "K",
        "mode",
        "req/s",
        "p50 ms",
        "p99 ms",
        "lost",
        "bad",
        "gw µs/req",
        "gw util",
        "client"
    );
    for &k in &args.k {
        for name in ["lookup", "update"] {
            let mut pair = Vec::new();
            for (mode, lanes) in [("plain", &mut plain), ("dtls", &mut secure)] {
                let mut work: Box<dyn engine::Work> = match name {
                    "lookup" => Box::new(Lookups::new(n, 4_096)),
                    _ if mode == "plain" => Box::new(Updates::new(&own_plain.locations)),
                    _ => Box::new(Updates::new(&own_secure.locations)),
                };
                let mut measured = measure(pid, lanes, work.as_mut(), k, u64::MAX, window);
                let v = phase_json(name, mode, k, &mut measured);
                let _ = writeln!(
                    table,
                    "{:<8} {:>3} {:<5} {:>9.0} {:>8.2} {:>8.2} {:>5} {:>4} {:>10.1} {:>7.2} {:>7.2}",
                    name,
                    k,
                    mode,
                    v["rate_per_s"].as_f64().unwrap_or(0.0),
                    v["p50_ms"].as_f64().unwrap_or(f64::NAN),
                    v["p99_ms"].as_f64().unwrap_or(f64::NAN),
                    measured.stats.lost,
                    measured.stats.bad,
                    v["gateway_cpu_us_per_req"].as_f64().unwrap_or(f64::NAN),
                    v["gateway_util"].as_f64().unwrap_or(f64::NAN),
                    v["client_util"].as_f64().unwrap_or(f64::NAN),
                );
                eprintln!("{v}");
                pair.push(v.clone());
                phases.push(v);
            }
            let rate = |v: &Value| v["rate_per_s"].as_f64().unwrap_or(0.0);
            let cpu = |v: &Value| v["gateway_cpu_us_per_req"].as_f64().unwrap_or(f64::NAN);
            ratios.push(json!({
                "phase": name, "k": k,
                "dtls_over_plain_rate": r3(rate(&pair[1]) / rate(&pair[0]).max(1e-9)),
                "dtls_over_plain_gw_cpu_per_req": r3(cpu(&pair[1]) / cpu(&pair[0])),
            }));
        }
    }
    drop(secure);
    drop(plain);
    drop(gateway);
    let gateway_log = std::fs::read_to_string(&log).unwrap_or_default();
    let warnings: Vec<&str> = gateway_log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    let load_end = loadavg();

    println!(
        "N = {n} registrations, M = {m} sessions/sockets, {} s per phase, {cipher}; \
         load average {load_start} -> {load_end}",
        args.seconds
    );
    print!("{table}");
    for r in &ratios {
        println!(
            "{:<8} K={:<3} DTLS / plain: rate {:.3}, gateway CPU per request {:.3}",
            r["phase"].as_str().unwrap_or(""),
            r["k"],
            r["dtls_over_plain_rate"].as_f64().unwrap_or(f64::NAN),
            r["dtls_over_plain_gw_cpu_per_req"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
    }
    if !warnings.is_empty() {
        println!(
            "gateway WARN/ERROR lines: {} (first: {:?})",
            warnings.len(),
            warnings.first()
        );
    }
    println!(
        "{}",
        json!({
            "bench": "dtls_rd", "endpoints": n, "sessions": m, "seconds_each": args.seconds,
            "cipher": cipher, "load_start": load_start, "load_end": load_end,
            "handshake_s": r3(handshake_s),
            "preload": {"ok": pre.ok, "rate_per_s": r1(pre.rate()), "elapsed_s": r3(pre.elapsed_s)},
            "phases": phases, "ratios": ratios,
            "gateway_warn_error_lines": warnings.len(),
        })
    );
}
