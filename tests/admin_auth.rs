//! The admin API's bearer token (`http.token_file`, `COAP_GATEWAY_HTTP_TOKEN`) and its
//! optional HTTPS (`http.tls_cert_file` / `http.tls_key_file`), against the real gateway
//! binary: 401 without or with a wrong token and 200 with it, `/health` and the page shell
//! open, the token never in the gateway's log, config errors under `--check`, `rd-dump --url`
//! with and without `--token-file`, an HTTPS round trip on a certificate made here, and the
//! status page in headless Chromium asking for the token once and keeping it for the tab.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cdp::Browser;
use common::coap_peer::{run_bounded, Peer, Ran};
use common::http::{request_with, HttpResponse};
use common::{gateway_bin, require_tool, write_config_http, Gateway, GatewayOptions};

/// Characters a bearer token may hold beyond letters and digits (RFC 6750 b64token).
const TOKEN: &str = "adm1n.T0ken~x/y+z_Q-9=";
const TOKEN_ENV: &str = "COAP_GATEWAY_HTTP_TOKEN";

/// A temporary file holding `text`.
fn file_with(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

fn token_line(path: &Path) -> String {
    format!("  token_file: {:?}\n", path.display().to_string())
}

/// A gateway on 127.0.0.1:0 whose admin token comes from a file (with a trailing newline, as
/// `echo` writes it), logging at debug level so that a leak anywhere would show.
fn gateway_with_token(dir: &Path) -> Gateway {
    let token = file_with(dir, "token", &format!("{TOKEN}\n"));
    Gateway::start_with_http_config(
        GatewayOptions::default(),
        "127.0.0.1:0",
        &token_line(&token),
        &[("RUST_LOG", "debug")],
    )
}

fn get(gw: &Gateway, path: &str, token: Option<&str>) -> HttpResponse {
    method(gw, "GET", path, token)
}

fn method(gw: &Gateway, method: &str, path: &str, token: Option<&str>) -> HttpResponse {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("Authorization", b)])
        .unwrap_or_default();
    request_with(gw.http_addr(), method, path, &headers)
}

fn register(gw: &Gateway, ep: &str) -> Peer {
    let peer = Peer::new(gw.addr());
    let resp = peer.post_links(
        &format!("/rd?ep={ep}&lt=600"),
        "</sensors/temp>;rt=\"t\";obs",
    );
    assert_eq!(resp.code, "2.01", "register {ep}");
    peer
}

fn rd_dump(args: &[&str], env_token: Option<&str>) -> Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rd-dump"));
    cmd.args(args).env_remove(TOKEN_ENV);
    if let Some(token) = env_token {
        cmd.env(TOKEN_ENV, token);
    }
    run_bounded(&mut cmd, Duration::from_secs(30))
}

fn assert_token_absent(what: &str, text: &str) {
    assert!(
        !text.contains(TOKEN) && !text.contains("adm1n.T0ken"),
        "the token appears in {what}:\n{text}"
    );
}

