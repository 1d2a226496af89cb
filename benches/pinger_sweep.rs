//! One Pinger sweep over 10,000 simulated devices, 10% of them silent:
//! sweep duration, the gateway's CPU during the sweep, and RD lookup throughput during
//! the sweep against idle.
//!
//! `cargo bench --bench pinger_sweep [-- --devices N --silent F --interval S --timeout-ms T
//!   --attempts A --max-in-flight M --coap-max-in-flight C --lookup-s L --lookup-k K]`
//!
//! Spawns the release `coap-gateway` (pinger as given, RUST_LOG with the pinger at debug so the
//! sweep start is visible) and the release `device-sim` (lt 3600 so no refresh traffic, then
//! `silent fraction` on its stdin). Measures:
//! 1. the first full sweep with nothing else running: duration (the gateway's own log line),
//!    CPU (utime+stime from /proc/PID/stat) over the sweep and over one interval;
//! 2. idle lookup rate: K sockets each with one CON `GET /rd-lookup/ep?ep=sim-123` in flight,
//!    for L seconds, between sweeps;
//! 3. the same lookup loop started as the next sweep starts; that sweep's duration is the
//!    steady state (the silent devices are at 0 already and get one attempt each).
//!
//! Prints the figures and one JSON line. Loopback only; every loop is bounded in time.

#[path = "support/proc_stats.rs"]
mod proc_stats;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};

/// Command line (cargo bench passes `--bench`, accepted and ignored).
#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    #[arg(long, default_value_t = 0.1)]
    silent: f64,
    #[arg(long = "interval", default_value_t = 30)]
    interval_s: u64,
    #[arg(long, default_value_t = 2_000)]
    timeout_ms: u64,
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    #[arg(long, default_value_t = 1_024)]
    max_in_flight: usize,
    #[arg(long, default_value_t = 2_048)]
    coap_max_in_flight: usize,
    #[arg(long, default_value_t = 3)]
    lookup_s: u64,
    #[arg(long, default_value_t = 8)]
    lookup_k: usize,
    #[arg(long, hide = true)]
    bench: bool,
}

/// A child process whose output lines are collected with their arrival time; killed on drop.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for s in streams {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(s).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push((Instant::now(), l));
                }
            });
        }
        Proc { child, lines }
    }

    /// The first line after index `from` satisfying `f`, waiting up to `budget`.
    fn wait(
        &self,
        from: usize,
        budget: Duration,
        f: impl Fn(&str) -> bool,
    ) -> (usize, Instant, String) {
        let deadline = Instant::now() + budget;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                if let Some((i, (t, l))) =
                    lines.iter().enumerate().skip(from).find(|(_, (_, l))| f(l))
                {
                    return (i, *t, l.clone());
                }
            }
            if Instant::now() > deadline {
                let lines = self.lines.lock().unwrap();
                let tail: Vec<&str> = lines
                    .iter()
                    .rev()
                    .take(20)
                    .map(|(_, l)| l.as_str())
                    .collect();
                panic!("timed out after {budget:?}; last lines: {tail:#?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn cpu_ticks(&self) -> u64 {
        proc_stats::cpu_ticks(self.child.id()).expect("read /proc/PID/stat")
    }

    fn rss_kib(&self) -> u64 {
        proc_stats::rss_kib(self.child.id()).unwrap_or(0)
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// K threads, each a socket with one CON GET in flight, for `secs`: completed lookups per second.
fn lookup_rate(rd: SocketAddr, k: usize, secs: u64) -> (f64, u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let handles: Vec<_> = (0..k)
        .map(|t| {
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut mid: u16 = (t as u16).wrapping_mul(7919);
                let (mut ok, mut lost) = (0u64, 0u64);
                let mut buf = [0u8; 2048];
                while Instant::now() < deadline {
                    mid = mid.wrapping_add(1);
                    let mut p = Packet::new();
                    p.header.set_type(MessageType::Confirmable);
                    p.header.code = MessageClass::Request(RequestType::Get);
                    p.header.message_id = mid;
                    p.set_token(mid.to_be_bytes().to_vec());
                    p.add_option(CoapOption::UriPath, b"rd-lookup".to_vec());
                    p.add_option(CoapOption::UriPath, b"ep".to_vec());
                    p.add_option(CoapOption::UriQuery, b"ep=sim-123".to_vec());
                    sock.send_to(&p.to_bytes().unwrap(), rd).unwrap();
                    loop {
                        match sock.recv_from(&mut buf) {
                            Ok((n, _)) => match Packet::from_bytes(&buf[..n]) {
                                Ok(r) if r.header.message_id == mid => {
                                    ok += 1;
                                    break;
                                }
                                _ => continue,
                            },
                            Err(_) => {
                                lost += 1;
                                break;
                            }
                        }
                    }
                }
                (ok, lost)
            })
        })
        .collect();
    let (mut ok, mut lost) = (0, 0);
    for h in handles {
        let (o, l) = h.join().unwrap();
        ok += o;
        lost += l;
    }
    (ok as f64 / started.elapsed().as_secs_f64(), lost)
}

