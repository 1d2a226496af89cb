//! Shared harness for integration tests: runs the real `coap-gateway` binary on a temporary
//! config and data directory, with every listener on port 0.
//!
//! The gateway logs one `rd listening on udp://ADDR` line per bound socket; the harness waits
//! for them, fails if the child exits first, and in `Drop` kills the child and prints its log so
//! a failing test shows what the gateway said. The admin HTTP server is off (`http.listen: ""`)
//! unless a test starts the gateway with [`Gateway::start_with_http`] (or
//! [`Gateway::start_with_http_config`], with extra `http:` keys and environment); its bound
//! address (from the `admin http listening on http://ADDR` or `https://ADDR` line) is then
//! [`Gateway::http_addr`]. Headless Chromium driven over the DevTools protocol is in `cdp`,
//! and over WebDriver (chromedriver) in `webdriver`.
#![allow(dead_code)]

pub mod cdp;
pub mod coap_peer;
pub mod coaps;
pub mod constrained;
pub mod device_sim;
pub mod etcd;
pub mod events;
pub mod http;
pub mod libcoap;
pub mod netns;
pub mod ping_target;
pub mod pki;
pub mod platform_sim;
pub mod raw_device;
pub mod rd_dump;
pub mod skip;
pub mod stalling_snapshot;
pub mod tcp_cut;
pub mod webdriver;
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
    /// The admin HTTP address, once the gateway logged it, and whether it serves HTTPS.
    http: Arc<Mutex<Option<(SocketAddr, bool)>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// Extra YAML appended to the generated config (sections the test wants to change). An `rd:`
/// section in `extra_yaml` is merged into the generated one (YAML allows each key once).
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

/// Write a config for `data_dir`, without starting anything (admin HTTP off).
pub fn write_config(dir: &Path, data_dir: &Path, opts: &GatewayOptions) -> PathBuf {
    write_config_full(dir, data_dir, opts, "", "")
}

/// Write a config whose `http.listen` is `http_listen` (`""` disables the admin server).
pub fn write_config_with_http(
    dir: &Path,
    data_dir: &Path,
    opts: &GatewayOptions,
    http_listen: &str,
) -> PathBuf {
    write_config_full(dir, data_dir, opts, "", http_listen)
}

/// Like [`write_config`], with `rd_lines` (e.g. `"  dnssd: true\n"`, indented by two) added
/// to the `rd:` section.
pub fn write_config_rd(
    dir: &Path,
    data_dir: &Path,
    opts: &GatewayOptions,
    rd_lines: &str,
) -> PathBuf {
    write_config_full(dir, data_dir, opts, rd_lines, "")
}

/// The config writer behind the others: `rd:` lines from `rd_lines` and from an `rd:` block in
/// `opts.extra_yaml` both land in the one generated `rd:` section.
pub fn write_config_full(
    dir: &Path,
    data_dir: &Path,
    opts: &GatewayOptions,
    rd_lines: &str,
    http_listen: &str,
) -> PathBuf {
    write_config_http(dir, data_dir, opts, rd_lines, http_listen, "")
}

