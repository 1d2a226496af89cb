//! Memory per idle session: the server process's resident memory before and after client
//! processes (this binary re-run with `--client-hold`) establish N PSK sessions and keep them,
//! so that what grows is the server's alone (the clients' `SSL`s live in the children). Read
//! from `/proc/self/status`: `RssAnon` (heap and anonymous mappings, the honest figure) and
//! `VmRSS`. Read twice: just after the handshakes (each session still in its OpenSSL `SSL`,
//! record buffers released), and once every session has moved to the endpoint's own record
//! layer (`src/dtls/session.rs`: the held sessions send no application data, so that happens
//! at the sweep after `COMPACT_AFTER`; a device that registers moves at once).
//!
//! 20,000 sessions take two children (`PER_PROCESS`): one socket per session, and a
//! descriptor limit of 20,000 that a container may not let a process raise. Each child talks
//! to the parent by lines: it prints `nofile OLD NEW` (its descriptor limit, raised if it may),
//! then `warm N` after a few handshakes it closed again (OpenSSL's lazily built tables are in
//! place before the baseline), waits for a line on its input, establishes its sessions, prints
//! `held COMPLETED FAILED TIMED_OUT MILLIS`, and exits on the next line or at its own time cap.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::client::{self, Suite};
use crate::handshakes::{self, Plan};
use crate::server::{self, Server};

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A field of `/proc/self/status`, in KiB.
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Raise RLIMIT_NOFILE (soft, and hard if need be: root may) to at least `want`.
fn raise_nofile(want: u64) -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit/setrlimit to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        let old = lim.rlim_cur;
        if old >= want {
            return (old, old);
        }
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return (old, want);
        }
        // Not allowed past the hard limit: take what there is.
        let soft = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            (old, lim.rlim_max)
        } else {
            (old, old)
        }
    }
}

pub struct HoldArgs {
    pub target: SocketAddr,
    pub sessions: u64,
    pub workers: usize,
    pub in_flight: usize,
    pub seconds: u64,
}

/// The child: hold `sessions` sessions open against `target`.
pub fn hold_main(args: &HoldArgs) -> R<()> {
    // Whatever happens to the parent, the child ends.
    let cap = Duration::from_secs(args.seconds * 3 + 60);
    std::thread::spawn(move || {
        std::thread::sleep(cap);
        std::process::exit(3);
    });
    let (old, new) = raise_nofile(args.sessions + 256);
    let mut out = std::io::stdout().lock();
    writeln!(out, "nofile {old} {new}")?;
    let sessions = args.sessions.min(new.saturating_sub(256));
    let ctx = client::context(Suite::PskCcm8, None)?;
    let warm = handshakes::run(
        &ctx,
        &Plan {
            server: args.target,
            workers: 1,
            in_flight: 4,
            quota: 32,
            duration: Duration::from_secs(10),
            keep: false,
            identity_base: 9_000_000_000,
        },
    );
    writeln!(out, "warm {}", warm.completed)?;
    out.flush()?;
    let mut line = String::new();
    let mut input = std::io::stdin().lock();
    if input.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let held = handshakes::run(
        &ctx,
        &Plan {
            server: args.target,
            workers: args.workers,
            in_flight: args.in_flight,
            quota: sessions,
            duration: Duration::from_secs(args.seconds),
            keep: true,
            identity_base: 0,
        },
    );
    writeln!(
        out,
        "held {} {} {} {}",
        held.kept.len(),
        held.failed,
        held.timed_out,
        held.last_done.as_millis()
    )?;
    out.flush()?;
    line.clear();
    input.read_line(&mut line)?;
    drop(held);
    Ok(())
}

#[derive(Debug, Default)]
pub struct Measured {
    pub nofile: String,
    pub requested: u64,
    pub held: u64,
    pub failed: u64,
    pub establish_s: f64,
    pub server_sessions: u64,
    pub rss_anon_before_kib: u64,
    pub rss_anon_after_kib: u64,
    pub vm_rss_before_kib: u64,
    pub vm_rss_after_kib: u64,
    /// Sessions on the record layer, and the memory then.
    pub compacted: u64,
    pub rss_anon_compact_kib: u64,
    pub vm_rss_compact_kib: u64,
    pub server_cpu_us_per_handshake: f64,
}

impl Measured {
    pub fn anon_per_session_bytes(&self) -> f64 {
        (self
            .rss_anon_after_kib
            .saturating_sub(self.rss_anon_before_kib)
            * 1_024) as f64
            / self.server_sessions.max(1) as f64
    }

    pub fn anon_per_compact_session_bytes(&self) -> f64 {
        (self
            .rss_anon_compact_kib
            .saturating_sub(self.rss_anon_before_kib)
            * 1_024) as f64
            / self.server_sessions.max(1) as f64
    }

    pub fn rss_per_compact_session_bytes(&self) -> f64 {
        (self
            .vm_rss_compact_kib
            .saturating_sub(self.vm_rss_before_kib)
            * 1_024) as f64
            / self.server_sessions.max(1) as f64
    }