#[test]
fn every_endpoint_but_health_and_the_page_shell_needs_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with_token(dir.path());
    let _peer = register(&gw, "secret-node");

    for path in [
        "/api/devices",
        "/api/devices/secret-node",
        "/metrics",
        "/no/such/path",
        // The open paths are matched exactly: an encoded or dotted way to the API is not one.
        "/%61pi/devices",
        "/health/../api/devices",
        "//api/devices",
    ] {
        let resp = get(&gw, path, None);
        assert_eq!(resp.status, 401, "{path} without a token: {}", resp.text());
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer "), "{path}: {challenge:?}");
        assert!(!challenge.contains("invalid_token"), "no token was sent");
        assert!(resp.json()["error"].is_string(), "{path}: {}", resp.text());
        assert!(!resp.text().contains("secret-node"));

        for wrong in ["wrong", &TOKEN[..TOKEN.len() - 1], &format!("{TOKEN}x")] {
            let resp = get(&gw, path, Some(wrong));
            assert_eq!(resp.status, 401, "{path} with {wrong:?}");
            assert!(resp
                .header("www-authenticate")
                .is_some_and(|c| c.contains(r#"error="invalid_token""#)));
        }
    }
    // Another scheme is no token at all.
    let basic = request_with(
        gw.http_addr(),
        "GET",
        "/api/devices",
        &[("Authorization", "Basic YWRtaW46YWRtaW4=")],
    );
    assert_eq!(basic.status, 401);
    // /health is open for GET and HEAD only.
    assert_eq!(method(&gw, "POST", "/health", None).status, 401);

    let devices = get(&gw, "/api/devices", Some(TOKEN));
    assert_eq!(devices.status, 200, "{}", devices.text());
    assert_eq!(devices.json()["devices"][0]["ep"], "secret-node");
    assert_eq!(
        get(&gw, "/api/devices/secret-node", Some(TOKEN)).status,
        200
    );
    assert_eq!(get(&gw, "/metrics", Some(TOKEN)).status, 200);
    assert_eq!(get(&gw, "/no/such/path", Some(TOKEN)).status, 404);

    let health = get(&gw, "/health", None);
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["registrations"], 1);
    assert_eq!(method(&gw, "HEAD", "/health", None).status, 200);

    // The page's shell loads without the token, but without device data; with the token
    // (a script or curl, never a browser's navigation) it has the first paint as before.
    let shell = get(&gw, "/", None);
    assert_eq!(shell.status, 200);
    assert!(shell.text().contains(r#"id="token-form""#));
    assert!(!shell.text().contains("secret-node"), "{}", shell.text());
    assert_eq!(get(&gw, "/status.js", None).status, 200);
    let page = get(&gw, "/", Some(TOKEN));
    assert!(page.text().contains(r#"data-ep="secret-node""#));

    // The refusals were logged (so the log was captured at debug level), the token never.
    assert!(
        gw.wait_for_log("refused with 401", Duration::from_secs(10)),
        "{}",
        gw.log_text()
    );
    assert_token_absent("the gateway's log", &gw.log_text());
}

#[test]
fn the_environment_variable_wins_over_the_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_with(dir.path(), "token", "from-the-file\n");
    let gw = Gateway::start_with_http_config(
        GatewayOptions::default(),
        "127.0.0.1:0",
        &token_line(&file),
        &[(TOKEN_ENV, TOKEN)],
    );
    assert_eq!(get(&gw, "/api/devices", Some(TOKEN)).status, 200);
    assert_eq!(get(&gw, "/api/devices", Some("from-the-file")).status, 401);
    assert_token_absent("the gateway's log", &gw.log_text());
}

/// `coap-gateway --check` on a config with `http_lines`: exit code and stderr.
fn check(dir: &Path, http_lines: &str) -> (Option<i32>, String) {
    let data = dir.join("data");
    let config = write_config_http(
        dir,
        &data,
        &GatewayOptions::default(),
        "",
        "127.0.0.1:0",
        http_lines,
    );
    let ran = run_bounded(
        Command::new(gateway_bin())
            .arg("--check")
            .arg("--config")
            .arg(&config)
            .env_remove(TOKEN_ENV),
        Duration::from_secs(30),
    );
    (ran.status, ran.stderr)
}

#[test]
fn unusable_token_or_certificate_files_are_config_errors_under_check() {
    let dir = tempfile::tempdir().unwrap();
    let empty = file_with(dir.path(), "empty", "\n \n");
    let good = file_with(dir.path(), "good", TOKEN);
    let (code, err) = check(dir.path(), &token_line(&dir.path().join("missing")));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("http.token_file") && err.contains("cannot read"),
        "{err}"
    );
    let (code, err) = check(dir.path(), &token_line(&empty));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("http.token_file") && err.contains("empty"),
        "{err}"
    );
    let (code, err) = check(dir.path(), &token_line(&good));
    assert_eq!(code, Some(0), "{err}");

    let tls = SelfSigned::new(dir.path());
    let cert_only = format!("  tls_cert_file: {:?}\n", tls.cert.display().to_string());
    let (code, err) = check(dir.path(), &cert_only);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("http.tls_key_file"), "{err}");
    let (code, err) = check(dir.path(), &tls.http_lines());
    assert_eq!(code, Some(0), "{err}");
    // The certificate given as its own key: no key in the file.
    let swapped = format!(
        "  tls_cert_file: {cert:?}\n  tls_key_file: {cert:?}\n",
        cert = tls.cert.display().to_string()
    );
    let (code, err) = check(dir.path(), &swapped);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("http.tls_key_file"), "{err}");
}

