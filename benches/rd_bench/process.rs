//! The gateway under test as a process: its config, memory and CPU from /proc, `perf record`
//! of it, its stop, the SIGKILL + restart measurement and the warnings its log holds.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gateway_process::GatewayProcess;
use crate::probe::{code_u8, Probe};
use crate::workload::{get_request, CODE_CONTENT};
use crate::Args;

pub struct ProcSample {
    pub rss_kb: Option<u64>,
    pub hwm_kb: Option<u64>,
    pub cpu_s: f64,
}

pub fn sample_proc(pid: Option<u32>) -> Option<ProcSample> {
    let pid = pid?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |k: usize| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // CLK_TCK is 100 on every Linux this runs on.
    let cpu_s = (ticks(11) + ticks(12)) / 100.0;
    Some(ProcSample {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        cpu_s,
    })
}

pub fn mem_json(s: Option<&ProcSample>) -> Value {
    match s {
        Some(s) => json!({"VmRSS_kB": s.rss_kb, "VmHWM_kB": s.hwm_kb, "cpu_s": s.cpu_s}),
        None => Value::Null,
    }
}

pub fn write_config(dir: &Path, listen: &str, cache_mb: u64) -> std::io::Result<PathBuf> {
    let cfg = dir.join("config.yaml");
    let text = format!(
        "gateway:\n  data_dir: {data}\n  cache_mb: {cache_mb}\nrd:\n  listen: [\"{listen}\"]\nhttp:\n  listen: \"\"\n",
        data = dir.join("data").display()
    );
    fs::write(&cfg, text)?;
    Ok(cfg)
}

/// SIGTERM, then SIGKILL after 10 s: the end of the run is bounded.
pub fn stop_gateway(mut g: GatewayProcess) {
    let pid = g.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = g.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("rd_bench: gateway ignored SIGTERM for 10 s; killing it");
    let _ = g.child.kill();
    let _ = g.child.wait();
}

pub fn start_perf(pid: Option<u32>, file: &Path) -> Option<Child> {
    let pid = pid?;
    Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "--call-graph",
            "dwarf,8192",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("rd_bench: perf record: {e}"))
        .ok()
}

pub fn stop_perf(p: Option<Child>) {
    let Some(mut p) = p else { return };
    let _ = Command::new("kill")
        .args(["-INT", &p.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = p.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = p.kill();
    let _ = p.wait();
}

/// Warnings and errors the spawned gateway logged (both runs), so none goes unnoticed.
pub fn gateway_log_summary(dir: &Path) -> Value {
    let mut count = 0usize;
    let mut first = Vec::new();
    for name in ["gateway.log", "gateway-restart.log"] {
        let text = fs::read_to_string(dir.join(name)).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        {
            count += 1;
            if first.len() < 5 {
                first.push(line.to_string());
            }
        }
    }
    json!({"warn_error_lines": count, "first": first})
}

/// SIGKILL the gateway, start it on the same data dir and port, and time the first good lookup.
pub fn restart(g: &mut GatewayProcess, args: &Args, dir: &Path) -> Value {
    let old_addr = g.addr;
    let _ = g.child.kill();
    let _ = g.child.wait();
    let cfg = match write_config(dir, &old_addr.to_string(), args.cache_mb) {
        Ok(c) => c,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let log = dir.join("gateway-restart.log");
    let spawned = Instant::now();
    let out = match fs::File::create(&log) {
        Ok(f) => f,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let child = match Command::new(&args.gateway_bin)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let Ok(mut probe) = Probe::new(g.addr) else {
        return json!({"error": "socket"});
    };
    let deadline = spawned + Duration::from_secs(120);
    let mut answered = None;
    let mut attempts = 0u32;
    while Instant::now() < deadline {
        attempts += 1;
        let req = get_request("/rd-lookup/ep?ep=dev-123", &[]);
        // Until the socket is bound, the probe gets ICMP unreachable at once; retry quickly.
        if let Some(p) = probe.request(req, Duration::from_millis(20), 1) {
            if code_u8(&p) == CODE_CONTENT
                && String::from_utf8_lossy(&p.payload).contains("dev-123")
            {
                answered = Some(spawned.elapsed());
                break;
            }
        } else {
            std::thread::sleep(Duration::from_millis(2));
            if let Ok(p) = Probe::new(g.addr) {
                probe = p;
            }
        }
    }
    let log_text = {
        let mut s = String::new();
        let _ = fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    let registry_line = log_text
        .lines()
        .find(|l| l.contains("registry opened"))
        .map(String::from);
    let new_pid = child.id();
    let mem = mem_json(sample_proc(Some(new_pid)).as_ref());
    // Swap the restarted process in so the caller stops it.
    g.child = child;
    json!({
        "first_lookup_s": answered.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
        "probes": attempts, "registry_log": registry_line, "mem_after_restart": mem, "pid": new_pid,
    })
}
