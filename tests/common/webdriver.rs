//! Headless Chromium driven over WebDriver (the W3C protocol), for browser tests of the admin
//! console: `chromedriver` (Debian's `chromium-driver`) drives `chromium`, and the tests talk to
//! chromedriver with the `fantoccini` client.
//!
//! [`Chrome::start`] runs `/usr/bin/chromedriver --port=0` in a process group of its own, reads
//! the port it bound from its `started successfully on port N` line, waits until `GET /status`
//! says it is ready, then opens one session on a fresh profile. The API is synchronous (the
//! tests are plain `#[test]` functions): a current-thread tokio runtime inside runs each
//! WebDriver command, and every command and every wait is bounded by a deadline; running out
//! panics with a message naming what was waited for. `Drop` closes the session (bounded),
//! kills the whole process group (chromedriver, Chromium and its helpers) and waits until it is
//! gone, and prints chromedriver's output when the test is failing.
//!
//! Sessions use `unhandledPromptBehavior: ignore`: a JavaScript `alert()` stays open, so a test
//! can see it with [`Chrome::alert_text`] or [`Chrome::assert_no_alert`] (an alert on the
//! console means injected script ran), and any other command panics while one is open.
//!
//! Where the two programs are missing, [`require`] follows the skip policy of `skip.rs`: a
//! recorded skip on a developer's machine, a failure under `COAP_GATEWAY_NO_SKIPS` (CI).
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to bind its port and answer `GET /status` as ready.
const DRIVER_STARTUP: Duration = Duration::from_secs(20);
/// How long opening the session may take (it starts Chromium: a few seconds cold).
const SESSION_BUDGET: Duration = Duration::from_secs(60);
/// How long one WebDriver command may take (a navigation included).
const COMMAND_BUDGET: Duration = Duration::from_secs(30);
/// How long `Drop` waits for the session to close before killing the processes.
const CLOSE_BUDGET: Duration = Duration::from_secs(5);
/// The polling period of the waits.
const POLL: Duration = Duration::from_millis(50);

/// The Chromium flags of every session. The background-networking ones keep Chromium from
/// opening connections of its own (refused on this machine, and outside 127.0.0.1 anyway).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// Whether `/usr/bin/chromium` and `/usr/bin/chromedriver` are installed.
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// [`available`], or else a skip ([`super::skip::skip`]: a failure under
/// `COAP_GATEWAY_NO_SKIPS`, as in CI). Use as `if !webdriver::require() { return; }`.
pub fn require() -> bool {
    let ok = available();
    if !ok {
        super::skip::skip(
            "chromium and chromedriver",
            &format!(
                "{CHROMIUM} or {CHROMEDRIVER} is missing (scripts/test.sh installs the Debian \
                 packages chromium and chromium-driver)"
            ),
        );
    }
    ok
}

/// Where [`Chrome::screenshot`] saves: `<CARGO_TARGET_DIR or target>/console-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("console-screenshots")
}

/// One chromedriver with one open session in headless Chromium.
pub struct Chrome {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Option<Child>,
    /// chromedriver's (and so Chromium's) stdout and stderr lines.
    log: Arc<Mutex<Vec<String>>>,
    port: u16,
    _profile: tempfile::TempDir,
}

/// Copy `stream`'s lines into `log`, and send the port of chromedriver's
/// `... started successfully on port N.` line to `port`.
fn drain(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    port: mpsc::Sender<u16>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                if let Ok(n) = rest.trim_end_matches('.').trim().parse() {
                    let _ = port.send(n);
                }
            }
            log.lock().expect("log lock").push(line);
        }
    });
}

/// Whether chromedriver on `port` answers `GET /status` with `"ready": true`.
fn driver_ready(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let Some((_, body)) = response.split_once("\r\n\r\n") else {
        return false;
    };
    serde_json::from_str::<Value>(body)
        .map(|v| v["value"]["ready"] == json!(true))
        .unwrap_or(false)
}

