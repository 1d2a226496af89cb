//! How late device status is when the gateway's other workers talk to the devices:
//! the release gateway with the Pinger, the Observer (observing `/sensors/temp`,
//! polling `/actuators/led`) and the platform link to `platform-sim`, and `device-sim` with N
//! devices. Once the Observer is talking to every device, a fraction goes silent at once;
//! for each silent device the bench takes the time from that moment to its `device_status` 0
//! frame at the platform, and compares it with the documented bound
//! `interval + attempts * timeout`. It also counts devices wrongly marked 0 and the sweeps'
//! "inconclusive" verdicts from the gateway's log.
//!
//! `cargo bench --bench status_latency [-- --devices N --silent F --interval S --timeout-ms T
//!   --attempts A --poll-s P --gateway-bin PATH]` (`--gateway-bin` runs another build, e.g. an
//! older one, for a before/after figure).
//!
//! Loopback only; every wait is bounded (three times the bound at most), and the processes are
//! killed on exit.

#[path = "support/gateway_process.rs"]
mod gateway_process;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use device_sim::silence::is_in_silent_fraction;
use gateway_process::spawn_gateway;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000)]
    devices: usize,
    #[arg(long, default_value_t = 0.1)]
    silent: f64,
    #[arg(long = "interval", default_value_t = 30)]
    interval_s: u64,
    #[arg(long, default_value_t = 2_000)]
    timeout_ms: u64,
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Observer poll interval for the polled resource.
    #[arg(long = "poll-s", default_value_t = 5)]
    poll_s: u64,
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    #[arg(long, hide = true)]
    bench: bool,
}

