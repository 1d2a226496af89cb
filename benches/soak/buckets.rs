//! platform-sim's `data` frames counted three ways: by the second the bench read them, by the
//! second the gateway got the value (their `at`), and per device (duplicated, skipped and
//! reordered values); the latency histogram; and the spread of one-second buckets.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock Unix seconds: the key of the one-second buckets.
pub fn unix_s() -> u64 {
    unix_ms() / 1000
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// platform-sim's stdout, counted by frame type, by second and by device.
#[derive(Default)]
pub struct Counts {
    pub data: AtomicU64,
    pub status: AtomicU64,
    pub registered: AtomicU64,
    pub buckets: Mutex<Buckets>,
}

#[derive(Default)]
pub struct Buckets {
    /// `data` frames by the Unix second the bench read them from platform-sim.
    pub arrived: BTreeMap<u64, u64>,
    /// `data` frames by the second of the day of their `at` (when the gateway got the value).
    pub stamped: BTreeMap<u64, u64>,
    /// Per device: the last value's step (0..100) and the frames seen.
    pub last_step: HashMap<String, u64>,
    pub duplicates: u64,
    pub skipped: u64,
    /// Values older than one the device already delivered.
    pub reordered: u64,
    /// The first few skips, for the log.
    pub examples: Vec<String>,
    /// Milliseconds from a frame's `at` (the gateway got the value) to the bench reading it
    /// from platform-sim, by bucket of 10 ms (the last bucket: 10 s and more).
    pub latency: Vec<u64>,
}

/// `"key":"value"` → value (the frames are compact JSON without escapes in these fields).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// Second of the day of an RFC 3339 `...THH:MM:SS.mmmZ`.
pub fn second_of_day(at: &str) -> Option<u64> {
    let t = at.split('T').nth(1)?;
    let mut parts = t.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let s: u64 = parts.next()?.get(..2)?.parse().ok()?;
    Some(h * 3600 + m * 60 + s)
}

/// Millisecond of the day of an RFC 3339 `...THH:MM:SS.mmmZ`.
pub fn ms_of_day(at: &str) -> Option<u64> {
    let ms: u64 = at.rsplit('.').next()?.get(..3)?.parse().ok()?;
    Some(second_of_day(at)? * 1000 + ms)
}

/// The `q` quantile of a 10-ms latency histogram, in ms (upper edge of its bucket).
pub fn quantile(hist: &[u64], q: f64) -> u64 {
    let total: u64 = hist.iter().sum();
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen as f64 >= q * total as f64 && *n > 0 {
            return (i as u64 + 1) * 10;
        }
    }
    0
}

/// The sawtooth step of device-sim's temperature ("23.4" → 34).
pub fn step_of(payload: &str) -> Option<u64> {
    let (whole, tenth) = payload.split_once('.')?;
    Some((whole.parse::<u64>().ok()?.checked_sub(20)?) * 10 + tenth.parse::<u64>().ok()?)
}

impl Buckets {
    pub fn data_frame(&mut self, line: &str, now_ms: u64) {
        let now_s = now_ms / 1000;
        *self.arrived.entry(now_s).or_default() += 1;
        if let Some(at) = field(line, "at") {
            if let Some(s) = second_of_day(at) {
                *self.stamped.entry(s).or_default() += 1;
            }
            if let Some(ms) = ms_of_day(at) {
                let lat = (now_ms % 86_400_000 + 86_400_000 - ms) % 86_400_000;
                if self.latency.is_empty() {
                    self.latency = vec![0; 1001];
                }
                self.latency[(lat / 10).min(1000) as usize] += 1;
            }
        }
        let (Some(ep), Some(step)) = (field(line, "ep"), field(line, "payload").and_then(step_of))
        else {
            return;
        };
        let Some(prev) = self.last_step.get_mut(ep) else {
            self.last_step.insert(ep.to_owned(), step);
            return;
        };
        match (step + 100 - *prev) % 100 {
            0 => self.duplicates += 1,
            1 => *prev = step,
            // Half the sawtooth or more "ahead" is an older value after a newer one.
            jump if jump >= 50 => self.reordered += 1,
            jump => {
                self.skipped += jump - 1;
                if self.examples.len() < 5 {
                    self.examples
                        .push(format!("{ep}: step {} then {step} at {now_ms} ms", *prev));
                }
                *prev = step;
            }
        }
    }
}

/// One-second buckets `first..=last` of `map` (missing seconds count 0): min, max, mean,
/// the worst deviation from the mean in %, and how many were more than `tolerance` % off.
pub fn spread(map: &BTreeMap<u64, u64>, first: u64, last: u64, tolerance: f64) -> String {
    if last < first {
        return "no whole seconds".into();
    }
    let v: Vec<u64> = (first..=last)
        .map(|s| map.get(&s).copied().unwrap_or(0))
        .collect();
    let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
    let dev = |n: u64| 100.0 * (n as f64 - mean).abs() / mean.max(1.0);
    let worst = v.iter().map(|&n| dev(n)).fold(0.0, f64::max);
    let off = v.iter().filter(|&&n| dev(n) > tolerance).count();
    format!(
        "{} s: min {}, max {}, mean {mean:.0}, worst {worst:.2} % from the mean, {off} beyond {tolerance} %",
        v.len(),
        v.iter().min().unwrap_or(&0),
        v.iter().max().unwrap_or(&0)
    )
}

pub fn worst_deviation(map: &BTreeMap<u64, u64>, first: u64, last: u64) -> f64 {
    if last < first {
        return 0.0;
    }
    let v: Vec<u64> = (first..=last)
        .map(|s| map.get(&s).copied().unwrap_or(0))
        .collect();
    let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
    v.iter()
        .map(|&n| 100.0 * (n as f64 - mean).abs() / mean.max(1.0))
        .fold(0.0, f64::max)
}
