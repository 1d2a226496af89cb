//! Platform commands end to end: commands/s from platform-sim
//! through the gateway to device-sim and back, with a fixed number in flight, and the latency
//! the gateway adds (end to end minus the device round trip `rtt_ms` it reports).
//!
//! `cargo bench --bench executer_e2e [-- --devices 100 --in-flight 64 --commands 20000
//!   --max-s 60]`
//!
//! Spawns the release `platform-sim`, `coap-gateway` (dialling the sim) and `device-sim`.
//! Commands (`GET /sensors/temp` round-robin over the devices) are written to platform-sim's
//! stdin; each `command_result` line it prints is timestamped when read. End to end therefore
//! includes platform-sim's own JSON handling on both sides. Loopback only; the loop is bounded
//! in count and time. Prints the figures and one JSON line.
//!
//! `--cluster`: two replicas on a three-member etcd cluster (loopback, temporary directories;
//! needs Debian's etcd-server) instead of one gateway; the devices register at replica `a`, the
//! elected leader executes, and each result takes its way through etcd (`cluster::data_relay`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;

/// Command line (cargo bench passes `--bench`, accepted and ignored).
#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100)]
    devices: usize,
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    #[arg(long, default_value_t = 20_000)]
    commands: usize,
    #[arg(long, default_value_t = 60)]
    max_s: u64,
    /// Two replicas on etcd instead of one gateway.
    #[arg(long)]
    cluster: bool,
    #[arg(long, hide = true)]
    bench: bool,
}

