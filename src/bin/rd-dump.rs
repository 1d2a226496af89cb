//! `rd-dump`: print every registration of a gateway, as an aligned table or as JSON lines.
//!
//! Three sources:
//! - `--data-dir DIR` (offline): opens the sled database through `registry::store` (never
//!   creating one), so it cannot run while the gateway holds the lock.
//! - `--etcd http://10.0.0.21:2379,...` (`registry.backend: etcd`): reads every registration
//!   under `--etcd-prefix` at one revision, read-only, while the replicas run. With
//!   authentication, `--etcd-user` and the password in `COAP_GATEWAY_ETCD_PASSWORD`; with
//!   `https://` URLs, `--etcd-ca` (and `--etcd-cert`, `--etcd-key` for a client certificate).
//! - `--url http://127.0.0.1:8080` (online): pages through the running gateway's
//!   `GET /api/devices` (admin HTTP API). When the gateway has an admin token, `--token-file`
//!   (or the environment variable `COAP_GATEWAY_HTTP_TOKEN`; the option wins) supplies it as
//!   `Authorization: Bearer`. An `https://` URL is verified against the public web roots plus
//!   the PEM certificates of `--ca-file` (e.g. the gateway's self-signed certificate).
//!
//! Either way a JSON line is the one device object (`coap_gateway::device_object`, documented
//! in docs/platform-protocol.md), the same the admin API and the platform frames carry: from a
//! data directory it is rendered by that serializer, from `--url` the API's object is printed
//! as served. The table is built from that object too, so both sources print the same table.
//!   The HTTP client is awc, already a dependency for the platform link: it handles chunked
//!   bodies, keep-alive and body limits correctly, at the cost of a one-thread actix runtime
//!   for the duration of the dump.
//!
//! Exit codes: 0 printed, 1 the database or the gateway could not be read (locked, corrupt,
//! newer format; connection refused, HTTP error, 401), 2 no database at the given path, or an
//! unusable `--token-file` / `--ca-file`.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use coap_gateway::config::Secret;
use coap_gateway::device_object::{DeviceObject, DeviceRecord};
use coap_gateway::registry::etcd::record::State;
use coap_gateway::registry::etcd::settings::EtcdTls;
use coap_gateway::registry::etcd::{EtcdSettings, EtcdStore};
use coap_gateway::registry::{Registration, Store, StoreError};
use coap_gateway::time::now_ms;
use link_format::Link;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::value::RawValue;

