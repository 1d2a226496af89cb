//! CoAP over DTLS 1.2: what the DTLS transport of [`coap_endpoint::Endpoint`]
//! costs, server and load in one run on loopback.
//!
//! `cargo bench -p coap-endpoint --bench dtls -- [--seconds 5] [--sessions 20000]
//! [--workers 4] [--in-flight 8] [--m 32] [--k 16,64] [--load-threads 1]
//! [--phases memory,psk,cert,requests]`
//!
//! - **memory**: a fresh server; a child process (this binary, `--client-hold`) opens
//!   `--sessions` PSK sessions and keeps them idle; the server process's RssAnon/VmRSS growth
//!   divided by the sessions the server holds (`memory.rs`). First, so that no heap freed by
//!   the other phases hides the growth.
//! - **psk**, **cert**: new sessions per second, `--workers` threads × `--in-flight`
//!   handshakes on fresh sockets for `--seconds` each, closed with close_notify once
//!   established; PSK (`TLS_PSK_WITH_AES_128_CCM_8`, and GCM) and certificates (a P-256 PKI
//!   made at start, `TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8`, and GCM; the client's certificate
//!   verified by the server, the server's by the client). p50/p99 handshake latency, and the
//!   server thread's CPU time per handshake (`/proc/self/task/TID/schedstat`).
//! - **requests**: for each K, `--m` plain sockets to the endpoint's plain socket, then `--m`
//!   established PSK-CCM_8 sessions to its DTLS socket, K CoAP GETs in flight, `--seconds`
//!   each; the ratio DTLS/plain, and server CPU time per request for both.
//!
//! Every phase ends by `--seconds` (plus a bounded drain) or by its count. Prints a table and
//! one JSON line (`{"bench":"dtls",...}`).

use std::net::SocketAddr;
use std::time::Duration;

use openssl::ssl::SslContext;

#[path = "dtls/client.rs"]
mod client;
#[path = "dtls/handshakes.rs"]
mod handshakes;
#[path = "dtls/memory.rs"]
mod memory;
#[path = "dtls/pki.rs"]
mod pki;
#[path = "dtls/requests.rs"]
mod requests;
#[path = "dtls/server.rs"]
mod server;

use client::Suite;
use handshakes::Plan;
use requests::{Channel, Plain};
use server::Server;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    seconds: u64,
    sessions: u64,
    workers: usize,
    in_flight: usize,
    m: usize,
    ks: Vec<usize>,
    load_threads: usize,
    phases: Vec<String>,
    hold: bool,
    target: Option<SocketAddr>,
}

fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    value(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn parse() -> Args {
    // `cargo bench` appends `--bench`; unknown flags are ignored.
    let a: Vec<String> = std::env::args().collect();
    Args {
        seconds: num(&a, "--seconds", 5u64).clamp(1, 600),
        sessions: num(&a, "--sessions", 20_000u64).clamp(1, 200_000),
        workers: num(&a, "--workers", 4usize).clamp(1, 64),
        in_flight: num(&a, "--in-flight", 8usize).clamp(1, 1_024),
        m: num(&a, "--m", 32usize).clamp(1, 4_096),
        ks: value(&a, "--k")
            .unwrap_or("16,64")
            .split(',')
            .filter_map(|k| k.trim().parse().ok())
            .filter(|&k| k > 0)
            .collect(),
        load_threads: num(&a, "--load-threads", 1usize).clamp(1, 64),
        phases: value(&a, "--phases")
            .unwrap_or("memory,psk,cert,requests")
            .split(',')
            .map(|p| p.trim().to_string())
            .collect(),
        hold: a.iter().any(|x| x == "--client-hold"),
        target: value(&a, "--target").and_then(|t| t.parse().ok()),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// One row of the table, and its JSON members.
struct Report {
    rows: Vec<(String, String, String)>,
    json: Vec<String>,
}

impl Report {
    fn row(&mut self, what: &str, figure: String, target: &str) {
        println!("{what:<44} {figure:>28}   {target}");
        self.rows.push((what.into(), figure, target.into()));
    }

    fn json(&mut self, key: &str, value: impl std::fmt::Display) {
        self.json.push(format!("\"{key}\":{value}"));
    }
}

fn handshake_phase(
    report: &mut Report,
    server: &Server,
    suite: Suite,
    ctx: &SslContext,
    args: &Args,
    target: &str,
) {
    let cpu0 = server.cpu_ns();
    let done0 = server.completed();
    let mut out = handshakes::run(
        ctx,
        &Plan {
            server: server.secure,
            workers: args.workers,
            in_flight: args.in_flight,
            quota: 100_000 * args.seconds,
            duration: Duration::from_secs(args.seconds),
            keep: false,
            identity_base: 0,
        },
    );
    // Let the server take the last flights before its CPU time is read.
    std::thread::sleep(Duration::from_millis(200));
    let server_done = server.completed().saturating_sub(done0);
    let cpu_us = server.cpu_ns().saturating_sub(cpu0) as f64 / 1_000.0 / server_done.max(1) as f64;
    let (p50, p99) = (out.latency_ms(0.50), out.latency_ms(0.99));
    let label = suite.label();
    report.row(
        &format!("new {label} sessions/s ({})", out.cipher.unwrap_or("-")),
        format!("{:.0}", out.rate()),
        target,
    );
    report.row(
        &format!("  {label} handshake p50 / p99"),
        format!("{p50:.2} / {p99:.2} ms"),
        "",
    );
    report.row(
        &format!("  {label} server CPU per handshake"),
        format!("{cpu_us:.0} µs"),
        "",
    );
    report.row(
        &format!("  {label} completed / failed / timed out"),
        format!("{} / {} / {}", out.completed, out.failed, out.timed_out),
        "",
    );
    if let Some(why) = &out.first_failure {
        println!("  first failure: {why}");
    }
    report.json(
        &format!("{label}_sessions_per_s"),
        format!("{:.0}", out.rate()),
    );
    report.json(&format!("{label}_p50_ms"), format!("{p50:.2}"));
    report.json(&format!("{label}_p99_ms"), format!("{p99:.2}"));
    report.json(&format!("{label}_server_cpu_us"), format!("{cpu_us:.0}"));
    report.json(&format!("{label}_failed"), out.failed + out.timed_out);
}

fn request_phase(report: &mut Report, server: &Server, ctx: &SslContext, args: &Args) -> R<()> {
    let seconds = Duration::from_secs(args.seconds);
    for &k in &args.ks {
        let cpu0 = server.cpu_ns();
        let plain_channels: Vec<Box<dyn Channel>> = (0..args.m)
            .map(|_| Plain::connect(server.plain).map(|p| Box::new(p) as Box<dyn Channel>))
            .collect::<Result<_, _>>()?;
        let plain = requests::run(plain_channels, k, args.load_threads, seconds);
        let plain_cpu = server.cpu_ns().saturating_sub(cpu0) as f64 / plain.completed.max(1) as f64;

        let sessions = handshakes::run(
            ctx,
            &Plan {
                server: server.secure,
                workers: 1,
                in_flight: 8,
                quota: args.m as u64,
                duration: Duration::from_secs(10),
                keep: true,
                identity_base: 5_000_000_000,
            },
        );
        if sessions.kept.len() < args.m {
            return Err(format!(
                "only {} of {} sessions for the request phase ({:?})",
                sessions.kept.len(),
                args.m,
                sessions.first_failure
            )
            .into());
        }
        let dtls_channels: Vec<Box<dyn Channel>> = sessions
            .kept
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn Channel>)
            .collect();
        let cpu1 = server.cpu_ns();
        let dtls = requests::run(dtls_channels, k, args.load_threads, seconds);
        let dtls_cpu = server.cpu_ns().saturating_sub(cpu1) as f64 / dtls.completed.max(1) as f64;
        let ratio = dtls.per_s() / plain.per_s().max(1e-9);
        report.row(
            &format!("GET/s plain, K={k} over M={}", args.m),
            format!("{:.0}", plain.per_s()),
            "",
        );
        report.row(
            &format!("GET/s DTLS psk_ccm8, K={k} over M={}", args.m),
            format!("{:.0}", dtls.per_s()),
            "",
        );
        report.row(
            &format!("  DTLS / plain, K={k}"),
            format!("{ratio:.2}"),
            "≥ 0.6",
        );
        report.row(
            &format!("  server CPU per GET plain / DTLS, K={k}"),
            format!("{:.1} / {:.1} µs", plain_cpu / 1_000.0, dtls_cpu / 1_000.0),
            "",
        );
        if plain.lost_windows + dtls.lost_windows > 0 {
            println!(
                "  lost windows: plain {}, DTLS {}",
                plain.lost_windows, dtls.lost_windows
            );
        }
        report.json(
            &format!("plain_k{k}_req_per_s"),
            format!("{:.0}", plain.per_s()),
        );
        report.json(
            &format!("dtls_k{k}_req_per_s"),
            format!("{:.0}", dtls.per_s()),
        );
        report.json(&format!("dtls_over_plain_k{k}"), format!("{ratio:.3}"));
        report.json(
            &format!("server_cpu_us_per_get_plain_k{k}"),
            format!("{:.2}", plain_cpu / 1_000.0),
        );
        report.json(
            &format!("server_cpu_us_per_get_dtls_k{k}"),
            format!("{:.2}", dtls_cpu / 1_000.0),
        );
    }
    Ok(())
}

fn memory_phase(report: &mut Report, args: &Args) -> R<()> {
    // One thread per client process (two processes for 20,000): the server needs a core too.
    let m = memory::measure(args.sessions, 1, 16, (args.seconds * 12).max(60))?;
    println!("  client process descriptor limit: {}", m.nofile);
    report.row(
        "idle sessions held (server's count)",
        format!("{} of {}", m.server_sessions, m.requested),
        "20,000",
    );
    report.row(
        "server RssAnon growth per idle session (own record layer)",
        format!("{:.0} B", m.anon_per_compact_session_bytes()),
        "≤ 16,384 B",
    );
    report.row(
        "server VmRSS growth per idle session (own record layer)",
        format!("{:.0} B", m.rss_per_compact_session_bytes()),
        "",
    );
    report.row(
        "  sessions moved to the own record layer",
        format!("{} of {}", m.compacted, m.held),
        "",
    );
    report.row(
        "  RssAnon per session just after the handshake (OpenSSL SSL)",
        format!("{:.0} B", m.anon_per_session_bytes()),
        "",
    );
    report.row(
        "  RssAnon before / after handshakes / own record layer",
        format!(
            "{} / {} / {} KiB",
            m.rss_anon_before_kib, m.rss_anon_after_kib, m.rss_anon_compact_kib
        ),
        "",
    );
    report.row(
        "  time to establish them",
        format!(
            "{:.1} s ({:.0}/s)",
            m.establish_s,
            m.held as f64 / m.establish_s.max(1e-9)
        ),
        "",
    );
    report.row(
        "  server CPU per handshake while establishing",
        format!("{:.0} µs", m.server_cpu_us_per_handshake),
        "",
    );
    report.json("idle_sessions_held", m.server_sessions);
    report.json("idle_session_failed", m.failed);
    report.json(
        "idle_session_rss_anon_bytes",
        format!("{:.0}", m.anon_per_session_bytes()),
    );
    report.json(
        "idle_session_vm_rss_bytes",
        format!("{:.0}", m.rss_per_session_bytes()),
    );
    report.json("idle_sessions_compacted", m.compacted);
    report.json(
        "idle_session_compact_rss_anon_bytes",
        format!("{:.0}", m.anon_per_compact_session_bytes()),
    );
    report.json(
        "idle_session_compact_vm_rss_bytes",
        format!("{:.0}", m.rss_per_compact_session_bytes()),
    );
    report.json("establish_s", format!("{:.2}", m.establish_s));
    Ok(())
}

fn main() -> R<()> {
    let args = parse();
    if args.hold {
        let target = args.target.ok_or("--client-hold needs --target ADDR")?;
        return memory::hold_main(&memory::HoldArgs {
            target,
            sessions: args.sessions,
            workers: args.workers,
            in_flight: args.in_flight,
            seconds: args.seconds,
        });
    }
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_before = loadavg();
    println!(
        "dtls bench: {}, nproc {nproc}, load {load_before}, --seconds {} --workers {} --in-flight {} --m {} --k {:?} --load-threads {}",
        openssl::version::version(),
        args.seconds,
        args.workers,
        args.in_flight,
        args.m,
        args.ks,
        args.load_threads
    );
    let mut report = Report {
        rows: Vec::new(),
        json: Vec::new(),
    };
    let phase = |p: &str| args.phases.iter().any(|x| x == p);
    if phase("memory") {
        if let Err(e) = memory_phase(&mut report, &args) {
            println!("memory phase failed: {e}");
            report.json("memory_error", format!("{:?}", e.to_string()));
        }
    }
    let pki = pki::Pki::generate()?;
    let lifetime = Duration::from_secs(args.seconds * 20 + 120);
    let server = Server::start(server::config(Some(pki.files.clone()), 30_000), lifetime)?;
    if phase("psk") {
        for suite in [Suite::PskCcm8, Suite::PskGcm] {
            let ctx = client::context(suite, None)?;
            handshake_phase(&mut report, &server, suite, &ctx, &args, "≥ 2,000");
        }
    }
    if phase("cert") {
        for suite in [Suite::EcdsaCcm8, Suite::EcdsaGcm] {
            let ctx = client::context(suite, Some(&pki.client))?;
            handshake_phase(&mut report, &server, suite, &ctx, &args, "≥ 300");
        }
    }
    if phase("requests") {
        let ctx = client::context(Suite::PskCcm8, None)?;
        if let Err(e) = request_phase(&mut report, &server, &ctx, &args) {
            println!("request phase failed: {e}");
            report.json("requests_error", format!("{:?}", e.to_string()));
        }
    }
    server.stop();
    let load_after = loadavg();
    report.json("nproc", nproc);
    report.json("load_before", format!("{load_before:?}"));
    report.json("load_after", format!("{load_after:?}"));
    report.json("seconds_each", args.seconds);
    println!("load after: {load_after}");
    println!("{{\"bench\":\"dtls\",{}}}", report.json.join(","));
    Ok(())
}
