//! A release gateway started by a bench: spawned on a config file with its log in a file, its
//! RD address read from its `rd listening on udp://ADDR` line, killed when dropped (so a bench
//! that fails half-way leaves no gateway behind). Included with `#[path]`: benches are
//! separate crates.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GatewayProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `bin --config config` (RUST_LOG=info, stderr to `log`) and wait ≤ 60 s for its RD
/// address; also returns how long that took.
#[allow(dead_code)]
pub fn spawn_gateway(
    bin: &Path,
    config: &Path,
    log: &Path,
) -> Result<(GatewayProcess, Duration), String> {
    spawn_gateway_with(Command::new(bin), bin, config, log)
}

/// [`spawn_gateway`] through `cmd` (the binary `bin`, or a wrapper such as `ip netns exec NS
/// bin` that execs it in place, so the child's pid is the gateway's and drop kills it).
#[allow(dead_code)]
pub fn spawn_gateway_with(
    mut cmd: Command,
    bin: &Path,
    config: &Path,
    log: &Path,
) -> Result<(GatewayProcess, Duration), String> {
    let out = fs::File::create(log).map_err(|e| format!("log file: {e}"))?;
    let started = Instant::now();
    let child = cmd
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (run `cargo build --release` first)",
                bin.display()
            )
        })?;
    let mut gateway = GatewayProcess {
        child,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let deadline = started + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = gateway.child.try_wait() {
            return Err(format!(
                "gateway exited with {status}: {}",
                fs::read_to_string(log).unwrap_or_default()
            ));
        }
        let text = fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|l| l.split("rd listening on udp://").nth(1))
            .and_then(|a| a.trim().parse().ok())
        {
            gateway.addr = addr;
            return Ok((gateway, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err("gateway did not log its address within 60 s".into())
}