/// `sweep 7 done in 123 ms: pinged 10000, alive 9000, failed 1000, ...` → (number, ms, fields).
fn parse_done(line: &str) -> (u64, u64, HashMap<String, u64>) {
    let rest = line.split("pinger: sweep ").nth(1).expect("sweep line");
    let mut words = rest.split_whitespace();
    let n = words.next().unwrap().parse().unwrap();
    let ms = rest
        .split("done in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let mut fields = HashMap::new();
    if let Some(counts) = rest.split(": ").nth(1) {
        for part in counts.split(", ") {
            let mut kv = part.rsplitn(2, ' ');
            if let (Some(v), Some(k)) = (kv.next(), kv.next()) {
                if let Ok(v) = v.parse() {
                    fields.insert(k.to_string(), v);
                }
            }
        }
    }
    (n, ms, fields)
}

fn sweep_start_of(line: &str, devices: usize) -> Option<u64> {
    // debug line: `pinger: sweep N of M devices over T ticks`
    let rest = line.split("pinger: sweep ").nth(1)?;
    let mut w = rest.split_whitespace();
    let n: u64 = w.next()?.parse().ok()?;
    (w.next()? == "of").then_some(())?;
    let m: usize = w.next()?.parse().ok()?;
    (m * 100 >= devices * 99).then_some(n)
}

fn main() {
    let a = Args::parse();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "gateway:\n  data_dir: {:?}\n  cache_mb: 32\nrd:\n  listen: [\"127.0.0.1:0\"]\n\
             coap:\n  max_in_flight: {}\npinger:\n  enabled: true\n  interval_s: {}\n  timeout_ms: {}\n  \
             attempts: {}\n  max_in_flight: {}\nhttp:\n  listen: \"\"\n",
            tmp.path().join("data").display().to_string(),
            a.coap_max_in_flight,
            a.interval_s,
            a.timeout_ms,
            a.attempts,
            a.max_in_flight
        ),
    )
    .unwrap();
    let gw = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_coap-gateway"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,coap_gateway::pinger=debug")
            .stdin(Stdio::null()),
    );
    let (_, _, line) = gw.wait(0, Duration::from_secs(30), |l| {
        l.contains("rd listening on udp://")
    });
    let rd: SocketAddr = line.split("udp://").nth(1).unwrap().trim().parse().unwrap();
    let gw_started = Instant::now();

    let mut sim_cmd = Command::new(
        device_sim::binary::path().unwrap_or_else(|e| panic!("device-sim binary: {e}")),
    );
    sim_cmd
        .args(["--rd", &rd.to_string(), "--count", &a.devices.to_string()])
        .args(["--lt", "3600", "--silent-fraction", &a.silent.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped());
    let mut sim = Proc::spawn(&mut sim_cmd);
    let mut sim_stdin = sim.child.stdin.take().unwrap();
    let (_, ready_at, ready) = sim.wait(0, Duration::from_secs(300), |l| {
        l.starts_with("device-sim ready")
    });
    println!(
        "{ready} ({:.1} s after the gateway started)",
        ready_at.duration_since(gw_started).as_secs_f64()
    );
    writeln!(sim_stdin, "silent fraction").unwrap();
    sim_stdin.flush().unwrap();
    let sim_rss = sim.rss_kib();
    let interval = Duration::from_secs(a.interval_s);

    // 1. A full sweep with nothing else going on.
    let from = gw.lines.lock().unwrap().len();
    let (i, _, start_line) = gw.wait(from, interval * 2 + Duration::from_secs(5), |l| {
        sweep_start_of(l, a.devices).is_some()
    });
    let cpu0 = gw.cpu_ticks();
    let t0 = Instant::now();
    let n = sweep_start_of(&start_line, a.devices).unwrap();
    let done_tag = format!("pinger: sweep {n} done");
    let (_, _, done) = gw.wait(i, interval * 3, |l| l.contains(&done_tag));
    let cpu_s = (gw.cpu_ticks() - cpu0) as f64 / proc_stats::clk_tck();
    let wall_s = t0.elapsed().as_secs_f64();
    let (_, sweep_ms, fields) = parse_done(&done);
    let gw_rss = gw.rss_kib();

    // 2. Idle lookups, between sweeps (if the interval leaves room).
    let idle_room = interval.saturating_sub(Duration::from_millis(sweep_ms));
    let (idle_rate, idle_lost) = if idle_room >= Duration::from_secs(a.lookup_s + 1) {
        lookup_rate(rd, a.lookup_k, a.lookup_s)
    } else {
        println!("interval leaves no idle window: idle lookups measured after stopping sweeps is not possible here");
        (f64::NAN, 0)
    };

    // 3. Lookups while the next full sweep runs.
    let from = gw.lines.lock().unwrap().len();
    let (_, _, next_start) = gw.wait(from, interval * 2, |l| {
        sweep_start_of(l, a.devices).is_some()
    });
    let cpu1 = gw.cpu_ticks();
    let t1 = Instant::now();
    let (sweep_rate, sweep_lost) = lookup_rate(rd, a.lookup_k, a.lookup_s);
    let lookup_cpu_s = (gw.cpu_ticks() - cpu1) as f64 / proc_stats::clk_tck();
    let lookup_wall = t1.elapsed().as_secs_f64();
    let m = sweep_start_of(&next_start, a.devices).unwrap();
    let done_tag = format!("pinger: sweep {m} done");
    let (_, _, done2) = gw.wait(0, interval * 3, |l| l.contains(&done_tag));
    let (_, sweep2_ms, _) = parse_done(&done2);

    let pinged = fields.get("pinged").copied().unwrap_or(0);
    let alive = fields.get("alive").copied().unwrap_or(0);
    let failed = fields.get("failed").copied().unwrap_or(0);
    let budget_ms = a.timeout_ms * u64::from(a.attempts);
    println!(
        "config: {} devices, {:.0}% silent, interval {} s, {} x {} ms, pinger max_in_flight {}, coap max_in_flight {}",
        a.devices,
        a.silent * 100.0,
        a.interval_s,
        a.attempts,
        a.timeout_ms,
        a.max_in_flight,
        a.coap_max_in_flight
    );
    println!("{done}");
    println!("{done2}");
    println!(
        "sweep: {sweep_ms} ms for {pinged} devices ({alive} alive, {failed} failed); target <= 5000 + {budget_ms} ms: {}",
        if sweep_ms <= 5000 + budget_ms { "met" } else { "MISSED" }
    );
    println!(
        "gateway CPU during the sweep: {cpu_s:.2} s over {wall_s:.2} s = {:.1}% of one core; \
         over the {} s interval: {:.2}% of one core",
        100.0 * cpu_s / wall_s,
        a.interval_s,
        100.0 * cpu_s / a.interval_s as f64
    );
    println!(
        "RD lookups (K={}): idle {idle_rate:.0}/s (lost {idle_lost}), during sweep {m} ({sweep2_ms} ms) \
         {sweep_rate:.0}/s (lost {sweep_lost}) = {:.0}% of idle; gateway CPU while looking up during \
         the sweep {:.0}%",
        a.lookup_k,
        100.0 * sweep_rate / idle_rate,
        100.0 * lookup_cpu_s / lookup_wall
    );
    println!(
        "RSS: gateway {} MiB, device-sim ({} devices) {} MiB",
        gw_rss / 1024,
        a.devices,
        sim_rss / 1024
    );
    println!(
        "{{\"bench\":\"pinger_sweep\",\"devices\":{},\"silent\":{},\"interval_s\":{},\"max_in_flight\":{},\
         \"sweep_ms\":{sweep_ms},\"next_sweep_ms\":{sweep2_ms},\"pinged\":{pinged},\"alive\":{alive},\"failed\":{failed},\
         \"sweep_cpu_s\":{cpu_s:.3},\"lookup_idle_per_s\":{idle_rate:.0},\"lookup_sweep_per_s\":{sweep_rate:.0},\
         \"gateway_rss_kib\":{gw_rss},\"sim_rss_kib\":{sim_rss}}}",
        a.devices, a.silent, a.interval_s, a.max_in_flight
    );
    sim.terminate();
    let mut gw = gw;
    gw.terminate();
}
