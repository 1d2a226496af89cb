//! Release benchmark of the Resource Directory over real UDP on loopback: every figure of the
//! RD performance targets from one run, printed as ONE JSON line on stdout, each phase also
//! logged on stderr as it finishes.
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
//!
//! Modules: `workload` (requests and how answers are judged), `load` (the lanes), `ports`
//! (fresh source sockets), `probe` (one-at-a-time requests, Block2 retrieval), `scenarios`
//! (the phases at each checkpoint), `process` (the gateway under test), `report` (JSON and
//! progress lines).

#[path = "../support/gateway_process.rs"]
mod gateway_process;
mod load;
mod ports;
mod probe;
mod process;
mod report;
mod scenarios;
mod workload;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use gateway_process::spawn_gateway;
use load::{run_phase, Stats};
use process::{
    gateway_log_summary, mem_json, restart, sample_proc, stop_gateway, stop_perf, write_config,
};
use report::{bands, clock, log_phase, round1, stats_json};
use scenarios::Run;
use workload::{get_request, Directory, Registrations, CODE_CONTENT};

const RARE_ENDPOINTS: u64 = 10;

#[derive(Debug, Parser)]
#[command(about = "CoRE Resource Directory benchmark (throughput, latency and memory at scale)")]
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

/// A setup failure the benchmark cannot measure around: say why and stop.
fn fail(msg: &str) -> ! {
    eprintln!("rd_bench: {msg}");
    std::process::exit(1)
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
