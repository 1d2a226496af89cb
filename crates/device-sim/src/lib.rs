//! `device-sim`'s library part: N simulated CoAP devices for tests, benchmarks and
//! trying the gateway without hardware. Built on the project's own CoAP layer
//! (`coap_endpoint::Endpoint`, the `crates/coap-endpoint` workspace crate, one per device). Not
//! part of the product: the gateway does not depend on this crate.
//!
//! - `options`: the command line.
//! - `device`: one device's resources (the `RequestHandler`) and the request counters.
//! - `silence`: which devices go silent, and the stdin control commands (pure).
//! - `fleet`: binding, registering, refreshing, notifying, silencing and waking devices.
//! - `rate`: counts per wall-clock second (`--per-second`).
//! - `limits`: raising the open-file limit for 10,000 sockets.
//! - `flood`: hostile datagrams for the flood test and benchmark.
//! - `time`: the wall clock in Unix milliseconds.
//! - `binary`: where the built `device-sim` executable is, for the tests and benchmarks of
//!   other packages that spawn it.

pub mod binary;
pub mod device;
pub mod fleet;
pub mod flood;
pub mod limits;
pub mod options;
pub mod psk;
pub mod rate;
pub mod silence;
pub mod time;

use std::io::{BufRead, Write};
use std::time::Duration;

use log::{info, warn};
use tokio::sync::mpsc;

pub use fleet::{Fleet, SimError};
pub use options::SimOptions;
use silence::{parse_command, SilenceCommand, SilenceCommandError};

/// How often the fleet looks for due refreshes. Sampling (and notifying) has its own timer, at
/// each whole second of the wall clock.
pub const TICK: Duration = Duration::from_millis(250);

/// File descriptors kept for everything that is not a device socket.
const SPARE_FDS: u64 = 256;

/// Run the simulator until SIGINT/SIGTERM; prints `device-sim ready: ...` once every device is
/// registered (or listening, with `--no-register`), and the request counts on exit.
pub async fn run(opts: SimOptions) -> Result<(), SimError> {
    match limits::raise_open_files(opts.count as u64 + SPARE_FDS) {
        Ok(n) if n < opts.count as u64 + SPARE_FDS => warn!(
            "device-sim: open-file limit is {n}; {} devices need about {}",
            opts.count,
            opts.count as u64 + SPARE_FDS
        ),
        Ok(_) => {}
        Err(e) => warn!("device-sim: cannot raise the open-file limit: {e}"),
    }
    let register = !opts.no_register;
    let silent_after = opts.silent_after.map(Duration::from_secs);
    let return_after = opts.return_after.map(Duration::from_secs);
    let opts_per_second = opts.per_second;
    let mut fleet = Fleet::bind(opts).await?;
    if register {
        fleet.register_all().await?;
        say(&format!(
            "device-sim ready: {} devices registered",
            fleet.len()
        ));
    } else {
        say(&format!(
            "device-sim ready: {} devices listening (not registered)",
            fleet.len()
        ));
    }
    let ready = tokio::time::Instant::now();
    let commands = spawn_stdin_reader();
    let counts = fleet.counts();
    let per_second = opts_per_second;
    event_loop(
        &mut fleet,
        commands,
        ready,
        silent_after,
        return_after,
        per_second,
    )
    .await;
    say(&format!("device-sim requests served: {counts}"));
    Ok(())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Stdin is read on a plain thread (blocking reads), and each parsed command handed over.
/// A refused line travels the same way, so its reply comes in order with the others.
fn spawn_stdin_reader() -> mpsc::UnboundedReceiver<Result<SilenceCommand, SilenceCommandError>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            let parsed = match parse_command(&line) {
                Ok(Some(cmd)) => Ok(cmd),
                Ok(None) => continue,
                Err(e) => Err(e),
            };
            if tx.send(parsed).is_err() {
                return;
            }
        }
    });
    rx
}

/// The instant of the next whole second of the wall clock (tokio timers are monotonic: the
/// distance is taken from the system clock each time, so the samples stay on the second).
fn next_whole_second() -> (tokio::time::Instant, u64) {
    let now_ms = crate::time::now_ms();
    let next_s = now_ms / 1000 + 1;
    let wait = Duration::from_millis(next_s * 1000 - now_ms);
    (tokio::time::Instant::now() + wait, next_s)
}

/// `--per-second`: one line about second `s`, printed once it is over (its notifications have
/// been started and, unless the fleet is more than a second behind, served).
fn say_second(fleet: &Fleet, s: u64) {
    let counts = fleet.counts();
    say(&format!(
        "device-sim second {s}: notified {}, observe answers {}",
        counts.notified_per_second.get(s),
        counts.observe_per_second.get(s)
    ));
}

async fn event_loop(
    fleet: &mut Fleet,
    mut commands: mpsc::UnboundedReceiver<Result<SilenceCommand, SilenceCommandError>>,
    ready: tokio::time::Instant,
    silent_after: Option<Duration>,
    return_after: Option<Duration>,
    per_second: bool,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            warn!("device-sim: cannot install signal handlers");
            return;
        }
    };
    let never = ready + Duration::from_secs(100 * 365 * 86_400);
    let mut silence_at = silent_after.map_or(never, |d| ready + d);
    let mut return_at = return_after.map_or(never, |d| ready + d);
    let mut ticker = tokio::time::interval(TICK);
    let (mut sample_at, mut sample_s) = next_whole_second();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(sample_at) => {
                // The wall clock, not the timer, names the second (a late wake-up still samples
                // the second it is in, and never the same one twice).
                let now_s = (crate::time::now_ms() / 1000).max(sample_s);
                fleet.sample(now_s);
                if per_second {
                    say_second(fleet, now_s - 1);
                }
                (sample_at, sample_s) = next_whole_second();
                sample_s = sample_s.max(now_s + 1);
            }
            _ = ticker.tick() => fleet.tick(),
            _ = fleet.next_outcome() => {}
            cmd = commands.recv(), if stdin_open => match cmd {
                // Every command is answered with one line on stdout, next to `ready`.
                Some(Ok(cmd)) => say(&fleet.apply(cmd).await),
                Some(Err(e)) => say(&format!("device-sim: {e}")),
                // Stdin closed (e.g. /dev/null): keep running on timers and signals alone.
                None => stdin_open = false,
            },
            _ = tokio::time::sleep_until(silence_at) => {
                silence_at = never;
                say(&fleet.apply(SilenceCommand::SilentFraction).await);
            }
            _ = tokio::time::sleep_until(return_at) => {
                return_at = never;
                say(&fleet.apply(SilenceCommand::WakeFraction).await);
            }
            _ = term.recv() => { info!("device-sim: SIGTERM"); break; }
            _ = int.recv() => { info!("device-sim: SIGINT"); break; }
        }
    }
}
