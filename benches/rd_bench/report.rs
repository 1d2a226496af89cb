//! Reporting: a phase's statistics as JSON (rates, latency percentiles, server and client
//! CPU), the registration-rate bands, and the timestamped progress lines on stderr.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::load::Stats;
use crate::process::ProcSample;

pub fn percentile(sorted: &[u32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    Some(f64::from(sorted[idx]) / 1000.0)
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn stats_json(
    st: &mut Stats,
    elapsed: f64,
    server: Option<&ProcSample>,
    server_after: Option<&ProcSample>,
) -> Value {
    st.latencies_us.sort_unstable();
    let mut v = json!({
        "sent": st.sent, "ok": st.ok, "errors": st.errors, "timeouts": st.timeouts,
        "retransmits": st.retransmits, "resets": st.resets, "stray": st.stray, "codes": st.codes,
        "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        // Bounded by time: answers within the window over the window (stragglers drained
        // afterwards do not dilute it). Bounded by count: all answers over the time taken.
        "rate_per_s": if st.window_s > 0.0 && elapsed >= st.window_s {
            round1(st.ok_in_window as f64 / st.window_s)
        } else if elapsed > 0.0 {
            round1(st.ok as f64 / elapsed)
        } else {
            0.0
        },
        "p50_ms": percentile(&st.latencies_us, 0.5), "p99_ms": percentile(&st.latencies_us, 0.99),
        "max_ms": st.latencies_us.last().map(|x| f64::from(*x) / 1000.0),
    });
    if let (Some(a), Some(b)) = (server, server_after) {
        let cpu = b.cpu_s - a.cpu_s;
        v["server_cpu_s"] = json!(round2(cpu));
        v["server_cpu_util"] = json!(if elapsed > 0.0 {
            round2(cpu / elapsed)
        } else {
            0.0
        });
        // Capacity per core, independent of what else the shared machine runs meanwhile.
        if cpu > 0.0 {
            v["ok_per_server_cpu_s"] = json!((st.ok as f64 / cpu).round());
        }
    }
    // The load generator's own CPU: near 1.0 means it, not the RD, may be the limit.
    if let Some(c) = st.client_cpu_s {
        v["client_cpu_util"] = json!(if elapsed > 0.0 {
            round2(c / elapsed)
        } else {
            0.0
        });
    }
    v
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn log_phase(label: &str, v: &Value) {
    eprintln!("{} {label:<34} {v}", clock());
}

pub fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Registration-rate bands from the completion instants (pauses for checkpoints excluded).
pub fn bands(completions: &[(u64, Instant, Duration)], n: u64) -> Value {
    // completions: (cumulative count, instant, paused time before it)
    let at = |c: u64| -> Option<f64> {
        if c == 0 {
            return Some(0.0);
        }
        completions.get((c - 1) as usize).map(|(_, t, paused)| {
            t.duration_since(completions[0].1).as_secs_f64() - paused.as_secs_f64()
        })
    };
    let rate = |a: u64, b: u64| -> Option<f64> {
        let (ta, tb) = (at(a)?, at(b)?);
        // The first completion is time zero; add one mean interval so band 0 is not short.
        (tb > ta).then(|| round1((b - a) as f64 / (tb - ta)))
    };
    // The bands the registration-rate targets are stated in (0..1k, 1k..10k, 10k..N), cut
    // short when N is smaller.
    let mut v = json!({});
    for (from, to) in [(0u64, 1_000u64), (1_000, 10_000), (10_000, u64::MAX)] {
        if n > from {
            let end = to.min(n);
            let label = format!(
                "{from}..{}",
                if end == n {
                    "N".to_string()
                } else {
                    end.to_string()
                }
            );
            v[label] = json!(rate(from.max(1), end));
        }
    }
    v["N"] = json!(n);
    if n >= 100_000 {
        let early = rate(1, 1000);
        let late = rate(90_000, 100_000);
        v["90k..100k"] = json!(late);
        v["ratio_90k..100k_over_0..1k"] = json!(early
            .zip(late)
            .map(|(e, l)| (l / e * 1000.0).round() / 1000.0));
    }
    v
}
