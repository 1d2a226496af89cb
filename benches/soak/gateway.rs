//! The gateway under soak: its config, what its log says (drops, panics, lost observations),
//! the datagrams the kernel dropped at its socket, and its CPU by thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::proc_stats;
use crate::Args;

/// The gateway's config: data in `dir`, the RD on an ephemeral loopback port, no HTTP, the
/// Pinger and the platform queue as the flags say, the Observer on.
pub fn write_config(a: &Args, dir: &Path, url: &str) -> Result<PathBuf, String> {
    let config = dir.join("config.yaml");
    let pinger = if a.pinger_interval == 0 {
        "pinger:\n  enabled: false\n".to_owned()
    } else {
        format!(
            "pinger:\n  enabled: true\n  interval_s: {}\n  timeout_ms: 1000\n  attempts: 2\n",
            a.pinger_interval
        )
    };
    let queue = a
        .queue_capacity
        .map_or(String::new(), |q| format!("  queue_capacity: {q}\n"));
    std::fs::write(
        &config,
        format!(
            "gateway:\n  data_dir: {:?}\nrd:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"\"\n\
             {pinger}platform:\n  url: {url:?}\n{queue}observer:\n  enabled: true\n",
            dir.join("data").display().to_string()
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(config)
}

/// What the gateway's log says so far: values dropped or waiting at the Observer, `data`
/// frames dropped by the owed queue, panics, observations lost.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Logged {
    pub observer_dropped: u64,
    pub observer_waited: u64,
    pub owed_dropped: u64,
    pub panics: u64,
    pub lost: u64,
}

/// The number just before `what` in `line` ("... 12 values dropped ...").
pub fn number_before(line: &str, what: &str) -> Option<u64> {
    let before = line.split(what).next()?;
    before.trim_end().rsplit(' ').next()?.parse().ok()
}

pub fn read_log(path: &Path) -> Logged {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut l = Logged::default();
    for line in text.lines() {
        if line.contains(" links watched; last ") {
            l.observer_dropped +=
                number_before(line, " values dropped for a full queue").unwrap_or(0);
            l.observer_waited += number_before(line, " values waited for room").unwrap_or(0);
            l.lost += number_before(line, " observations lost").unwrap_or(0);
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

/// Datagrams the kernel dropped at the UDP socket bound to `port` (its receive buffer was
/// full): the `d` of `ss -uanm`'s socket memory line. Through `ss` (netlink, filtered in the
/// kernel): reading /proc/net/udp with 30,000 device sockets took seconds.
pub fn udp_drops(port: u16) -> u64 {
    let Ok(out) = Command::new("ss")
        .args(["-uanm", &format!("sport = :{port}")])
        .output()
    else {
        return 0;
    };
    String::from_utf8_lossy(&out.stdout)
        .split("skmem:(")
        .skip(1)
        .filter_map(|m| {
            let m = m.split(')').next()?;
            m.split(',')
                .find_map(|f| f.strip_prefix('d')?.parse::<u64>().ok())
        })
        .sum()
}

/// CPU ticks of every thread of `pid`, by thread name (threads of one name summed).
pub fn thread_ticks(pid: u32) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(name).or_default() += ticks;
    }
    out
}

pub fn cpu_pct(ticks: u64, secs: f64) -> f64 {
    100.0 * ticks as f64 / proc_stats::clk_tck() / secs.max(0.001)
}
