//! Soak (issue 26): a release gateway, `platform-sim` and `device-sim` for `--duration` seconds
//! (600 by default; any length works). The devices notify in lockstep (device-sim changes every
//! device's value in the same 250 ms tick each second), refresh their registrations
//! (`--lt`, refresh at 3/4 of it), and a share of them (`--silent-fraction`) goes silent and
//! comes back every `--cycle` seconds, so the Pinger flips their status 1 → 0 → 1 and the
//! Observer stops and re-establishes their observations.
//!
//! Every 10 s it prints the gateway's RSS and CPU (share of one core, /proc), the `data` frames
//! per second platform-sim printed, the drops the gateway logged (Observer queue, owed queue)
//! and the status flips platform-sim saw; then a summary. It fails (exit 1) on RSS growth in
//! the second half (more than 5 % + 8 MiB from the middle sample to the last), on a panic in
//! the gateway's log, or on any dropped value: platform-sim reads as fast as it can, so no drop
//! is explained by the platform's pace.
//!
//! `cargo build --release && cargo bench --bench soak [-- --duration 600 --devices 2000]`
//!
//! Loopback only; every process is killed when the bench ends (or fails).

#[path = "support/gateway_process.rs"]
mod gateway_process;
#[path = "support/proc_stats.rs"]
mod proc_stats;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

/// Command line (cargo bench passes `--bench`, accepted and ignored).
#[derive(Parser)]
struct Args {
    /// Seconds of load after every device is registered.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    #[arg(long, default_value_t = 2_000)]
    devices: usize,
    /// Registration lifetime; devices refresh at three quarters of it.
    #[arg(long, default_value_t = 60)]
    lt: u32,
    /// Share of the devices that goes silent and comes back.
    #[arg(long, default_value_t = 0.1)]
    silent_fraction: f64,
    /// Seconds between the share going silent and coming back (and back again).
    #[arg(long, default_value_t = 60)]
    cycle: u64,
    #[arg(long, hide = true)]
    bench: bool,
}

/// How often a line is printed.
const EVERY: Duration = Duration::from_secs(10);

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// platform-sim's stdout, counted by frame type.
#[derive(Default)]
struct Counts {
    data: AtomicU64,
    status: AtomicU64,
    registered: AtomicU64,
}

/// What the gateway's log says so far: values dropped or waiting at the Observer, `data`
/// frames dropped by the owed queue, panics.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Logged {
    observer_dropped: u64,
    observer_waited: u64,
    owed_dropped: u64,
    panics: u64,
}

/// The number just before `what` in `line` ("... 12 values dropped ...").
fn number_before(line: &str, what: &str) -> Option<u64> {
    let before = line.split(what).next()?;
    before.trim_end().rsplit(' ').next()?.parse().ok()
}

fn read_log(path: &Path) -> Logged {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut l = Logged::default();
    for line in text.lines() {
        if line.contains(" links watched; last ") {
            l.observer_dropped +=
                number_before(line, " values dropped for a full queue").unwrap_or(0);
            l.observer_waited += number_before(line, " values waited for room").unwrap_or(0);
        }
        if line.contains("owed queue full") {
            let n = number_before(line, " data frames dropped so far").unwrap_or(0);
            l.owed_dropped = l.owed_dropped.max(n);
        }
        if line.contains("panicked") {
            l.panics += 1;
        }
    }
    l
}

fn spawn_platform(counts: Arc<Counts>) -> Result<(Proc, String), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_platform-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("platform-sim: {e}"))?;
    let out = child.stdout.take().ok_or("platform-sim stdout")?;
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("\"type\":\"data\"") {
                counts.data.fetch_add(1, Ordering::Relaxed);
            } else if line.contains("\"type\":\"device_status\"") {
                counts.status.fetch_add(1, Ordering::Relaxed);
            } else if line.contains("\"type\":\"device_registered\"") {
                counts.registered.fetch_add(1, Ordering::Relaxed);
            } else if let Some(addr) = line.strip_prefix("platform-sim listening on ") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "platform-sim did not say where it listens")?;
    Ok((proc, url))
}

