//! Shared harness for integration tests: runs the real `coap-gateway` binary on a temporary
//! config and data directory, with every listener on port 0.
//!
//! The gateway logs one `rd listening on udp://ADDR` line per bound socket; the harness waits
//! for them, fails if the child exits first, and in `Drop` kills the child and prints its log so
//! a failing test shows what the gateway said.
#![allow(dead_code)]

pub mod coap_peer;
pub mod device_sim;
pub mod netns;
pub mod platform_sim;
pub mod raw_device;
pub mod rd_dump;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a gateway may take to come up (a cold sled open plus socket binds).
const STARTUP_BUDGET: Duration = Duration::from_secs(20);

pub struct Gateway {
    child: Option<Child>,
    pub rd_addrs: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// Extra YAML appended to the generated config (sections the test wants to change).
pub struct GatewayOptions {
    pub listen: Vec<String>,
    pub extra_yaml: String,
    pub data_dir: Option<PathBuf>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            listen: vec!["127.0.0.1:0".into()],
            extra_yaml: String::new(),
            data_dir: None,
        }
    }
}

pub fn gateway_bin() -> &'static str {
    env!("CARGO_BIN_EXE_coap-gateway")
}

/// Write a config for `data_dir`, without starting anything.
pub fn write_config(dir: &Path, data_dir: &Path, opts: &GatewayOptions) -> PathBuf {
    let listen: Vec<String> = opts.listen.iter().map(|l| format!("{l:?}")).collect();
    let yaml = format!(
        "gateway:\n  id: test-gw\n  data_dir: {data:?}\n  cache_mb: 8\nrd:\n  listen: [{listen}]\nhttp:\n  listen: \"\"\n{extra}\n",
        data = data_dir.display().to_string(),
        listen = listen.join(", "),
        extra = opts.extra_yaml,
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write test config");
    path
}

impl Gateway {
    pub fn start() -> Gateway {
        Gateway::start_with(GatewayOptions::default())
    }

    pub fn start_with(opts: GatewayOptions) -> Gateway {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let config_path = write_config(tmp.path(), &data_dir, &opts);
        let mut gw = Gateway::spawn(&config_path, data_dir, opts.listen.len());
        gw._tmp = Some(tmp);
        gw
    }

    /// Start a gateway on an existing config and wait until all `listeners` are bound.
    pub fn spawn(config_path: &Path, data_dir: PathBuf, listeners: usize) -> Gateway {
        Gateway::spawn_command(
            Command::new(gateway_bin()),
            config_path,
            data_dir,
            listeners,
        )
    }

    /// Start a gateway inside network namespace `netns` (see `netns.rs`).
    pub fn start_in_netns(netns: &str, opts: GatewayOptions) -> Gateway {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let config_path = write_config(tmp.path(), &data_dir, &opts);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, gateway_bin()]);
        let mut gw = Gateway::spawn_command(cmd, &config_path, data_dir, opts.listen.len());
        gw._tmp = Some(tmp);
        gw
    }

    /// Spawn `cmd` (the gateway binary, possibly behind a wrapper) on `config_path`.
    pub fn spawn_command(
        mut cmd: Command,
        config_path: &Path,
        data_dir: PathBuf,
        listeners: usize,
    ) -> Gateway {
        let mut child = cmd
            .arg("--config")
            .arg(config_path)
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn coap-gateway");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        for stream in [
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("stdout")),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("rd listening on udp://").nth(1) {
                        if let Ok(addr) = rest.trim().parse::<SocketAddr>() {
                            let _ = tx.send(addr);
                        }
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut gw = Gateway {
            child: Some(child),
            rd_addrs: Vec::new(),
            data_dir,
            config_path: config_path.to_path_buf(),
            log,
            _tmp: None,
        };
        let deadline = Instant::now() + STARTUP_BUDGET;
        while gw.rd_addrs.len() < listeners {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
                gw.rd_addrs.push(addr);
                continue;
            }
            if let Some(status) = gw.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "coap-gateway exited early with {status}:\n{}",
                    gw.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!("coap-gateway did not bind in time:\n{}", gw.log_text());
            }
        }
        gw
    }

    /// The first (IPv4 unless configured otherwise) RD address.
    pub fn addr(&self) -> SocketAddr {
        self.rd_addrs[0]
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, budget: Duration) -> bool {
        let deadline = Instant::now() + budget;
        while Instant::now() < deadline {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send `signal` (e.g. "INT", "TERM") and wait up to `budget` for the exit. Returns the
    /// exit code (`None`: killed by a signal) and how long the exit took; `None` when it did
    /// not exit in time (it is then SIGKILLed).
    pub fn signal_and_wait(
        &mut self,
        signal: &str,
        budget: Duration,
    ) -> Option<(Option<i32>, Duration)> {
        let mut child = self.child.take()?;
        let sent = Instant::now();
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((status.code(), sent.elapsed()));
            }
            if sent.elapsed() > budget {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- coap-gateway log ----\n{}\n---- end ----",
                self.log_text()
            );
        }
    }
}

/// Whether an external test peer is installed. In CI (env `CI` set) a missing peer is a
/// failure, because `.ci/run` installs them; elsewhere the test is skipped with a message.
pub fn require_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is not installed; .ci/run installs it (see README)");
        }
        eprintln!("SKIP: {name} not installed (scripts/test.sh installs it)");
    }
    found
}