/// A child whose output lines are kept with their arrival time; killed on drop.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Result<Proc, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().ok_or("no stdout")?;
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut v) = sink.lock() {
                    v.push((Instant::now(), l));
                }
            }
        });
        Ok(Proc { child, lines })
    }

    fn snapshot(&self) -> Vec<(Instant, String)> {
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn wait_line(&self, budget: Duration, f: impl Fn(&str) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + budget;
        while Instant::now() < deadline {
            if self.snapshot().iter().any(|(_, l)| f(l)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("no expected line within {budget:?}"))
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        writeln!(stdin, "{line}").map_err(|e| e.to_string())?;
        stdin.flush().map_err(|e| e.to_string())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn release_bin(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/release")
        .join(name)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("status_latency: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let bound = Duration::from_secs(args.interval_s)
        + Duration::from_millis(args.timeout_ms) * args.attempts;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let platform =
        Proc::spawn(Command::new(release_bin("platform-sim")).args(["--listen", "127.0.0.1:0"]))?;
    platform.wait_line(Duration::from_secs(20), |l| {
        l.starts_with("platform-sim listening on ")
    })?;
    let url = platform
        .snapshot()
        .iter()
        .find_map(|(_, l)| {
            l.strip_prefix("platform-sim listening on ")
                .map(String::from)
        })
        .ok_or("platform-sim address")?;
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "gateway:\n  data_dir: {data:?}\n  cache_mb: 32\nrd:\n  listen: [\"127.0.0.1:0\"]\n\
             http:\n  listen: \"\"\nplatform:\n  url: {url:?}\n\
             observer:\n  enabled: true\n  poll_interval_s: {poll}\n  select: [\"obs\", \"if=actuator\"]\n\
             pinger:\n  enabled: true\n  interval_s: {interval}\n  timeout_ms: {timeout}\n  attempts: {attempts}\n",
            data = tmp.path().join("data").display().to_string(),
            poll = args.poll_s,
            interval = args.interval_s,
            timeout = args.timeout_ms,
            attempts = args.attempts,
        ),
    )
    .map_err(|e| e.to_string())?;
    let bin = args
        .gateway_bin
        .clone()
        .unwrap_or_else(|| release_bin("coap-gateway"));
    let log = tmp.path().join("gateway.log");
    let (_gateway, _) = spawn_gateway(&bin, &config, &log)?;
    let rd = {
        let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
        text.lines()
            .find_map(|l| l.split("rd listening on udp://").nth(1))
            .map(|a| a.trim().to_string())
            .ok_or("rd address")?
    };
    let lt = (bound.as_secs() * 20).max(600).to_string();
    let mut sim = Proc::spawn(Command::new(release_bin("device-sim")).args([
        "--rd",
        &rd,
        "--count",
        &args.devices.to_string(),
        "--prefix",
        "lat-",
        "--lt",
        &lt,
        "--silent-fraction",
        &args.silent.to_string(),
    ]))?;
    sim.wait_line(Duration::from_secs(120), |l| {
        l.starts_with("device-sim ready")
    })?;

    // Warm-up: every device's observed and polled resource has reached the platform, so the
    // Observer's exchanges are what a silent device's slot is busy with.
    let warm_deadline = Instant::now() + Duration::from_secs(args.poll_s * 3 + 60);
    loop {
        let seen: std::collections::HashSet<String> = platform
            .snapshot()
            .iter()
            .filter(|(_, l)| l.contains("\"type\":\"data\"") && l.contains("/actuators/led"))
            .filter_map(|(_, l)| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["ep"].as_str().map(String::from))
            })
            .collect();
        if seen.len() >= args.devices {
            break;
        }
        if Instant::now() > warm_deadline {
            return Err(format!(
                "only {} of {} devices polled during warm-up",
                seen.len(),
                args.devices
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let silent: Vec<String> = (0..args.devices)
        .filter(|&i| is_in_silent_fraction(i, args.silent))
        .map(|i| format!("lat-{i}"))
        .collect();
    let before = platform.snapshot().len();
    sim.send("silent fraction")?;
    let t0 = Instant::now();
    let mut reached: HashMap<String, Duration> = HashMap::new();
    let mut wrongly: Vec<String> = Vec::new();
    let deadline = t0 + bound * 3;
    while reached.len() < silent.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        reached.clear();
        wrongly.clear();
        for (t, l) in platform.snapshot().iter().skip(before) {
            if !l.contains("\"type\":\"device_status\"") {
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            let (Some(ep), Some(0)) = (v["ep"].as_str(), v["status"].as_u64()) else {
                continue;
            };
            if silent.iter().any(|s| s == ep) {
                reached
                    .entry(ep.to_string())
                    .or_insert(t.saturating_duration_since(t0));
            } else {
                wrongly.push(ep.to_string());
            }
        }
    }
    let mut latencies: Vec<Duration> = reached.values().copied().collect();
    latencies.sort();
    let gateway_log = std::fs::read_to_string(&log).unwrap_or_default();
    let inconclusive: u64 = gateway_log
        .lines()
        .filter_map(|l| l.split("inconclusive ").nth(1))
        .filter_map(|rest| rest.split(',').next()?.trim().parse::<u64>().ok())
        .sum();
    let within = latencies.iter().filter(|d| **d <= bound).count();
    println!(
        "devices {} (silent {}), interval {} s, {} x {} ms: bound {:.1} s",
        args.devices,
        silent.len(),
        args.interval_s,
        args.attempts,
        args.timeout_ms,
        bound.as_secs_f64()
    );
    println!(
        "status 0 reached by {}/{} silent devices; within the bound {}; p50 {:.1} s, p99 {:.1} s, max {:.1} s",
        reached.len(),
        silent.len(),
        within,
        percentile(&latencies, 0.5).as_secs_f64(),
        percentile(&latencies, 0.99).as_secs_f64(),
        latencies.last().copied().unwrap_or_default().as_secs_f64()
    );
    println!(
        "answering devices wrongly marked 0: {}; inconclusive verdicts in the gateway's sweeps: {inconclusive}",
        wrongly.len()
    );
    println!(
        "{{\"devices\":{},\"silent\":{},\"reached\":{},\"within_bound\":{},\"bound_s\":{:.1},\"p50_s\":{:.2},\"p99_s\":{:.2},\"max_s\":{:.2},\"wrongly_marked\":{},\"inconclusive\":{}}}",
        args.devices,
        silent.len(),
        reached.len(),
        within,
        bound.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64(),
        percentile(&latencies, 0.99).as_secs_f64(),
        latencies.last().copied().unwrap_or_default().as_secs_f64(),
        wrongly.len(),
        inconclusive
    );
    Ok(())
}