/// Run `future` on `rt` for at most `budget` (`None`: it did not finish in time).
fn bounded<F: Future>(
    rt: &tokio::runtime::Runtime,
    budget: Duration,
    future: F,
) -> Option<F::Output> {
    // The timer is made inside the runtime: tokio's timers need its context.
    rt.block_on(async move { tokio::time::timeout(budget, future).await.ok() })
}

/// A CSS locator.
fn css(selector: &str) -> Locator<'_> {
    Locator::Css(selector)
}

impl Chrome {
    /// Start chromedriver and open a session in a fresh headless Chromium; panics (with
    /// chromedriver's output) when either does not come up in time.
    pub fn start() -> Chrome {
        assert!(
            available(),
            "{CHROMIUM} and {CHROMEDRIVER} are needed (check webdriver::require() first)"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime for the WebDriver client");
        let profile = tempfile::tempdir().expect("Chromium profile dir");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Drop kills chromedriver and every Chromium process with
            // one killpg.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {CHROMEDRIVER}: {e}"));
        let (port_tx, port_rx) = mpsc::channel();
        drain(
            driver.stdout.take().expect("chromedriver stdout"),
            log.clone(),
            port_tx.clone(),
        );
        drain(
            driver.stderr.take().expect("chromedriver stderr"),
            log.clone(),
            port_tx,
        );
        let mut chrome = Chrome {
            rt,
            client: None,
            driver: Some(driver),
            log,
            port: 0,
            _profile: profile,
        };
        let deadline = Instant::now() + DRIVER_STARTUP;
        chrome.port = loop {
            match port_rx.recv_timeout(POLL) {
                Ok(port) => break port,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "chromedriver closed its output without printing its port:\n{}",
                    chrome.log_text()
                ),
            }
            chrome.assert_driver_alive("printing its port");
            assert!(
                Instant::now() < deadline,
                "chromedriver did not print its port within {DRIVER_STARTUP:?}:\n{}",
                chrome.log_text()
            );
        };
        while !driver_ready(chrome.port) {
            chrome.assert_driver_alive("answering GET /status");
            assert!(
                Instant::now() < deadline,
                "chromedriver on port {} did not answer GET /status as ready within \
                 {DRIVER_STARTUP:?}:\n{}",
                chrome.port,
                chrome.log_text()
            );
            std::thread::sleep(POLL);
        }

        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            chrome._profile.path().display()
        ));
        let capabilities = json!({
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let url = format!("http://127.0.0.1:{}", chrome.port);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let session = bounded(
            &chrome.rt,
            SESSION_BUDGET,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&url),
        );
        let client = match session {
            Some(Ok(client)) => client,
            Some(Err(e)) => panic!(
                "opening a WebDriver session at {url}: {e}\n{}",
                chrome.log_text()
            ),
            None => panic!(
                "opening a WebDriver session at {url}: no answer within {SESSION_BUDGET:?}\n{}",
                chrome.log_text()
            ),
        };
        chrome.client = Some(client);
        chrome
    }

    /// chromedriver's port on 127.0.0.1.
    pub fn driver_port(&self) -> u16 {
        self.port
    }

    /// chromedriver's output so far (Chromium's stderr included).
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    fn assert_driver_alive(&mut self, doing: &str) {
        if let Some(driver) = self.driver.as_mut() {
            if let Ok(Some(status)) = driver.try_wait() {
                self.driver = None;
                panic!(
                    "chromedriver exited ({status}) before {doing}:\n{}",
                    self.log_text()
                );
            }
        }
    }

    /// The fantoccini client, for what this API does not cover; run its futures with
    /// [`Chrome::block_on`].
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    /// Run `future` on the harness's runtime, bounded by [`COMMAND_BUDGET`].
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        bounded(&self.rt, COMMAND_BUDGET, future)
            .unwrap_or_else(|| panic!("a WebDriver call took more than {COMMAND_BUDGET:?}"))
    }

    /// Run one WebDriver command (`what` names it in the panic message), bounded by `budget`.
    fn try_run<T>(
        &self,
        budget: Duration,
        what: &str,
        command: impl Future<Output = Result<T, CmdError>>,
    ) -> Result<T, CmdError> {
        match bounded(&self.rt, budget, command) {
            Some(result) => result,
            None => panic!("WebDriver: {what}: no answer within {budget:?}"),
        }
    }

    /// Like [`Chrome::try_run`] with [`COMMAND_BUDGET`], panicking on an error.
    fn run<T>(&self, what: &str, command: impl Future<Output = Result<T, CmdError>>) -> T {
        self.try_run(COMMAND_BUDGET, what, command)
            .unwrap_or_else(|e| self.fail(what, &e))
    }

    fn fail(&self, what: &str, e: &CmdError) -> ! {
        if e.is_unexpected_alert_open() {
            panic!(
                "WebDriver: {what}: a JavaScript alert dialog is open (did injected script run?): {e}"
            );
        }
        panic!("WebDriver: {what}: {e}");
    }

    /// The one element matching `selector`, or a panic naming it.
    fn element(&self, selector: &str, for_what: &str) -> Element {
        let client = self.client();
        match self.try_run(COMMAND_BUDGET, for_what, client.find(css(selector))) {
            Ok(element) => element,
            Err(e) if e.is_no_such_element() => {
                panic!("{for_what}: no element matches {selector:?}")
            }
            Err(e) => self.fail(for_what, &e),
        }
    }

    /// Navigate to `url` and wait for its load event.
    pub fn goto(&self, url: &str) {
        let client = self.client();
        self.run(&format!("goto {url}"), client.goto(url));
    }

    /// Reload the page and wait for its load event.
    pub fn refresh(&self) {
        let client = self.client();
        self.run("refresh", client.refresh());
    }

    /// The page's current URL.
    pub fn current_url(&self) -> String {
        let client = self.client();
        self.run("current url", client.current_url()).to_string()
    }

    /// Wait until an element matches `selector`; panics after `timeout`.
    pub fn wait_for(&self, selector: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let client = self.client();
        loop {
            let found = self.run(
                &format!("find {selector:?}"),
                client.find_all(css(selector)),
            );
            if !found.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for an element matching {selector:?}; the page is {}",
                self.current_url()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Poll the JavaScript expression `expr` every 50 ms until it is `true`; panics after
    /// `timeout` naming `expr` (and the last script error, if it threw).
    pub fn wait_until_js(&self, expr: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let script = format!("return ({expr});");
        let client = self.client();
        loop {
            let last = match self.try_run(
                COMMAND_BUDGET,
                &format!("evaluate {expr:?}"),
                client.execute(&script, vec![]),
            ) {
                Ok(Value::Bool(true)) => return,
                Ok(value) => format!("last value: {value}"),
                Err(e) if e.is_javascript_error() => format!("last error: {e}"),
                Err(e) => self.fail(&format!("evaluate {expr:?}"), &e),
            };
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for `{expr}` to be true ({last})"
            );
            std::thread::sleep(POLL);
        }
    }

    /// The rendered text of the element matching `selector`.
    pub fn text(&self, selector: &str) -> String {
        let element = self.element(selector, &format!("text of {selector:?}"));
        self.run(&format!("text of {selector:?}"), element.text())
    }

    /// The rendered texts of every element matching `selector`, in document order.
    pub fn texts(&self, selector: &str) -> Vec<String> {
        let what = format!("texts of {selector:?}");
        let client = self.client();
        let elements = self.run(&what, client.find_all(css(selector)));
        elements
            .iter()
            .map(|element| self.run(&what, element.text()))
            .collect()
    }

    /// The attribute `name` of the element matching `selector` (`None`: no such attribute).
    pub fn attr(&self, selector: &str, name: &str) -> Option<String> {
        let what = format!("attribute {name} of {selector:?}");
        let element = self.element(selector, &what);
        self.run(&what, element.attr(name))
    }

    /// The attribute `name` of every element matching `selector`, in document order.
    pub fn attrs(&self, selector: &str, name: &str) -> Vec<Option<String>> {
        let what = format!("attribute {name} of each {selector:?}");
        let client = self.client();
        let elements = self.run(&what, client.find_all(css(selector)));
        elements
            .iter()
            .map(|element| self.run(&what, element.attr(name)))
            .collect()
    }

    /// How many elements match `selector`.
    pub fn count(&self, selector: &str) -> usize {
        let client = self.client();
        self.run(
            &format!("count {selector:?}"),
            client.find_all(css(selector)),
        )
        .len()
    }

    /// Click the element matching `selector`.
    pub fn click(&self, selector: &str) {
        let what = format!("click {selector:?}");
        let element = self.element(selector, &what);
        self.run(&what, element.click());
    }

    /// Clear the field matching `selector`, then type `text` into it key by key.
    pub fn type_into(&self, selector: &str, text: &str) {
        let what = format!("type into {selector:?}");
        let element = self.element(selector, &what);
        self.run(&what, element.clear());
        self.run(&what, element.send_keys(text));
    }

    /// Press Enter in the element matching `selector` (submits its form).
    pub fn press_enter(&self, selector: &str) {
        let what = format!("press Enter in {selector:?}");
        let element = self.element(selector, &what);
        let enter = char::from(Key::Enter).to_string();
        self.run(&what, element.send_keys(&enter));
    }

    /// Run `js` as a function body (`return ...` gives the value; `arguments[i]` are `args`).
    pub fn execute(&self, js: &str, args: Vec<Value>) -> Value {
        let client = self.client();
        self.run(&format!("execute {js:?}"), client.execute(js, args))
    }

    /// `sessionStorage.setItem(key, value)` in the current page's origin.
    pub fn set_session_storage(&self, key: &str, value: &str) {
        self.execute(
            "sessionStorage.setItem(arguments[0], arguments[1]);",
            vec![json!(key), json!(value)],
        );
    }

    /// `sessionStorage.getItem(key)` in the current page's origin.
    pub fn session_storage(&self, key: &str) -> Option<String> {
        match self.execute(
            "return sessionStorage.getItem(arguments[0]);",
            vec![json!(key)],
        ) {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Save a PNG of the viewport as `<screenshot_dir()>/<name>.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let client = self.client();
        let png = self.run(&format!("screenshot {name}"), client.screenshot());
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The text of the JavaScript dialog (`alert`, `confirm`, `prompt`) open now, if any.
    pub fn alert_text(&self) -> Option<String> {
        let client = self.client();
        match self.try_run(COMMAND_BUDGET, "get alert text", client.get_alert_text()) {
            Ok(text) => Some(text),
            Err(e) if e.is_no_such_alert() => None,
            Err(e) => self.fail("get alert text", &e),
        }
    }

    /// Whether a JavaScript dialog is open now.
    pub fn alert_open(&self) -> bool {
        self.alert_text().is_some()
    }

    /// Panic when a JavaScript dialog is open: on the console that means injected script ran.
    pub fn assert_no_alert(&self, context: &str) {
        if let Some(text) = self.alert_text() {
            panic!("{context}: a JavaScript alert is open ({text:?}): did injected script run?");
        }
    }

    /// Dismiss the open JavaScript dialog.
    pub fn dismiss_alert(&self) {
        let client = self.client();
        self.run("dismiss alert", client.dismiss_alert());
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = bounded(&self.rt, CLOSE_BUDGET, client.close());
        }
        if let Some(mut driver) = self.driver.take() {
            let group = driver.id() as libc::pid_t;
            // SAFETY: killpg only sends a signal; `group` is the process group chromedriver
            // leads (process_group(0)), which holds it and the Chromium it started.
            unsafe { libc::killpg(group, libc::SIGKILL) };
            let _ = driver.wait();
            // Chromium's processes, re-parented once chromedriver died, leave the group as
            // they are reaped: wait (bounded) until it is empty.
            let deadline = Instant::now() + Duration::from_secs(5);
            // SAFETY: signal 0 only checks whether the group still has a process.
            while unsafe { libc::killpg(group, 0) } == 0 && Instant::now() < deadline {
                // SAFETY: as above.
                unsafe { libc::killpg(group, libc::SIGKILL) };
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "---- chromedriver log ----\n{}\n---- end ----",
                self.log_text()
            );
        }
    }
}
