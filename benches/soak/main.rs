//! Soak and lockstep load: a release gateway, `platform-sim` and one or more
//! `device-sim` processes for `--duration` seconds (600 by default; any length works). The
//! devices sample and notify in lockstep at each whole second of the wall clock, refresh their
//! registrations (`--lt`, refresh at 3/4 of it), and a share of them (`--silent-fraction`)
//! goes silent and comes back every `--cycle` seconds, so the Pinger flips their status
//! 1 → 0 → 1 and the Observer stops and re-establishes their observations. With
//! `--silent-fraction 0 --lt 3600` it is the plain lockstep measurement.
//!
//! One device-sim holds at most `--per-sim` devices (one socket each: the open-file limit of
//! one process is the bound), so 20,000 devices run as two processes; process k binds
//! 127.0.0.(k+1), since one address has only the ephemeral port range for free ports.
//!
//! Every 10 s it prints the gateway's RSS and CPU (share of one core, /proc), the `data` frames
//! per second platform-sim printed and the range of its one-second buckets, the notifications
//! the devices started per second, the drops the gateway logged (Observer queue, owed queue)
//! and the status flips platform-sim saw; then a summary with the one-second buckets three
//! ways — notifications started by device-sim (its `--per-second` lines), values received by
//! the gateway (the frames' `at`) and frames arrived at the bench from platform-sim — the CPU
//! of every process and of the gateway's busiest threads, and a per-device check of the values
//! (each device's value moves one step a second: a repeated step is a duplicate, a jump a
//! skipped second). A bucket is one second of the wall clock: the devices notify right after
//! the whole second, so the boundaries fall between the bursts, not through them.
//!
//! It fails (exit 1) on RSS growth in the second half (more than 5 % + 8 MiB from the middle
//! sample to the last), on a panic in the gateway's log, on any dropped value (platform-sim
//! reads as fast as it can, so no drop is explained by the platform's pace): in the Observer,
//! in the owed queue, at the gateway's UDP socket (the kernel's `drops` count), or values
//! sent by the devices and never received without silence, and, with
//! `--max-bucket-deviation P`, on a one-second bucket more than P % from the mean.
//!
//! `cargo build --release && cargo bench --bench soak [-- --duration 600 --devices 2000]`
//!
//! Loopback only; every process is killed when the bench ends (or fails).
//!
//! Modules: `children` (platform-sim and device-sim processes), `buckets` (platform-sim's
//! frames counted by second and by device, and their spread), `gateway` (the gateway's config,
//! log, socket drops and CPU).

#[path = "../support/gateway_process.rs"]
mod gateway_process;
#[path = "../support/proc_stats.rs"]
mod proc_stats;

mod buckets;
mod children;
mod gateway;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use buckets::{quantile, spread, unix_s, worst_deviation, Counts};
use children::{notifications_sent, spawn_devices, spawn_platform, Sent};
use gateway::{cpu_pct, read_log, thread_ticks, udp_drops, write_config};

/// Command line (cargo bench passes `--bench`, accepted and ignored).
#[derive(Parser)]
struct Args {
    /// Seconds of load after every device is registered.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    #[arg(long, default_value_t = 2_000)]
    devices: usize,
    /// Devices per device-sim process (one socket each).
    #[arg(long, default_value_t = 10_000)]
    per_sim: usize,
    /// Registration lifetime; devices refresh at three quarters of it.
    #[arg(long, default_value_t = 60)]
    lt: u32,
    /// Share of the devices that goes silent and comes back.
    #[arg(long, default_value_t = 0.1)]
    silent_fraction: f64,
    /// Seconds between the share going silent and coming back (and back again).
    #[arg(long, default_value_t = 60)]
    cycle: u64,
    /// The Pinger's interval (0: Pinger off).
    #[arg(long, default_value_t = 10)]
    pinger_interval: u64,
    /// `platform.queue_capacity` (the gateway's default when not given).
    #[arg(long)]
    queue_capacity: Option<usize>,
    /// Fail when a one-second bucket (frames arrived from platform-sim, whole seconds of the
    /// run without a silence toggle) is more than this many percent from their mean.
    #[arg(long)]
    max_bucket_deviation: Option<f64>,
    /// Another device-sim binary (e.g. an older build, to compare); it is run without
    /// `--per-second`, so the "sent" buckets stay empty.
    #[arg(long)]
    device_sim_bin: Option<std::path::PathBuf>,
    #[arg(long, hide = true)]
    bench: bool,
}