/// A small cache is enough to read every record once.
const CACHE_MB: u64 = 16;
/// The largest page the admin API serves.
const MAX_PAGE: u64 = 1000;
/// One page of 1,000 devices with many links stays far below this.
const BODY_LIMIT: usize = 64 * 1024 * 1024;
/// Per HTTP request.
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Print every registration stored in a coap-gateway data directory.
#[derive(Debug, Parser)]
#[command(name = "rd-dump", version)]
struct Args {
    /// The gateway's sled directory (`gateway.data_dir` in config.yaml).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Read a running gateway's admin HTTP API instead (`http.listen`), e.g.
    /// http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "data_dir")]
    url: Option<String>,
    /// With --url: a file holding the gateway's admin token (surrounding whitespace trimmed).
    /// Without it, the environment variable COAP_GATEWAY_HTTP_TOKEN is used when set.
    #[arg(long, requires = "url")]
    token_file: Option<PathBuf>,
    /// With an https:// --url: PEM certificates to trust besides the public web roots (the
    /// gateway's own certificate when it is self-signed).
    #[arg(long, requires = "url")]
    ca_file: Option<PathBuf>,
    /// Read an etcd-backed registry instead (`registry.backend: etcd`): the etcd client URLs,
    /// comma-separated.
    #[arg(long, conflicts_with_all = ["data_dir", "url"])]
    etcd: Option<String>,
    /// With --etcd: the cluster's key prefix (`registry.etcd.prefix`).
    #[arg(long, requires = "etcd", default_value = "/coap-gateway/coap-gateway")]
    etcd_prefix: String,
    /// With --etcd: the etcd user; its password is read from COAP_GATEWAY_ETCD_PASSWORD.
    #[arg(long, requires = "etcd")]
    etcd_user: Option<String>,
    /// With https:// --etcd URLs: the PEM file of the CA that signed etcd's certificates.
    #[arg(long, requires = "etcd")]
    etcd_ca: Option<std::path::PathBuf>,
    /// With --etcd-ca: a PEM client certificate (etcd's --client-cert-auth), with --etcd-key.
    #[arg(long, requires_all = ["etcd_ca", "etcd_key"])]
    etcd_cert: Option<std::path::PathBuf>,
    /// The private key of --etcd-cert (PEM).
    #[arg(long, requires = "etcd_cert")]
    etcd_key: Option<std::path::PathBuf>,
    /// Devices per HTTP request with --url (1..=1000).
    #[arg(long, default_value_t = MAX_PAGE, value_parser = clap::value_parser!(u64).range(1..=1000))]
    page_size: u64,
    /// One device object per line (docs/platform-protocol.md, "A device object") instead of a
    /// table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(url) = &args.url {
        let access = match Access::from_args(&args) {
            Ok(access) => access,
            Err(e) => {
                eprintln!("rd-dump: {e}");
                return ExitCode::from(2);
            }
        };
        return dump_url(url, &access, args.page_size, args.json);
    }
    if let Some(endpoints) = &args.etcd {
        return dump_etcd(endpoints, &args);
    }
    let store = match Store::open_existing(&args.data_dir, CACHE_MB) {
        Ok(store) => store,
        Err(StoreError::Locked { path }) => {
            eprintln!(
                "rd-dump: the registry database at {} is locked: a running gateway holds the lock (stop it, or use its admin HTTP API)",
                path.display()
            );
            return ExitCode::from(1);
        }
        Err(e @ StoreError::NotFound { .. }) => {
            eprintln!("rd-dump: {e} (check --data-dir)");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("rd-dump: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(lost) = store.shortfall() {
        eprintln!("rd-dump: WARNING: {lost}");
    }
    let loaded = match store.load_all() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("rd-dump: {}: {e}", args.data_dir.display());
            return ExitCode::from(1);
        }
    };
    if loaded.skipped > 0 {
        eprintln!(
            "rd-dump: {} undecodable records skipped (left untouched on disk)",
            loaded.skipped
        );
    }
    let now = now_ms();
    let stored: Vec<(&Registration, bool)> = loaded
        .registrations
        .iter()
        .map(|r| (r, r.is_expired_at(now)))
        .collect();
    print_stored(&stored, args.json)
}

/// Print stored registrations, each with whether it is expired (in its grace period: the API
/// serves live ones only).
fn print_stored(stored: &[(&Registration, bool)], json: bool) -> ExitCode {
    let mut out = BufWriter::new(io::stdout().lock());
    let written = if json {
        write_json(&mut out, stored.iter().map(|(r, _)| DeviceObject(r)))
    } else {
        let rows: Result<Vec<Row>, serde_json::Error> = stored
            .iter()
            .map(|(r, expired)| {
                let record = serde_json::from_value(serde_json::to_value(DeviceObject(r))?)?;
                Ok(Row::new(&record, *expired))
            })
            .collect();
        rows.map_err(io::Error::other)
            .and_then(|rows| write_table(&mut out, &rows))
    };
    finish(written.and_then(|()| out.flush()))
}

/// Environment variable holding the etcd password (the gateway reads the same one).
const ETCD_PASSWORD_ENV: &str = "COAP_GATEWAY_ETCD_PASSWORD";