/// A child process killed on drop, with its lines (stdout or stderr) on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Proc {
    fn spawn(cmd: &mut Command, stdout: bool) -> Proc {
        let mut child = cmd.spawn().expect("spawn");
        let (tx, lines) = mpsc::channel();
        let reader: Box<dyn std::io::Read + Send> = if stdout {
            Box::new(child.stdout.take().unwrap())
        } else {
            Box::new(child.stderr.take().unwrap())
        };
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    fn wait(&self, budget: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + budget;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((_, l)) if pred(&l) => return l,
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for a line"),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let a = Args::parse();
    if a.cluster && !common::require_tool("etcd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();

    let mut platform = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_platform-sim"))
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        true,
    );
    let line = platform.wait(Duration::from_secs(20), |l| {
        l.starts_with("platform-sim listening on ")
    });
    let url = line
        .trim_start_matches("platform-sim listening on ")
        .to_string();
    let mut to_platform = platform.child.stdin.take().unwrap();

    let executer = "executer:\n  max_in_flight: 1024\n";
    let (rd, gateway): (String, Box<dyn std::any::Any>) = if a.cluster {
        let cluster = common::etcd::EtcdCluster::start(3);
        let platform = format!("platform:\n  url: {url:?}\n{executer}");
        let first = common::replica(&cluster, "/bench", "a", 3, &platform);
        let second = common::replica(&cluster, "/bench", "b", 3, &platform);
        (first.addr().to_string(), Box::new((first, second, cluster)))
    } else {
        let config = tmp.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "gateway:\n  id: bench-gw\n  data_dir: {:?}\n  cache_mb: 16\nrd:\n  listen: [\"127.0.0.1:0\"]\n\
                 http:\n  listen: \"\"\nplatform:\n  url: {url:?}\n{executer}",
                tmp.path().join("data").display().to_string(),
            ),
        )
        .unwrap();
        let gw = Proc::spawn(
            Command::new(env!("CARGO_BIN_EXE_coap-gateway"))
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "warn,coap_gateway::gateway=info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            false,
        );
        let line = gw.wait(Duration::from_secs(30), |l| {
            l.contains("rd listening on udp://")
        });
        let rd = line.split("udp://").nth(1).unwrap().trim().to_string();
        (rd, Box::new(gw))
    };
    // Commands go to the gateways connected at the time: wait for the (leader's) link.
    platform.wait(Duration::from_secs(60), |l| {
        l.contains("\"type\":\"hello\"")
    });

    let sim = Proc::spawn(
        Command::new(
            device_sim::binary::path().unwrap_or_else(|e| panic!("device-sim binary: {e}")),
        )
        .args(["--rd", &rd, "--count", &a.devices.to_string()])
        .args(["--prefix", "bench-", "--lt", "3600"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null()),
        true,
    );
    sim.wait(Duration::from_secs(120), |l| {
        l.starts_with("device-sim ready")
    });

    let mut next = 0usize;
    let mut send = |n: usize, sent: &mut HashMap<String, Instant>| {
        let id = format!("c{n}");
        let ep = format!("bench-{}", n % a.devices);
        writeln!(
            to_platform,
            r#"{{"type":"command","id":"{id}","ep":"{ep}","method":"GET","path":"/sensors/temp"}}"#
        )
        .expect("write to platform-sim");
        to_platform.flush().expect("flush");
        sent.insert(id, Instant::now());
    };

    // Warm up (not measured): the link, the client's per-peer state, the allocator.
    let warmup = (a.devices * 2).min(1_000);
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let run = |count: usize,
               record: bool,
               next: &mut usize,
               sent: &mut HashMap<String, Instant>,
               send: &mut dyn FnMut(usize, &mut HashMap<String, Instant>)|
     -> (Vec<f64>, Vec<f64>, usize, usize, Duration) {
        let deadline = Instant::now() + Duration::from_secs(a.max_s);
        let started = Instant::now();
        let (mut e2e, mut gw_share) = (Vec::new(), Vec::new());
        let (mut done, mut errors) = (0usize, 0usize);
        let mut issued = 0usize;
        while issued < count.min(a.in_flight) {
            send(*next, sent);
            *next += 1;
            issued += 1;
        }
        while done < issued && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((at, line)) = platform.lines.recv_timeout(left) else {
                break;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["type"] != "command_result" {
                continue;
            }
            let Some(sent_at) = v["id"].as_str().and_then(|id| sent.remove(id)) else {
                continue;
            };
            done += 1;
            match v["rtt_ms"].as_u64() {
                Some(rtt) if v["code"] == "2.05" => {
                    if record {
                        let total = at.duration_since(sent_at).as_secs_f64() * 1e3;
                        e2e.push(total);
                        gw_share.push((total - rtt as f64).max(0.0));
                    }
                }
                _ => errors += 1,
            }
            if issued < count {
                send(*next, sent);
                *next += 1;
                issued += 1;
            }
        }
        (e2e, gw_share, done, errors, started.elapsed())
    };
    let (_, _, wdone, werrors, _) = run(warmup, false, &mut next, &mut sent, &mut send);
    println!("warm-up: {wdone} commands, {werrors} errors");

    let (mut e2e, mut share, done, errors, took) =
        run(a.commands, true, &mut next, &mut sent, &mut send);
    e2e.sort_by(f64::total_cmp);
    share.sort_by(f64::total_cmp);
    let rate = done as f64 / took.as_secs_f64();
    println!(
        "executer e2e: {} devices, {} in flight: {done} commands in {:.2} s = {rate:.0} commands/s, {errors} errors",
        a.devices,
        a.in_flight,
        took.as_secs_f64()
    );
    println!(
        "end to end ms: p50 {:.2} p99 {:.2}; added by the gateway (e2e - rtt_ms): p50 {:.2} p99 {:.2}",
        percentile(&e2e, 0.5),
        percentile(&e2e, 0.99),
        percentile(&share, 0.5),
        percentile(&share, 0.99)
    );
    println!(
        "{{\"bench\":\"executer_e2e\",\"cluster\":{},\"devices\":{},\"in_flight\":{},\"commands\":{done},\"errors\":{errors},\"commands_per_s\":{rate:.0},\"e2e_p50_ms\":{:.2},\"e2e_p99_ms\":{:.2},\"gateway_p50_ms\":{:.2},\"gateway_p99_ms\":{:.2}}}",
        a.cluster,
        a.devices,
        a.in_flight,
        percentile(&e2e, 0.5),
        percentile(&e2e, 0.99),
        percentile(&share, 0.5),
        percentile(&share, 0.99)
    );
    drop(sim);
    drop(gateway);
}
