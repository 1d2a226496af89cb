//! New sessions per second: `workers` threads, each keeping `in_flight` handshakes going on
//! fresh sockets (a new source port per session, as new devices), until `duration` has passed
//! or `quota` sessions were started. A finished session is closed with close_notify (so the
//! server's table does not fill) or, with `keep`, handed back still open.
//!
//! The rate counts handshakes finished within the window; handshakes still going when it
//! closes get a bounded drain (`DRAIN`) and count in the latencies only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openssl::ssl::SslContext;

use crate::client::{poll_in, pollfd, Conn, Step};

/// How long a handshake may take before it counts as timed out (OpenSSL retransmits after 1 s
/// and 2 s; a handshake lost three times is not a rate figure any more).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);
/// Time for the handshakes in flight at the end of the window to finish.
const DRAIN: Duration = Duration::from_secs(6);
/// A pending handshake without a datagram is stepped this often (OpenSSL's retransmission
/// timer only fires when it is).
const NUDGE: Duration = Duration::from_millis(250);

pub struct Plan {
    pub server: SocketAddr,
    pub workers: usize,
    pub in_flight: usize,
    /// Handshakes started at most, over all workers.
    pub quota: u64,
    pub duration: Duration,
    pub keep: bool,
    /// Identities are `dev-<base + n>`.
    pub identity_base: u64,
}

#[derive(Default)]
pub struct Outcome {
    pub completed: u64,
    pub completed_in_window: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub latencies_us: Vec<u32>,
    pub window: Duration,
    pub elapsed: Duration,
    /// When the last handshake finished, from the start.
    pub last_done: Duration,
    pub first_failure: Option<String>,
    pub cipher: Option<&'static str>,
    pub kept: Vec<Conn>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.completed_in_window as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: Outcome) {
        self.completed += other.completed;
        self.completed_in_window += other.completed_in_window;
        self.failed += other.failed;
        self.timed_out += other.timed_out;
        self.latencies_us.extend(other.latencies_us);
        self.elapsed = self.elapsed.max(other.elapsed);
        self.window = self.window.max(other.window);
        self.last_done = self.last_done.max(other.last_done);
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        if self.cipher.is_none() {
            self.cipher = other.cipher;
        }
        self.kept.extend(other.kept);
    }

    /// The `q`-quantile of the handshake latencies, in milliseconds.
    pub fn latency_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies_us[i.min(self.latencies_us.len() - 1)]) / 1_000.0
    }
}

pub fn run(ctx: &SslContext, plan: &Plan) -> Outcome {
    let workers = plan.workers.max(1);
    let start = Instant::now();
    let mut total = Outcome::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                // Split the quota; the first workers take the remainder.
                let w64 = w as u64;
                let n = workers as u64;
                let quota = plan.quota / n + u64::from(w64 < plan.quota % n);
                let base = plan.identity_base + w64 * 1_000_000;
                scope.spawn(move || worker(ctx, plan, quota, base, start))
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(o) => total.merge(o),
                Err(_) => total.first_failure = Some("a load worker panicked".into()),
            }
        }
    });
    total
}

fn worker(ctx: &SslContext, plan: &Plan, quota: u64, base: u64, start: Instant) -> Outcome {
    let window_end = start + plan.duration;
    let hard_end = window_end + DRAIN;
    let mut out = Outcome::default();
    let mut pending: Vec<Conn> = Vec::with_capacity(plan.in_flight);
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(plan.in_flight);
    let mut started = 0u64;
    let finish = |conn: Conn, step: Step, out: &mut Outcome| match step {
        Step::Done => {
            let now = Instant::now();
            out.completed += 1;
            out.last_done = now.saturating_duration_since(start);
            if now <= window_end {
                out.completed_in_window += 1;
            }
            let us = now.saturating_duration_since(conn.started).as_micros();
            out.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            if out.cipher.is_none() {
                out.cipher = conn.cipher();
            }
            let mut conn = conn;
            if plan.keep {
                out.kept.push(conn);
            } else {
                conn.close();
            }
        }
        Step::Failed(why) => {
            out.failed += 1;
            out.first_failure.get_or_insert(why);
        }
        Step::Pending => {
            out.timed_out += 1;
        }
    };
    loop {
        let now = Instant::now();
        if now >= hard_end {
            out.timed_out += pending.len() as u64;
            break;
        }
        while pending.len() < plan.in_flight && started < quota && now < window_end {
            started += 1;
            let identity = format!("dev-{}", base + started);
            match Conn::connect(ctx, plan.server, identity.as_bytes()) {
                Ok((conn, Step::Pending)) => pending.push(conn),
                Ok((conn, step)) => finish(conn, step, &mut out),
                Err(e) => {
                    out.failed += 1;
                    out.first_failure.get_or_insert(e.to_string());
                }
            }
        }
        if pending.is_empty() {
            if started >= quota || now >= window_end {
                break;
            }
            continue;
        }
        fds.clear();
        fds.extend(pending.iter().map(|c| pollfd(c.fd())));
        poll_in(&mut fds, Duration::from_millis(10));
        let now = Instant::now();
        // Back to front, so swap_remove leaves the unvisited entries where they are.
        for i in (0..pending.len()).rev() {
            let ready = fds[i].revents != 0;
            if !ready && now.saturating_duration_since(pending[i].last_step) < NUDGE {
                continue;
            }
            match pending[i].handshake() {
                Step::Pending => {
                    if now.saturating_duration_since(pending[i].started) > HANDSHAKE_LIMIT {
                        let conn = pending.swap_remove(i);
                        finish(conn, Step::Pending, &mut out);
                    }
                }
                step => {
                    let conn = pending.swap_remove(i);
                    finish(conn, step, &mut out);
                }
            }
        }
    }
    // A worker that ran out of quota first was done when its last handshake was.
    out.window = if started >= quota {
        plan.duration.min(out.last_done)
    } else {
        plan.duration
    };
    out.elapsed = start.elapsed();
    out
}