/// `--etcd`: every registration under the prefix, read at one revision without writing.
fn dump_etcd(endpoints: &str, args: &Args) -> ExitCode {
    let endpoints: Vec<String> = endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if endpoints.is_empty() {
        eprintln!("rd-dump: --etcd needs at least one client URL");
        return ExitCode::from(2);
    }
    let credentials = match &args.etcd_user {
        Some(user) => match std::env::var(ETCD_PASSWORD_ENV) {
            Ok(password) if !password.is_empty() => Some((user.clone(), Secret::new(password))),
            _ => {
                eprintln!("rd-dump: --etcd-user needs the password in {ETCD_PASSWORD_ENV}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let mut settings = EtcdSettings::new(endpoints, &args.etcd_prefix, "rd-dump");
    settings.credentials = credentials;
    if let Some(ca) = &args.etcd_ca {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let tls = (|| {
            let ca_pem = read(ca)?;
            let identity = match (&args.etcd_cert, &args.etcd_key) {
                (Some(cert), Some(key)) => {
                    let key = String::from_utf8(read(key)?)
                        .map_err(|_| format!("{} is not a PEM private key", key.display()))?;
                    Some((read(cert)?, Secret::new(key)))
                }
                _ => None,
            };
            Ok::<_, String>(EtcdTls { ca_pem, identity })
        })();
        match tls {
            Ok(tls) => settings.tls = Some(tls),
            Err(e) => {
                eprintln!("rd-dump: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let loaded = actix_rt::System::new().block_on(async {
        let store = EtcdStore::connect_read_only(&settings).await?;
        store.load().await
    });
    let snapshot = match loaded {
        Ok(snapshot) => snapshot,
        Err(e) => {
            eprintln!("rd-dump: {e}");
            return ExitCode::from(1);
        }
    };
    if snapshot.skipped > 0 {
        eprintln!(
            "rd-dump: {} undecodable records skipped (left untouched in etcd)",
            snapshot.skipped
        );
    }
    let now = now_ms();
    let stored: Vec<(&Registration, bool)> = snapshot
        .records
        .iter()
        .map(|s| {
            let expired = s.meta.state == State::Expired || s.reg.is_expired_at(now);
            (&s.reg, expired)
        })
        .collect();
    print_stored(&stored, args.json)
}

fn finish(written: io::Result<()>) -> ExitCode {
    match written {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`rd-dump | head`) is not worth a complaint.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rd-dump: cannot write output: {e}");
            ExitCode::from(1)
        }
    }
}

/// Environment variable holding the admin token (the gateway reads the same one).
const TOKEN_ENV: &str = "COAP_GATEWAY_HTTP_TOKEN";

/// How `--url` reaches the admin API: the token to send and the extra trusted certificates.
struct Access {
    /// Never printed.
    token: Option<String>,
    /// Where the token came from, for the 401 message.
    token_source: &'static str,
    extra_roots: Vec<CertificateDer<'static>>,
}

impl Access {
    /// `--token-file` (else [`TOKEN_ENV`]) and `--ca-file`. An unreadable or empty file is an
    /// error naming the option, never showing the token.
    fn from_args(args: &Args) -> Result<Access, String> {
        let (token, token_source) = match &args.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(format!(
                        "--token-file {}: the file is empty",
                        path.display()
                    ));
                }
                (Some(token.to_string()), "--token-file")
            }
            None => match std::env::var(TOKEN_ENV) {
                Ok(t) if !t.trim().is_empty() => (Some(t.trim().to_string()), TOKEN_ENV),
                _ => (None, ""),
            },
        };
        if token
            .as_deref()
            .is_some_and(|t| !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(format!(
                "the token from {token_source} must be printable ASCII without spaces"
            ));
        }
        let mut extra_roots = Vec::new();
        if let Some(path) = &args.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                extra_roots.push(cert.map_err(|e| format!("--ca-file {}: {e}", path.display()))?);
            }
            if extra_roots.is_empty() {
                return Err(format!(
                    "--ca-file {}: no PEM certificate in the file",
                    path.display()
                ));
            }
        }
        Ok(Access {
            token,
            token_source,
            extra_roots,
        })
    }

    /// An awc client for http:// and https:// (rustls on ring, `http/1.1` only).
    fn client(&self) -> Result<awc::Client, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = actix_tls::connect::rustls_0_23::webpki_roots_cert_store();
        for cert in &self.extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| format!("--ca-file: a certificate cannot be trusted: {e}"))?;
        }
        let mut tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = awc::Connector::new()
            .rustls_0_23(Arc::new(tls))
            .timeout(HTTP_TIMEOUT);
        Ok(awc::Client::builder()
            .connector(connector)
            .timeout(HTTP_TIMEOUT)
            .finish())
    }

    /// What to tell the user when the gateway answers 401.
    fn refused(&self) -> String {
        match &self.token {
            None => format!(
                "the gateway needs its admin token (HTTP 401): pass --token-file FILE or set {TOKEN_ENV}"
            ),
            Some(_) => format!(
                "the gateway refused the admin token from {} (HTTP 401)",
                self.token_source
            ),
        }
    }
}

