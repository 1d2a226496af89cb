//! The load loop: K confirmable requests in flight spread over the lanes, one thread, `poll`
//! on the lanes' sockets. The shape of the CoAP crate's DTLS bench (one load thread, plain
//! and DTLS lanes driven by the same code), with a token per request so each answer is
//! matched to its request for latency, and per-request loss: a request unanswered for
//! `LOST_AFTER` is counted lost and its slot refilled (no retransmission: on loopback a loss
//! is an overload, and a retransmission would blur the rate).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::channel::{Lane, MIDS_PER_LANE};
use crate::client::{poll_in, pollfd};

const LOST_AFTER: Duration = Duration::from_secs(2);
/// How long a phase waits for outstanding answers once it stops sending.
const DRAIN: Duration = Duration::from_secs(3);

/// What a phase sends on lane `l` and how it judges an answer. Requests carry a 4-byte token
/// and any MID: the engine writes both in place.
pub trait Work {
    fn next(&mut self, l: usize) -> Option<Vec<u8>>;
    fn judge(&mut self, l: usize, code: u8, msg: &[u8]) -> bool;
}

#[derive(Debug, Default)]
pub struct Stats {
    pub sent: u64,
    pub ok: u64,
    /// Good answers that arrived before the phase's deadline.
    pub ok_in_window: u64,
    pub bad: u64,
    pub lost: u64,
    pub send_failed: u64,
    pub codes: BTreeMap<String, u64>,
    pub latencies_us: Vec<u32>,
    pub window_s: f64,
    pub elapsed_s: f64,
}

impl Stats {
    /// Good answers per second: within the window for a timed phase.
    pub fn rate(&self) -> f64 {
        if self.window_s > 0.0 && self.elapsed_s >= self.window_s {
            self.ok_in_window as f64 / self.window_s
        } else {
            self.ok as f64 / self.elapsed_s.max(1e-9)
        }
    }

    pub fn percentile_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 * q) as usize).min(self.latencies_us.len() - 1);
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

fn code_str(c: u8) -> String {
    format!("{}.{:02}", c >> 5, c & 31)
}

struct Pending {
    lane: usize,
    mid: u16,
    sent: Instant,
}

/// Up to `max` requests of `work`, K in flight over `lanes`, for at most `window`.
pub fn run(lanes: &mut [Lane], work: &mut dyn Work, k: usize, max: u64, window: Duration) -> Stats {
    let mut st = Stats {
        window_s: window.as_secs_f64(),
        ..Stats::default()
    };
    let m = lanes.len().max(1);
    // K split over the lanes; with K below M some lanes carry no window.
    let windows: Vec<usize> = (0..lanes.len())
        .map(|i| k / m + usize::from(i < k % m))
        .collect();
    let mut in_flight = vec![0usize; lanes.len()];
    let mut exhausted = vec![false; lanes.len()];
    let mut pending: HashMap<u32, Pending> = HashMap::with_capacity(k * 2);
    let mut fds: Vec<libc::pollfd> = lanes.iter().map(|l| pollfd(l.channel.fd())).collect();
    let mut token: u32 = rand::random();
    let mut buf = [0u8; 2_048];
    let start = Instant::now();
    let deadline = start + window;
    let hard_stop = deadline + DRAIN;
    let mut last_sweep = start;
    loop {
        let now = Instant::now();
        let sending = now < deadline && st.sent < max;
        if (!sending || exhausted.iter().all(|e| *e)) && pending.is_empty() {
            break;
        }
        if now >= hard_stop {
            st.lost += pending.len() as u64;
            break;
        }
        if sending {
            for (l, lane) in lanes.iter_mut().enumerate() {
                while in_flight[l] < windows[l] && !exhausted[l] && st.sent < max {
                    if lane.used >= MIDS_PER_LANE {
                        exhausted[l] = true;
                        break;
                    }
                    let Some(mut msg) = work.next(l) else {
                        exhausted[l] = true;
                        break;
                    };
                    if msg.len() < 8 || msg[0] & 0x0f != 4 {
                        exhausted[l] = true;
                        break;
                    }
                    lane.mid = lane.mid.wrapping_add(1);
                    token = token.wrapping_add(1);
                    msg[2..4].copy_from_slice(&lane.mid.to_be_bytes());
                    msg[4..8].copy_from_slice(&token.to_be_bytes());
                    if !lane.channel.send(&msg) {
                        st.send_failed += 1;
                        break;
                    }
                    lane.used += 1;
                    st.sent += 1;
                    in_flight[l] += 1;
                    pending.insert(
                        token,
                        Pending {
                            lane: l,
                            mid: lane.mid,
                            sent: Instant::now(),
                        },
                    );
                }
            }
        }
        if poll_in(&mut fds, Duration::from_millis(20)) > 0 {
            for (l, lane) in lanes.iter_mut().enumerate() {
                if fds[l].revents == 0 {
                    continue;
                }
                for _ in 0..256 {
                    let Some(n) = lane.channel.recv(&mut buf) else {
                        break;
                    };
                    let msg = &buf[..n];
                    if n < 4 || msg[0] >> 6 != 1 {
                        continue;
                    }
                    let mtype = (msg[0] >> 4) & 3;
                    let code = msg[1];
                    if code == 0 {
                        // An empty ACK announces a separate response (matched by token
                        // later); a RST refuses the request with that MID.
                        if mtype == 3 {
                            let mid = u16::from_be_bytes([msg[2], msg[3]]);
                            let hit = pending
                                .iter()
                                .find(|(_, p)| p.lane == l && p.mid == mid)
                                .map(|(t, _)| *t);
                            if let Some(t) = hit {
                                pending.remove(&t);
                                in_flight[l] = in_flight[l].saturating_sub(1);
                                st.bad += 1;
                                *st.codes.entry("RST".into()).or_insert(0) += 1;
                            }
                        }
                        continue;
                    }
                    if mtype == 0 {
                        let ack = [0x60, 0, msg[2], msg[3]];
                        lane.channel.send(&ack);
                    }
                    if msg[0] & 0x0f != 4 || n < 8 {
                        continue;
                    }
                    let t = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
                    let Some(p) = pending.remove(&t) else {
                        continue;
                    };
                    in_flight[p.lane] = in_flight[p.lane].saturating_sub(1);
                    let at = Instant::now();
                    st.latencies_us.push(
                        u32::try_from(at.duration_since(p.sent).as_micros()).unwrap_or(u32::MAX),
                    );
                    *st.codes.entry(code_str(code)).or_insert(0) += 1;
                    if work.judge(p.lane, code, msg) {
                        st.ok += 1;
                        if at <= deadline {
                            st.ok_in_window += 1;
                        }
                    } else {
                        st.bad += 1;
                    }
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(last_sweep) >= Duration::from_millis(50) {
            last_sweep = now;
            let lost: Vec<u32> = pending
                .iter()
                .filter(|(_, p)| now.duration_since(p.sent) >= LOST_AFTER)
                .map(|(t, _)| *t)
                .collect();
            for t in lost {
                if let Some(p) = pending.remove(&t) {
                    in_flight[p.lane] = in_flight[p.lane].saturating_sub(1);
                    st.lost += 1;
                }
            }
        }
    }
    st.elapsed_s = start.elapsed().as_secs_f64();
    st
}