#[test]
fn without_a_token_the_api_stays_open_and_only_a_non_loopback_listen_warns() {
    const WARNING: &str = "is not a loopback address and has no token";
    let local = Gateway::start_with_http_config(GatewayOptions::default(), "127.0.0.1:0", "", &[]);
    assert_eq!(get(&local, "/api/devices", None).status, 200);
    assert_eq!(get(&local, "/metrics", None).status, 200);
    assert!(!local.log_text().contains(WARNING), "{}", local.log_text());

    // Bound on every interface, but only ever reached over loopback.
    let exposed = Gateway::start_with_http_config(GatewayOptions::default(), "0.0.0.0:0", "", &[]);
    assert!(
        exposed.wait_for_log(WARNING, Duration::from_secs(10)),
        "{}",
        exposed.log_text()
    );
    assert_eq!(
        exposed
            .log_text()
            .lines()
            .filter(|l| l.contains(WARNING))
            .count(),
        1
    );
}

#[test]
fn rd_dump_sends_the_token_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with_token(dir.path());
    let _peer = register(&gw, "dumped-node");
    let url = gw.http_url();
    let token_file = file_with(dir.path(), "rd-dump-token", &format!("\n{TOKEN}  \n"));
    let wrong_file = file_with(dir.path(), "wrong-token", "not-the-token\n");
    let token_path = token_file.to_str().unwrap();

    let none = rd_dump(&["--url", &url], None);
    assert_eq!(none.status, Some(1), "{none:?}");
    assert!(
        none.stderr.contains("401") && none.stderr.contains("--token-file"),
        "{}",
        none.stderr
    );

    let wrong = rd_dump(
        &["--url", &url, "--token-file", wrong_file.to_str().unwrap()],
        None,
    );
    assert_eq!(wrong.status, Some(1), "{wrong:?}");
    assert!(wrong.stderr.contains("refused"), "{}", wrong.stderr);
    assert!(!wrong.stderr.contains("not-the-token"), "{}", wrong.stderr);

    let by_file = rd_dump(&["--url", &url, "--token-file", token_path], None);
    assert_eq!(by_file.status, Some(0), "{by_file:?}");
    assert!(by_file.stdout.contains("dumped-node"), "{}", by_file.stdout);
    assert!(
        by_file.stdout.ends_with("1 registrations\n"),
        "{}",
        by_file.stdout
    );

    let by_env = rd_dump(&["--url", &url, "--json"], Some(TOKEN));
    assert_eq!(by_env.status, Some(0), "{by_env:?}");
    assert!(
        by_env.stdout.contains(r#""ep":"dumped-node""#),
        "{}",
        by_env.stdout
    );

    // The option wins over the environment.
    let both = rd_dump(&["--url", &url, "--token-file", token_path], Some("wrong"));
    assert_eq!(both.status, Some(0), "{both:?}");

    let missing = rd_dump(&["--url", &url, "--token-file", "/nonexistent/token"], None);
    assert_eq!(missing.status, Some(2), "{missing:?}");
    assert!(
        missing.stderr.contains("--token-file"),
        "{}",
        missing.stderr
    );

    for ran in [&none, &wrong, &by_file, &by_env, &both] {
        assert_token_absent("rd-dump's output", &format!("{}{}", ran.stdout, ran.stderr));
    }
    assert_token_absent("the gateway's log", &gw.log_text());
}

/// A self-signed certificate for 127.0.0.1, written as PEM files.
struct SelfSigned {
    cert: PathBuf,
    key: PathBuf,
}

impl SelfSigned {
    fn new(dir: &Path) -> SelfSigned {
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("rcgen");
        SelfSigned {
            cert: file_with(dir, "cert.pem", &certified.cert.pem()),
            key: file_with(dir, "key.pem", &certified.signing_key.serialize_pem()),
        }
    }

    fn http_lines(&self) -> String {
        format!(
            "  tls_cert_file: {:?}\n  tls_key_file: {:?}\n",
            self.cert.display().to_string(),
            self.key.display().to_string()
        )
    }
}

