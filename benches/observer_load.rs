//! The Observer under load: N simulated devices (10,000 by
//! default), each observed on `/sensors/temp`, which notifies once a second. Measures, over a
//! window after every observation is up: `data` frames per second delivered to the platform,
//! the gateway's CPU share (utime+stime from /proc/PID/stat over the window) and RSS, and loss:
//! the notifications the devices sent (device-sim's exit summary counts every Observe GET and
//! every notification) against the `data` frames platform-sim printed over the whole run.
//!
//! `cargo bench --bench observer_load [-- --devices N --window S --warmup S --max-in-flight M]`
//!
//! Spawns the release `platform-sim`, `coap-gateway` (Pinger off so only the Observer works)
//! and `device-sim` (lt 3600: no refresh traffic). Loopback only; every wait is bounded.

#[path = "support/proc_stats.rs"]
mod proc_stats;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

/// Command line (cargo bench passes `--bench`, accepted and ignored).
#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    #[arg(long = "window", default_value_t = 20)]
    window_s: u64,
    #[arg(long = "warmup", default_value_t = 15)]
    warmup_s: u64,
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// `platform.queue_capacity` (the shipped default is 10,000).
    #[arg(long, default_value_t = 100_000)]
    queue_capacity: usize,
    #[arg(long, hide = true)]
    bench: bool,
}

/// A child process; its output lines are kept (or, for `data` frames, only counted).
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    data_frames: Arc<AtomicU64>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let data_frames = Arc::new(AtomicU64::new(0));
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for s in streams {
            let (lines, data) = (lines.clone(), data_frames.clone());
            std::thread::spawn(move || {
                for l in BufReader::new(s).lines().map_while(Result::ok) {
                    if l.contains("\"type\":\"data\"") {
                        data.fetch_add(1, Ordering::Relaxed);
                    } else {
                        lines.lock().unwrap().push(l);
                    }
                }
            });
        }
        Proc {
            child,
            lines,
            data_frames,
        }
    }

    fn wait(&self, budget: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + budget;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| f(l)) {
                return l.clone();
            }
            if Instant::now() > deadline {
                let lines = self.lines.lock().unwrap();
                let tail: Vec<&String> = lines.iter().rev().take(20).collect();
                panic!("timed out after {budget:?}; last lines: {tail:#?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn cpu_ticks(&self) -> u64 {
        proc_stats::cpu_ticks(self.child.id()).expect("read /proc/PID/stat")
    }

    fn rss_kib(&self) -> u64 {
        proc_stats::rss_kib(self.child.id()).unwrap_or(0)
    }

    fn sigterm(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// "... (with Observe, notifications included: N), ..." from device-sim's exit summary.
fn notifications_sent(summary: &str) -> u64 {
    summary
        .split("notifications included: ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no notification count in {summary:?}"))
}

fn main() {
    let a = Args::parse();
    let tmp = tempfile::tempdir().unwrap();
    let platform = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_platform-sim"))
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::piped()),
    );
    let line = platform.wait(Duration::from_secs(30), |l| {
        l.starts_with("platform-sim listening on ws://")
    });
    let url = format!(
        "ws://{}/",
        line.trim_start_matches("platform-sim listening on ws://")
            .trim()
    );

    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "gateway:\n  data_dir: {:?}\n  cache_mb: 32\nrd:\n  listen: [\"127.0.0.1:0\"]\n\
             coap:\n  max_in_flight: 1024\npinger:\n  enabled: false\nhttp:\n  listen: \"\"\n\
             platform:\n  url: {url:?}\n  queue_capacity: {}\n\
             observer:\n  enabled: true\n  max_in_flight: {}\n",
            tmp.path().join("data").display().to_string(),
            a.queue_capacity,
            a.max_in_flight
        ),
    )
    .unwrap();
    let gw = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_coap-gateway"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null()),
    );
    let line = gw.wait(Duration::from_secs(30), |l| {
        l.contains("rd listening on udp://")
    });
    let rd = line.split("udp://").nth(1).unwrap().trim().to_string();

    let sim = Proc::spawn(
        Command::new(
            device_sim::binary::path().unwrap_or_else(|e| panic!("device-sim binary: {e}")),
        )
        .args(["--rd", &rd, "--count", &a.devices.to_string()])
        .args(["--lt", "3600"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped()),
    );
    let ready_at = Instant::now();
    sim.wait(Duration::from_secs(300), |l| {
        l.starts_with("device-sim ready")
    });
    println!(
        "{} devices registered in {:.1} s",
        a.devices,
        ready_at.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(a.warmup_s));

    let frames0 = platform.data_frames.load(Ordering::Relaxed);
    let cpu0 = gw.cpu_ticks();
    let t0 = Instant::now();
    let mut per_second = Vec::new();
    let mut last = frames0;
    for _ in 0..a.window_s {
        std::thread::sleep(Duration::from_secs(1));
        let now = platform.data_frames.load(Ordering::Relaxed);
        per_second.push(now - last);
        last = now;
    }
    let wall = t0.elapsed().as_secs_f64();
    let frames = platform.data_frames.load(Ordering::Relaxed) - frames0;
    let cpu_s = (gw.cpu_ticks() - cpu0) as f64 / proc_stats::clk_tck();
    let gw_rss = gw.rss_kib();

    sim.sigterm();
    let summary = sim.wait(Duration::from_secs(30), |l| {
        l.starts_with("device-sim requests served:")
    });
    let sent = notifications_sent(&summary);
    // Frames still in flight through the gateway and the WebSocket.
    std::thread::sleep(Duration::from_secs(3));
    let received = platform.data_frames.load(Ordering::Relaxed);
    let stats: Vec<String> = gw
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("observer:") || l.contains("owed queue full"))
        .cloned()
        .collect();

    let rate = frames as f64 / wall;
    let expected = a.devices as f64;
    println!("window {wall:.1} s after {} s warm-up", a.warmup_s);
    println!(
        "data frames delivered: {frames} ({rate:.0}/s; expected ~{expected:.0}/s = 1/s x devices)"
    );
    println!("per second: {per_second:?}");
    let mean = per_second.iter().sum::<u64>() as f64 / per_second.len().max(1) as f64;
    let worst = per_second
        .iter()
        .map(|&n| (n as f64 - mean).abs() / mean.max(1.0))
        .fold(0.0, f64::max);
    println!(
        "one-second buckets: min {}, max {}, worst {:.1}% from the mean {mean:.0}",
        per_second.iter().min().unwrap_or(&0),
        per_second.iter().max().unwrap_or(&0),
        100.0 * worst
    );
    println!(
        "gateway CPU: {cpu_s:.2} s over {wall:.1} s = {:.1}% of one core; RSS {} MiB",
        100.0 * cpu_s / wall,
        gw_rss / 1024
    );
    println!(
        "whole run: devices sent {sent} (Observe responses + notifications), platform received \
         {received} data frames, loss {} ({:.3}%)",
        sent as i64 - received as i64,
        100.0 * (sent as f64 - received as f64) / sent.max(1) as f64
    );
    for l in stats.iter().rev().take(4).rev() {
        println!("gateway: {l}");
    }
    println!(
        "{{\"bench\":\"observer_load\",\"devices\":{},\"window_s\":{wall:.1},\"frames_per_s\":{rate:.0},\
         \"cpu_pct\":{:.1},\"rss_mib\":{},\"sent\":{sent},\"received\":{received}}}",
        a.devices,
        100.0 * cpu_s / wall,
        gw_rss / 1024
    );
    drop(sim);
    drop(gw);
    drop(platform);
}