/// How often a line is printed.
const EVERY: Duration = Duration::from_secs(10);

fn run(a: &Args) -> Result<Vec<String>, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let counts = Arc::new(Counts::default());
    let (platform, url) = spawn_platform(counts.clone())?;
    let config = write_config(a, tmp.path(), &url)?;
    let log = tmp.path().join("gateway.log");
    let bin = Path::new(env!("CARGO_BIN_EXE_coap-gateway"));
    let (gw, _) = gateway_process::spawn_gateway(bin, &config, &log)?;
    let pid = gw.child.id();
    let sent: Sent = Arc::default();
    let per_sim = a.per_sim.max(1);
    let mut sims = Vec::new();
    let mut left = a.devices;
    while left > 0 {
        let n = left.min(per_sim);
        sims.push(spawn_devices(
            a,
            &gw.addr.to_string(),
            sims.len(),
            n,
            sent.clone(),
        )?);
        left -= n;
    }
    let started = Instant::now();
    for sim in &sims {
        loop {
            match sim.lines.recv_timeout(Duration::from_secs(1)) {
                Ok(l) if l.starts_with("device-sim ready") => break,
                _ if started.elapsed() > Duration::from_secs(600) => {
                    return Err("device-sim not ready within 600 s".into())
                }
                _ => {}
            }
        }
    }
    println!(
        "soak: {} devices ({} device-sim) registered in {:.1} s; {} s of lockstep notifications, {:.0} % silent every other {} s, lt {} s, Pinger {}",
        a.devices,
        sims.len(),
        started.elapsed().as_secs_f64(),
        a.duration,
        a.silent_fraction * 100.0,
        a.cycle,
        a.lt,
        if a.pinger_interval == 0 { "off".to_owned() } else { format!("every {} s", a.pinger_interval) }
    );
    println!("   t_s  rss_mib  cpu_%  data/s  bucket_min  bucket_max  sent/s  flips  obs_dropped  obs_waited  owed_dropped  udp_drops_gw");

    let t0 = Instant::now();
    let t0_s = unix_s();
    let mut rss = Vec::new();
    let mut last = (
        t0,
        proc_stats::cpu_ticks(pid).unwrap_or(0),
        counts.data.load(Ordering::Relaxed),
        counts.status.load(Ordering::Relaxed),
        t0_s,
    );
    let (data0, cpu0) = (last.2, last.1);
    let threads0 = thread_ticks(pid);
    let gw_drops0 = udp_drops(gw.addr.port());
    let platform_cpu0 = proc_stats::cpu_ticks(platform.0.id()).unwrap_or(0);
    let sims_cpu0: u64 = sims
        .iter()
        .filter_map(|s| proc_stats::cpu_ticks(s.proc.0.id()))
        .sum();
    let mut silent = false;
    // Seconds around a silence toggle: the rate changes there by design.
    let mut toggles: Vec<u64> = Vec::new();
    let mut next_toggle = t0 + Duration::from_secs(a.cycle);
    let end = t0 + Duration::from_secs(a.duration);
    while Instant::now() < end {
        let wake_at = (last.0 + EVERY).min(next_toggle).min(end);
        std::thread::sleep(wake_at.saturating_duration_since(Instant::now()));
        for sim in &sims {
            while sim.lines.try_recv().is_ok() {}
        }
        if a.silent_fraction > 0.0 && Instant::now() >= next_toggle && Instant::now() < end {
            silent = !silent;
            let cmd = if silent {
                "silent fraction"
            } else {
                "wake fraction"
            };
            for sim in &mut sims {
                writeln!(sim.control, "{cmd}").map_err(|e| format!("device-sim control: {e}"))?;
                let _ = sim.control.flush();
            }
            toggles.push(unix_s());
            next_toggle += Duration::from_secs(a.cycle);
        }
        if last.0.elapsed() < EVERY && Instant::now() < end {
            continue;
        }
        let now = Instant::now();
        let now_s = unix_s();
        let cpu = proc_stats::cpu_ticks(pid).ok_or("the gateway exited")?;
        let data = counts.data.load(Ordering::Relaxed);
        let status = counts.status.load(Ordering::Relaxed);
        let secs = now.duration_since(last.0).as_secs_f64();
        let r = proc_stats::rss_kib(pid).unwrap_or(0);
        rss.push((now.duration_since(t0).as_secs(), r));
        let logged = read_log(&log);
        // Whole seconds since the last line (the current one is not over).
        let (bmin, bmax) = counts
            .buckets
            .lock()
            .map(|b| {
                let v: Vec<u64> = (last.4..now_s)
                    .map(|s| b.arrived.get(&s).copied().unwrap_or(0))
                    .collect();
                (
                    v.iter().min().copied().unwrap_or(0),
                    v.iter().max().copied().unwrap_or(0),
                )
            })
            .unwrap_or((0, 0));
        let sent_rate = sent
            .lock()
            .map(|m| {
                let n: u64 = (last.4..now_s)
                    .map(|s| m.get(&s).copied().unwrap_or(0))
                    .sum();
                n as f64 / (now_s - last.4).max(1) as f64
            })
            .unwrap_or(0.0);
        println!(
            "{:>6} {:>8.1} {:>6.1} {:>7.0} {:>11} {:>11} {:>7.0} {:>6} {:>12} {:>11} {:>13} {:>13}",
            now.duration_since(t0).as_secs(),
            r as f64 / 1024.0,
            cpu_pct(cpu - last.1, secs),
            (data - last.2) as f64 / secs,
            bmin,
            bmax,
            sent_rate,
            status - last.3,
            logged.observer_dropped,
            logged.observer_waited,
            logged.owed_dropped,
            udp_drops(gw.addr.port()) - gw_drops0,
        );
        last = (now, cpu, data, status, now_s);
    }
    let wall = t0.elapsed().as_secs_f64();
    let end_s = unix_s();
    let cpu = proc_stats::cpu_ticks(pid).unwrap_or(cpu0);
    let threads1 = thread_ticks(pid);
    let platform_cpu = proc_stats::cpu_ticks(platform.0.id()).unwrap_or(0) - platform_cpu0;
    let sims_cpu: u64 = sims
        .iter()
        .filter_map(|s| proc_stats::cpu_ticks(s.proc.0.id()))
        .sum::<u64>()
        - sims_cpu0;
    let logged = read_log(&log);
    let gw_drops = udp_drops(gw.addr.port()) - gw_drops0;
    let frames = counts.data.load(Ordering::Relaxed) - data0;
    let mid = rss
        .iter()
        .find(|(t, _)| *t as f64 >= wall / 2.0)
        .map_or(0, |s| s.1);
    let final_rss = rss.last().map_or(0, |s| s.1);
    println!(
        "summary: {wall:.0} s, {frames} data frames ({:.0}/s), gateway CPU {:.1} % of one core, RSS {:.1} MiB at the middle, {:.1} MiB at the end (max {:.1}), {} status frames, {} registrations seen by the platform, drops: observer {} (waited {}), owed queue {}, observations lost {}, panics {}",
        frames as f64 / wall,
        cpu_pct(cpu - cpu0, wall),
        mid as f64 / 1024.0,
        final_rss as f64 / 1024.0,
        rss.iter().map(|s| s.1).max().unwrap_or(0) as f64 / 1024.0,
        counts.status.load(Ordering::Relaxed),
        counts.registered.load(Ordering::Relaxed),
        logged.observer_dropped,
        logged.observer_waited,
        logged.owed_dropped,
        logged.lost,
        logged.panics
    );
    let mut busiest: Vec<(String, u64)> = threads1
        .iter()
        .map(|(name, t)| (name.clone(), t - threads0.get(name).copied().unwrap_or(0)))
        .collect();
    busiest.sort_by_key(|t| std::cmp::Reverse(t.1));
    println!("udp: {gw_drops} datagrams dropped at the gateway's socket (receive buffer full)");
    println!(
        "device-sim RSS: {} MiB (largest process)",
        sims.iter()
            .filter_map(|s| proc_stats::rss_kib(s.proc.0.id()))
            .max()
            .unwrap_or(0)
            / 1024
    );
    println!(
        "cpu: platform-sim {:.1} %, device-sim {:.1} % (all {} processes), gateway threads: {}",
        cpu_pct(platform_cpu, wall),
        cpu_pct(sims_cpu, wall),
        sims.len(),
        busiest
            .iter()
            .take(5)
            .map(|(n, t)| format!("{n} {:.1} %", cpu_pct(*t, wall)))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Stop the devices (their exit summaries count every value sent), then let the frames in
    // flight arrive.
    for sim in &sims {
        sim.proc.sigterm();
    }
    let mut sent_total = 0u64;
    let mut summaries = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for sim in &sims {
        while Instant::now() < deadline {
            match sim.lines.recv_timeout(Duration::from_secs(1)) {
                Ok(l) if l.starts_with("device-sim requests served:") => {
                    sent_total += notifications_sent(&l).unwrap_or(0);
                    summaries += 1;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                _ => {}
            }
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let received = counts.data.load(Ordering::Relaxed);
    println!(
        "values: devices sent {sent_total} ({summaries} of {} summaries), platform received {received}, difference {}",
        sims.len(),
        sent_total as i64 - received as i64
    );

    // Buckets: whole seconds of the load, the first and the last left out (partly outside),
    // and with silence, the seconds around each toggle.
    let (first, last_s) = (t0_s + 1, end_s.saturating_sub(1));
    let tol = a.max_bucket_deviation.unwrap_or(5.0);
    let mut worst = 0.0f64;
    if let (Ok(b), Ok(sent)) = (counts.buckets.lock(), sent.lock()) {
        // Quiet stretches between toggles (all of the run without silence).
        let mut edges = vec![first];
        for &t in &toggles {
            edges.push(t + 3);
        }
        let mut stretches = Vec::new();
        for (i, &from) in edges.iter().enumerate() {
            let to = toggles.get(i).map_or(last_s, |t| t.saturating_sub(2));
            if to > from {
                stretches.push((from, to));
            }
        }
        for (from, to) in &stretches {
            let day = |s: u64| s % 86_400;
            let stamped: BTreeMap<u64, u64> = b.stamped.clone();
            println!("buckets {}..{} (unix s):", from, to);
            println!(
                "  sent by device-sim:      {}",
                spread(&sent, *from, *to, tol)
            );
            println!(
                "  got by the gateway (at): {}",
                spread(&stamped, day(*from), day(*to), tol)
            );
            println!(
                "  arrived from platform:   {}",
                spread(&b.arrived, *from, *to, tol)
            );
            worst = worst.max(worst_deviation(&b.arrived, *from, *to));
        }
        println!(
            "latency from the gateway's at to the bench (whole run): p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
            quantile(&b.latency, 0.5),
            quantile(&b.latency, 0.99),
            quantile(&b.latency, 0.999),
            quantile(&b.latency, 1.0)
        );
        println!(
            "per device: {} devices seen, {} duplicated values, {} skipped device-seconds, {} out of order",
            b.last_step.len(),
            b.duplicates,
            b.skipped,
            b.reordered
        );
        for e in &b.examples {
            println!("  skip: {e}");
        }
    }

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
    if gw_drops > 0 {
        failures.push(format!(
            "{gw_drops} notifications dropped at the gateway's socket (its receive buffer was full: \
             the gateway read them slower than the devices sent, not the platform's pace)"
        ));
    }
    // Without silence every value sent must arrive (a silenced device may lose the one it was
    // sending when its socket closed).
    if a.silent_fraction <= 0.0 && summaries == sims.len() && sent_total != received {
        failures.push(format!(
            "devices sent {sent_total} values, the platform received {received}"
        ));
    }
    if let Some(max) = a.max_bucket_deviation {
        if worst > max {
            failures.push(format!(
                "a one-second bucket was {worst:.2} % from the mean (bound {max} %)"
            ));
        }
    }
    drop(sims);
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