#[test]
fn https_serves_the_api_to_a_client_that_trusts_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = SelfSigned::new(dir.path());
    let token_file = file_with(dir.path(), "token", TOKEN);
    let gw = Gateway::start_with_http_config(
        GatewayOptions::default(),
        "127.0.0.1:0",
        &format!("{}{}", tls.http_lines(), token_line(&token_file)),
        &[("RUST_LOG", "debug")],
    );
    let url = gw.http_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let _peer = register(&gw, "tls-node");
    let (cert, token) = (tls.cert.to_str().unwrap(), token_file.to_str().unwrap());

    let ok = rd_dump(
        &[
            "--url",
            &url,
            "--ca-file",
            cert,
            "--token-file",
            token,
            "--json",
        ],
        None,
    );
    assert_eq!(ok.status, Some(0), "{ok:?}");
    assert!(ok.stdout.contains(r#""ep":"tls-node""#), "{}", ok.stdout);

    // The certificate is verified: without --ca-file it is not trusted.
    let untrusted = rd_dump(&["--url", &url, "--token-file", token], None);
    assert_eq!(untrusted.status, Some(1), "{untrusted:?}");
    assert!(!untrusted.stdout.contains("tls-node"));
    // Over TLS the token is still required.
    let no_token = rd_dump(&["--url", &url, "--ca-file", cert], None);
    assert_eq!(no_token.status, Some(1), "{no_token:?}");
    assert!(no_token.stderr.contains("401"), "{}", no_token.stderr);
    // Plain HTTP to the HTTPS port gets no API answer.
    let plain = rd_dump(
        &[
            "--url",
            &format!("http://{}", gw.http_addr()),
            "--token-file",
            token,
        ],
        None,
    );
    assert_eq!(plain.status, Some(1), "{plain:?}");
    assert_token_absent("the gateway's log", &gw.log_text());
}

const CHROMIUM: &str = "chromium";
/// For each step of the page in Chromium: generous, the box is shared.
const PAGE_BUDGET: Duration = Duration::from_secs(30);
const DEVICES: usize = 3;

/// The status page with a token, used as a person would: Chromium loads `/`, the page's
/// script meets a 401 and shows its token form; the test types a wrong token and presses
/// Enter (the page says it was refused and asks again), then the right one; the page draws
/// every device, keeps polling, and holds the token in this tab's sessionStorage, never in
/// the URL. A reload does not ask again. Driven over the DevTools protocol (`common::cdp`):
/// the token reaches the page only through the form, exactly as a person would enter it.
#[test]
fn the_status_page_asks_for_the_token_once_and_then_shows_every_device() {
    if !require_tool(CHROMIUM) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with_token(dir.path());
    let _peers: Vec<Peer> = (0..DEVICES)
        .map(|i| register(&gw, &format!("page-{i}")))
        .collect();
    let url = format!("{}/", gw.http_url());

    let mut browser = Browser::launch(CHROMIUM);
    browser.navigate(&url);
    let form_shown = "(() => { const f = document.getElementById('token-form'); \
                      return f !== null && !f.hidden; })()";
    assert!(
        browser.wait_for(form_shown, PAGE_BUDGET),
        "the page never asked for the token:\n{}",
        browser.dom()
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('tr.device').length"),
        0,
        "no device data before the token"
    );
    assert_eq!(
        browser.eval("document.activeElement.id"),
        "token-input",
        "the form takes the focus"
    );

    browser.type_text("not-the-token");
    browser.press_enter();
    assert!(
        browser.wait_for(
            &format!(
                "{form_shown} && document.getElementById('token-message').textContent \
                 .includes('refused')"
            ),
            PAGE_BUDGET
        ),
        "a wrong token is refused and asked for again:\n{}",
        browser.dom()
    );

    browser.eval("document.getElementById('token-input').focus()");
    browser.type_text(TOKEN);
    browser.press_enter();
    let all_rows = format!(
        "document.querySelectorAll('tr.device').length === {DEVICES} && \
         Number(document.body.dataset.polls || 0) >= 2"
    );
    assert!(
        browser.wait_for(&all_rows, PAGE_BUDGET),
        "the page did not draw every device and poll again with the token:\n{}",
        browser.dom()
    );
    let dom = browser.dom();
    for i in 0..DEVICES {
        assert!(dom.contains(&format!(r#"data-ep="page-{i}""#)), "{dom}");
    }
    assert_eq!(browser.eval(form_shown), false, "the form is gone");
    assert_eq!(
        browser.eval("sessionStorage.getItem('coap-gateway-admin-token')"),
        TOKEN
    );
    assert_eq!(browser.eval("localStorage.length"), 0);
    let href = browser.eval("location.href");
    assert_eq!(href, url.as_str(), "nothing added to the URL");

    // A reload in the same tab: the token is kept, the form stays hidden (only a submit
    // hides it, so had the page asked, it would still show), and the devices are drawn.
    browser.call("Page.reload", serde_json::json!({}));
    let reloaded =
        format!("performance.getEntriesByType('navigation')[0].type === 'reload' && {all_rows}");
    assert!(
        browser.wait_for(&reloaded, PAGE_BUDGET),
        "after a reload:\n{}",
        browser.dom()
    );
    assert_eq!(browser.eval(form_shown), false, "asked only once per tab");
    drop(browser);
    assert_token_absent("the gateway's log", &gw.log_text());
}