/// `--url`: fetch every page, then print.
fn dump_url(url: &str, access: &Access, page_size: u64, json: bool) -> ExitCode {
    let devices = match actix_rt::System::new().block_on(fetch_all(url, access, page_size)) {
        Ok(devices) => devices,
        Err(e) => {
            eprintln!("rd-dump: {url}: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let written = if json {
        write_json(&mut out, devices.iter().map(|d| &d.raw))
    } else {
        let rows: Vec<Row> = devices.iter().map(|d| Row::new(&d.record, false)).collect();
        write_table(&mut out, &rows)
    };
    finish(written.and_then(|()| out.flush()))
}

/// One page of `GET /api/devices`, its devices kept as served.
#[derive(Deserialize)]
struct ServedPage {
    total: u64,
    devices: Vec<Box<RawValue>>,
}

/// A device as the API served it (printed verbatim by `--json`) and as read for the table.
struct Served {
    raw: Box<RawValue>,
    record: DeviceRecord,
}

/// Every device, page by page, until a page comes back short. Devices registered or removed
/// meanwhile may shift the pages; the dump is a best-effort view of a live registry.
async fn fetch_all(url: &str, access: &Access, page_size: u64) -> Result<Vec<Served>, String> {
    let client = access.client()?;
    let base = url.trim_end_matches('/');
    let mut devices = Vec::new();
    for page in 0u64.. {
        let uri = format!("{base}/api/devices?count={page_size}&page={page}");
        let mut request = client.get(&uri);
        if let Some(token) = &access.token {
            request = request.bearer_auth(token);
        }
        let mut resp = request
            .send()
            .await
            .map_err(|e| format!("GET {uri}: {e}"))?;
        let body = resp
            .body()
            .limit(BODY_LIMIT)
            .await
            .map_err(|e| format!("GET {uri}: {e}"))?;
        if resp.status() == awc::http::StatusCode::UNAUTHORIZED {
            return Err(access.refused());
        }
        if !resp.status().is_success() {
            return Err(format!(
                "GET {uri}: HTTP {}: {}",
                resp.status(),
                String::from_utf8_lossy(&body)
            ));
        }
        let page: ServedPage = serde_json::from_slice(&body)
            .map_err(|e| format!("GET {uri}: not a device page: {e}"))?;
        let short = (page.devices.len() as u64) < page_size;
        for raw in page.devices {
            let record = serde_json::from_str(raw.get())
                .map_err(|e| format!("GET {uri}: not a device object: {e}"))?;
            devices.push(Served { raw, record });
        }
        if short || devices.len() as u64 >= page.total {
            break;
        }
    }
    Ok(devices)
}

fn write_json<T: serde::Serialize>(
    out: &mut impl Write,
    items: impl IntoIterator<Item = T>,
) -> io::Result<()> {
    for item in items {
        serde_json::to_writer(&mut *out, &item)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

const HEADERS: [&str; 9] = [
    "LOCATION", "EP", "D", "BASE", "STATUS", "LT", "EXPIRES", "IDENTITY", "LINKS",
];

/// One table row, the cells in `HEADERS` order.
struct Row([String; 9]);

impl Row {
    /// A device object; `expired` marks a stored registration past its lifetime (kept for its
    /// grace period).
    fn new(dev: &DeviceRecord, expired: bool) -> Row {
        let links: Vec<Link> = dev.links.iter().map(|l| l.to_link()).collect();
        let expires = if expired {
            format!("{} (expired)", dev.expires_at)
        } else {
            dev.expires_at.clone()
        };
        Row([
            dev.location.clone(),
            dev.ep.clone(),
            dev.d.clone().unwrap_or_else(|| "-".to_string()),
            dev.base.clone(),
            dev.status.to_string(),
            dev.lt.to_string(),
            expires,
            dev.dtls_identity
                .as_deref()
                .map_or_else(|| "-".to_string(), identity_cell),
            link_format::serialize(&links),
        ])
    }
}

/// A DTLS identity as one table cell: a certificate's CN may hold spaces or control
/// characters, which would shift the columns or reach the terminal, so those are escaped.
fn identity_cell(identity: &str) -> String {
    let mut cell = String::with_capacity(identity.len());
    for c in identity.chars() {
        if c.is_whitespace() || c.is_control() {
            cell.extend(c.escape_unicode());
        } else {
            cell.push(c);
        }
    }
    cell
}

/// Columns padded to their widest cell; the last column (links) is left unpadded.
fn write_table(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    let rows: Vec<&[String; 9]> = rows.iter().map(|r| &r.0).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for cells in &rows {
        for (width, cell) in widths.iter_mut().zip(cells.iter()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let headers = HEADERS.map(str::to_string);
    for cells in std::iter::once(&headers).chain(rows.iter().copied()) {
        let last = cells.len() - 1;
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    writeln!(out, "{} registrations", rows.len())
}

#[cfg(test)]
mod tests {
    use super::identity_cell;

    #[test]
    fn an_identity_is_one_cell_that_cannot_reach_the_terminal() {
        assert_eq!(identity_cell("node1"), "node1");
        assert_eq!(identity_cell("Büro 3"), "Büro\\u{20}3");
        assert_eq!(identity_cell("a\x1b[2Jb"), "a\\u{1b}[2Jb");
    }
}