/// device-sim, its stdin (control commands) and a channel of its stdout lines.
fn spawn_devices(a: &Args, rd: &str) -> Result<(Proc, ChildStdin, mpsc::Receiver<String>), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(["--rd", rd, "--count", &a.devices.to_string()])
        .args(["--lt", &a.lt.to_string(), "--prefix", "soak-"])
        .args(["--silent-fraction", &a.silent_fraction.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("device-sim: {e}"))?;
    let stdin = child.stdin.take().ok_or("device-sim stdin")?;
    let out = child.stdout.take().ok_or("device-sim stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok((Proc(child), stdin, rx))
}

fn run(a: &Args) -> Result<Vec<String>, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let counts = Arc::new(Counts::default());
    let (_platform, url) = spawn_platform(counts.clone())?;
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "gateway:\n  data_dir: {:?}\nrd:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"\"\n\
             pinger:\n  enabled: true\n  interval_s: 10\n  timeout_ms: 1000\n  attempts: 2\n\
             platform:\n  url: {url:?}\nobserver:\n  enabled: true\n",
            tmp.path().join("data").display().to_string()
        ),
    )
    .map_err(|e| e.to_string())?;
    let log = tmp.path().join("gateway.log");
    let bin = Path::new(env!("CARGO_BIN_EXE_coap-gateway"));
    let (gw, _) = gateway_process::spawn_gateway(bin, &config, &log)?;
    let pid = gw.child.id();
    let (_devices, mut control, lines) = spawn_devices(a, &gw.addr.to_string())?;
    let started = Instant::now();
    loop {
        match lines.recv_timeout(Duration::from_secs(1)) {
            Ok(l) if l.starts_with("device-sim ready") => break,
            _ if started.elapsed() > Duration::from_secs(300) => {
                return Err("device-sim not ready within 300 s".into())
            }
            _ => {}
        }
    }
    println!(
        "soak: {} devices registered in {:.1} s; {} s of lockstep notifications, {:.0} % silent every other {} s, lt {} s",
        a.devices,
        started.elapsed().as_secs_f64(),
        a.duration,
        a.silent_fraction * 100.0,
        a.cycle,
        a.lt
    );
    println!("   t_s  rss_mib  cpu_%  data/s  flips  obs_dropped  obs_waited  owed_dropped");

    let t0 = Instant::now();
    let mut rss = Vec::new();
    let mut last = (
        t0,
        proc_stats::cpu_ticks(pid).unwrap_or(0),
        counts.data.load(Ordering::Relaxed),
        counts.status.load(Ordering::Relaxed),
    );
    let (data0, cpu0) = (last.2, last.1);
    let mut silent = false;
    let mut next_toggle = t0 + Duration::from_secs(a.cycle);
    let end = t0 + Duration::from_secs(a.duration);
    while Instant::now() < end {
        let wake_at = (last.0 + EVERY).min(next_toggle).min(end);
        std::thread::sleep(wake_at.saturating_duration_since(Instant::now()));
        while lines.try_recv().is_ok() {}
        if Instant::now() >= next_toggle && Instant::now() < end {
            silent = !silent;
            let cmd = if silent {
                "silent fraction"
            } else {
                "wake fraction"
            };
            writeln!(control, "{cmd}").map_err(|e| format!("device-sim control: {e}"))?;
            let _ = control.flush();
            next_toggle += Duration::from_secs(a.cycle);
        }
        if last.0.elapsed() < EVERY && Instant::now() < end {
            continue;
        }
        let now = Instant::now();
        let cpu = proc_stats::cpu_ticks(pid).ok_or("the gateway exited")?;
        let data = counts.data.load(Ordering::Relaxed);
        let status = counts.status.load(Ordering::Relaxed);
        let secs = now.duration_since(last.0).as_secs_f64();
        let r = proc_stats::rss_kib(pid).unwrap_or(0);
        rss.push((now.duration_since(t0).as_secs(), r));
        let logged = read_log(&log);
        println!(
            "{:>6} {:>8.1} {:>6.1} {:>7.0} {:>6} {:>12} {:>11} {:>13}",
            now.duration_since(t0).as_secs(),
            r as f64 / 1024.0,
            100.0 * (cpu - last.1) as f64 / proc_stats::clk_tck() / secs,
            (data - last.2) as f64 / secs,
            status - last.3,
            logged.observer_dropped,
            logged.observer_waited,
            logged.owed_dropped
        );
        last = (now, cpu, data, status);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = proc_stats::cpu_ticks(pid).unwrap_or(cpu0);
    let logged = read_log(&log);
    let frames = counts.data.load(Ordering::Relaxed) - data0;
    let mid = rss
        .iter()
        .find(|(t, _)| *t as f64 >= wall / 2.0)
        .map_or(0, |s| s.1);
    let final_rss = rss.last().map_or(0, |s| s.1);
    println!(
        "summary: {wall:.0} s, {frames} data frames ({:.0}/s), gateway CPU {:.1} % of one core, RSS {:.1} MiB at the middle, {:.1} MiB at the end (max {:.1}), {} status frames, {} registrations seen by the platform, drops: observer {} (waited {}), owed queue {}, panics {}",
        frames as f64 / wall,
        100.0 * (cpu - cpu0) as f64 / proc_stats::clk_tck() / wall,
        mid as f64 / 1024.0,
        final_rss as f64 / 1024.0,
        rss.iter().map(|s| s.1).max().unwrap_or(0) as f64 / 1024.0,
        counts.status.load(Ordering::Relaxed),
        counts.registered.load(Ordering::Relaxed),
        logged.observer_dropped,
        logged.observer_waited,
        logged.owed_dropped,
        logged.panics
    );
    let mut failures = Vec::new();
    if final_rss as f64 > mid as f64 * 1.05 + 8.0 * 1024.0 {
        failures.push(format!(
            "RSS grew in the second half: {mid} KiB -> {final_rss} KiB"
        ));
    }
    if logged.panics > 0 {
        failures.push(format!(
            "{} panic line(s) in the gateway log",
            logged.panics
        ));
    }
    if logged.observer_dropped + logged.observer_waited + logged.owed_dropped > 0 {
        failures.push(format!(
            "values dropped or held up with a platform that keeps up: {logged:?}"
        ));
    }
    drop(gw);
    Ok(failures)
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(failures) if failures.is_empty() => {
            println!("soak: PASS");
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            for f in failures {
                println!("soak: FAIL: {f}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("soak: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}