    pub fn rss_per_session_bytes(&self) -> f64 {
        (self.vm_rss_after_kib.saturating_sub(self.vm_rss_before_kib) * 1_024) as f64
            / self.server_sessions.max(1) as f64
    }
}

fn expect_line(lines: &mut impl Iterator<Item = std::io::Result<String>>, tag: &str) -> R<String> {
    match lines.next() {
        Some(Ok(l)) if l.starts_with(tag) => Ok(l),
        Some(Ok(l)) => Err(format!("client said {l:?}, expected {tag}").into()),
        Some(Err(e)) => Err(e.into()),
        None => Err(format!("client ended before {tag}").into()),
    }
}

/// Start a fresh server, let a child hold `sessions` sessions against it, and measure.
pub fn measure(sessions: u64, workers: usize, in_flight: usize, seconds: u64) -> R<Measured> {
    let config = server::config(None, sessions as usize + 1_000);
    let server = Server::start(config, Duration::from_secs(seconds * 3 + 120))?;
    let result = measure_with(&server, sessions, workers, in_flight, seconds);
    server.stop();
    result
}

/// Sessions one client process holds at most: its sockets stay well inside a 20,000
/// descriptor limit that it may not be allowed to raise (a container without
/// CAP_SYS_RESOURCE), so 20,000 sessions take two processes.
const PER_PROCESS: u64 = 15_000;

struct HoldChild {
    child: std::process::Child,
    input: std::process::ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

fn spawn_hold(
    server: &Server,
    sessions: u64,
    workers: usize,
    in_flight: usize,
    seconds: u64,
) -> R<HoldChild> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "--client-hold".to_string(),
            "--target".into(),
            server.secure.to_string(),
            "--sessions".into(),
            sessions.to_string(),
            "--workers".into(),
            workers.to_string(),
            "--in-flight".into(),
            in_flight.to_string(),
            "--seconds".into(),
            seconds.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("no pipes to the client process".into());
    };
    Ok(HoldChild {
        child,
        input,
        lines: BufReader::new(output).lines(),
    })
}

fn measure_with(
    server: &Server,
    sessions: u64,
    workers: usize,
    in_flight: usize,
    seconds: u64,
) -> R<Measured> {
    let procs = sessions.div_ceil(PER_PROCESS).max(1);
    let mut children = Vec::new();
    for i in 0..procs {
        let share = sessions / procs + u64::from(i < sessions % procs);
        match spawn_hold(server, share, workers, in_flight, seconds) {
            Ok(c) => children.push(c),
            Err(e) => {
                end(children);
                return Err(e);
            }
        }
    }
    let result = (|| -> R<Measured> {
        let mut m = Measured {
            requested: sessions,
            ..Measured::default()
        };
        let mut limits = Vec::new();
        for c in children.iter_mut() {
            limits.push(expect_line(&mut c.lines, "nofile")?);
            expect_line(&mut c.lines, "warm")?;
        }
        m.nofile = limits.join(", ");
        // The warm-up sessions were closed; the table is empty again.
        server.wait_sessions(|n| n == 0, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(300));
        m.rss_anon_before_kib = status_kib("RssAnon").unwrap_or(0);
        m.vm_rss_before_kib = status_kib("VmRSS").unwrap_or(0);
        let cpu0 = server.cpu_ns();
        let done0 = server.completed();
        for c in children.iter_mut() {
            writeln!(c.input, "go")?;
        }
        for c in children.iter_mut() {
            let held = expect_line(&mut c.lines, "held")?;
            let f: Vec<u64> = held
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            m.held += f.first().copied().unwrap_or(0);
            m.failed += f.get(1).copied().unwrap_or(0) + f.get(2).copied().unwrap_or(0);
            m.establish_s = m
                .establish_s
                .max(f.get(3).copied().unwrap_or(0) as f64 / 1_000.0);
        }
        // The server may still be taking the last Finished messages.
        server.wait_sessions(|n| n >= m.held, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(500));
        m.server_sessions = server.sessions();
        m.rss_anon_after_kib = status_kib("RssAnon").unwrap_or(0);
        m.vm_rss_after_kib = status_kib("VmRSS").unwrap_or(0);
        // Quiet sessions move to the record layer at the sweep after COMPACT_AFTER (10 s).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while server.compacted() < m.held && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(1_500));
        m.compacted = server.compacted();
        m.rss_anon_compact_kib = status_kib("RssAnon").unwrap_or(0);
        m.vm_rss_compact_kib = status_kib("VmRSS").unwrap_or(0);
        let done = server.completed().saturating_sub(done0).max(1);
        m.server_cpu_us_per_handshake =
            server.cpu_ns().saturating_sub(cpu0) as f64 / 1_000.0 / done as f64;
        Ok(m)
    })();
    end(children);
    result
}

/// Tell the clients to go and wait for them. Bounded: a client ends on "quit", on a closed
/// input, or at its own cap.
fn end(children: Vec<HoldChild>) {
    for mut c in children {
        let _ = writeln!(c.input, "quit");
        drop(c.input);
        let _ = c.child.wait();
    }
}