/// [`write_config_full`] with `http_lines` (indented by two, e.g. `"  token_file: t\n"`)
/// added to the `http:` section.
pub fn write_config_http(
    dir: &Path,
    data_dir: &Path,
    opts: &GatewayOptions,
    rd_lines: &str,
    http_listen: &str,
    http_lines: &str,
) -> PathBuf {
    let listen: Vec<String> = opts.listen.iter().map(|l| format!("{l:?}")).collect();
    let (rd_keys, extra) = split_rd_section(&opts.extra_yaml);
    let yaml = format!(
        "gateway:\n  id: test-gw\n  data_dir: {data:?}\n  cache_mb: 8\nrd:\n  listen: [{listen}]\n{rd_lines}{rd_keys}http:\n  listen: {http_listen:?}\n{http_lines}{extra}\n",
        data = data_dir.display().to_string(),
        listen = listen.join(", "),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write test config");
    path
}

/// Split `yaml` into the indented lines of its top-level `rd:` section (if any) and the rest.
fn split_rd_section(yaml: &str) -> (String, String) {
    let (mut rd, mut rest) = (String::new(), String::new());
    let mut in_rd = false;
    for line in yaml.lines() {
        if line.trim_end() == "rd:" {
            in_rd = true;
            continue;
        }
        if in_rd && (line.starts_with(' ') || line.trim().is_empty()) {
            rd.push_str(line);
            rd.push('\n');
            continue;
        }
        in_rd = false;
        rest.push_str(line);
        rest.push('\n');
    }
    (rd, rest)
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

    /// Like [`Gateway::start_with`], with the admin HTTP server on 127.0.0.1:0; waits until it
    /// is bound too ([`Gateway::http_addr`]).
    pub fn start_with_http(opts: GatewayOptions) -> Gateway {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let config_path = write_config_with_http(tmp.path(), &data_dir, &opts, "127.0.0.1:0");
        let mut gw = Gateway::spawn(&config_path, data_dir, opts.listen.len());
        gw._tmp = Some(tmp);
        gw.wait_for_http();
        gw
    }

    /// Like [`Gateway::start_with_http`] on `http_listen`, with `http_lines` in the `http:`
    /// section (see [`write_config_http`]) and `env` set for the gateway process (`RUST_LOG`
    /// there replaces the harness's level).
    pub fn start_with_http_config(
        opts: GatewayOptions,
        http_listen: &str,
        http_lines: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let config_path =
            write_config_http(tmp.path(), &data_dir, &opts, "", http_listen, http_lines);
        let mut cmd = Command::new(gateway_bin());
        cmd.env_remove("COAP_GATEWAY_HTTP_TOKEN");
        cmd.envs(env.iter().copied());
        let mut gw = Gateway::spawn_command(cmd, &config_path, data_dir, opts.listen.len());
        gw._tmp = Some(tmp);
        gw.wait_for_http();
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
        Gateway::start_in_netns_rd(netns, opts, "")
    }

    /// [`Gateway::start_in_netns`] with extra `rd:` lines (see [`write_config_rd`]).
    pub fn start_in_netns_rd(netns: &str, opts: GatewayOptions, rd_lines: &str) -> Gateway {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let config_path = write_config_rd(tmp.path(), &data_dir, &opts, rd_lines);
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
        if !cmd.get_envs().any(|(name, _)| name == "RUST_LOG") {
            cmd.env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        }
        let mut child = cmd
            .arg("--config")
            .arg(config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn coap-gateway");
        let log = Arc::new(Mutex::new(Vec::new()));
        let http = Arc::new(Mutex::new(None));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        for stream in [
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("stdout")),
        ] {
            let log = log.clone();
            let http = http.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("rd listening on udp://").nth(1) {
                        if let Ok(addr) = rest.trim().parse::<SocketAddr>() {
                            let _ = tx.send(addr);
                        }
                    }
                    for (prefix, tls) in [
                        ("admin http listening on http://", false),
                        ("admin http listening on https://", true),
                    ] {
                        if let Some(rest) = line.split(prefix).nth(1) {
                            if let Ok(addr) = rest.trim().parse::<SocketAddr>() {
                                *http.lock().unwrap() = Some((addr, tls));
                            }
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
            http,
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

    /// The gateway's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The first (IPv4 unless configured otherwise) RD address.
    pub fn addr(&self) -> SocketAddr {
        self.rd_addrs[0]
    }

    /// The admin HTTP server's bound address (after [`Gateway::start_with_http`], or after
    /// [`Gateway::wait_for_http`] for a gateway spawned on a config that enables it).
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .lock()
            .unwrap()
            .expect("admin http is not enabled: use Gateway::start_with_http")
            .0
    }

    /// `http://ADDR` (or `https://ADDR`) of the admin server.
    pub fn http_url(&self) -> String {
        let (addr, tls) = self
            .http
            .lock()
            .unwrap()
            .expect("admin http is not enabled: use Gateway::start_with_http");
        format!("{}://{addr}", if tls { "https" } else { "http" })
    }

    /// Wait for the admin server's `listening` line; fails the test when the gateway exits or
    /// never logs it (its config must enable `http.listen`).
    pub fn wait_for_http(&mut self) -> SocketAddr {
        let deadline = Instant::now() + STARTUP_BUDGET;
        loop {
            if let Some((addr, _)) = *self.http.lock().unwrap() {
                return addr;
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "coap-gateway exited with {status} before serving HTTP:\n{}",
                        self.log_text()
                    );
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "coap-gateway logged no admin http address:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

    /// Wait up to `budget` for the gateway to exit by itself: `Some(code)` (`None` inside:
    /// killed by a signal), or `None` when it still runs (it is left running).
    pub fn wait_exit(&mut self, budget: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + budget;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status.code());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
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

/// A gateway on 127.0.0.1 running the production policy for other hosts: loopback is not
/// exempt from the limits (`limits.exempt_loopback: false`), so 127.0.0.x sources stand for LAN
/// hosts; the Pinger is off. `rd_extra` goes under `rd:`, `limits` under `limits:` (each line
/// indented by two). The temporary directory holds the config and data.
pub fn start_unexempt(rd_extra: &str, limits: &str) -> (Gateway, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let opts = GatewayOptions {
        listen: vec!["127.0.0.1:0".into()],
        extra_yaml: format!(
            "rd:\n{rd_extra}pinger:\n  enabled: false\nlimits:\n  exempt_loopback: false\n{limits}"
        ),
        data_dir: Some(data.clone()),
    };
    let path = write_config(tmp.path(), &data, &opts);
    (Gateway::spawn(&path, data, 1), tmp)
}

/// Whether an external test peer is installed; see [`skip::require_tool`].
/// A `coap-gateway` process as replica `member` of `cluster` under `prefix` (lease `ttl_s`),
/// with `extra` configuration after the `registry:` section.
pub fn replica(
    cluster: &etcd::EtcdCluster,
    prefix: &str,
    member: &str,
    ttl_s: u64,
    extra: &str,
) -> Gateway {
    Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "{}{extra}",
            cluster.registry_yaml(prefix, member, ttl_s, "")
        ),
        ..Default::default()
    })
}

pub fn require_tool(name: &str) -> bool {
    skip::require_tool(name)
}
