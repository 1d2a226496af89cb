//! `dtls.*`: CoAP over DTLS (coaps) for the RD: where it listens, the device identities file,
//! the RD's own certificate and the CA its clients' certificates are checked against, and the
//! bounds on sessions and handshakes. The identities file is read here, at validation, so that
//! a bad one stops `--check` and the start, and the set read travels in [`super::Parsed`] as
//! part of [`DtlsSettings`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{in_range, invalid, Config, ConfigError, PlainCoap};
use coap_endpoint::{CertificateFiles, DtlsServerConfig, PskStore};

use crate::security::{Identities, IdentityStore};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DtlsConfig {
    /// UDP addresses of the coaps listener; empty: DTLS off.
    pub listen: Vec<String>,
    /// The device identities (YAML, see `crate::security`); relative to the working directory.
    pub identities_file: Option<PathBuf>,
    /// The RD's certificate chain (PEM), for certificate mode; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; needs `cert_file`.
    pub ca_file: Option<PathBuf>,
    /// Sessions held at once (established or in handshake).
    pub max_sessions: usize,
    /// A session from which nothing was received for this long is closed.
    pub idle_timeout_s: u64,
    /// A handshake not finished in this long is dropped.
    pub handshake_timeout_s: u64,
    /// New handshakes per second per source address (token bucket); 0 turns it off.
    pub handshake_rate_per_s: f64,
    /// Handshakes a source may start at once before the rate applies.
    pub handshake_burst: u32,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        DtlsConfig {
            listen: Vec::new(),
            identities_file: None,
            cert_file: None,
            key_file: None,
            ca_file: None,
            max_sessions: 25_000,
            idle_timeout_s: 3_600,
            handshake_timeout_s: 10,
            handshake_rate_per_s: 20.0,
            handshake_burst: 40,
        }
    }
}

/// What the DTLS transport needs, resolved: addresses parsed, identities read, durations typed.
/// Nothing of the transport's own types: the gateway maps these onto them.
#[derive(Debug, Clone)]
pub(crate) struct DtlsSettings {
    /// Where coaps listens; empty: DTLS off.
    pub listen: Vec<SocketAddr>,
    /// `dtls.identities_file`, which a reload (SIGHUP) reads again.
    pub identities_file: Option<PathBuf>,
    /// Its identities as read at validation; empty without a file.
    pub identities: Arc<Identities>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub max_sessions: usize,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Per source address; 0: no limit.
    pub handshake_rate_per_s: f64,
    pub handshake_burst: u32,
}

impl DtlsSettings {
    /// Whether a coaps listener is configured.
    pub(crate) fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }

    /// The store the transport and the RD share, on the identities read at validation (not
    /// read again); `None` without an identities file.
    pub(crate) fn identity_store(&self) -> Option<IdentityStore> {
        self.identities_file
            .as_deref()
            .map(|path| IdentityStore::from_loaded(path, Arc::clone(&self.identities)))
    }
}

impl Config {
    /// `dtls.*` resolved: the coaps listener's addresses, identities (as read at validation),
    /// credential files and bounds.
    pub(crate) fn dtls(&self) -> Result<DtlsSettings, ConfigError> {
        self.parsed().map(|parsed| parsed.dtls.clone())
    }
}

impl DtlsConfig {
    /// Check `dtls.*` and read the identities file; returns the resolved settings.
    pub(super) fn validate(&self) -> Result<DtlsSettings, ConfigError> {
        let listen = self.listen_addrs()?;
        in_range("dtls.max_sessions", self.max_sessions as u64, 1, 10_000_000)?;
        in_range("dtls.idle_timeout_s", self.idle_timeout_s, 1, 604_800)?;
        in_range("dtls.handshake_timeout_s", self.handshake_timeout_s, 1, 300)?;
        if self.handshake_timeout_s > self.idle_timeout_s {
            return Err(invalid(
                "dtls.handshake_timeout_s",
                format!(
                    "{} is longer than dtls.idle_timeout_s ({})",
                    self.handshake_timeout_s, self.idle_timeout_s
                ),
            ));
        }
        if !(0.0..=1_000_000.0).contains(&self.handshake_rate_per_s) {
            return Err(invalid(
                "dtls.handshake_rate_per_s",
                format!("{} is outside 0..=1000000", self.handshake_rate_per_s),
            ));
        }
        in_range(
            "dtls.handshake_burst",
            self.handshake_burst.into(),
            1,
            1_000_000,
        )?;
        self.validate_credentials(!listen.is_empty())?;
        let identities = match &self.identities_file {
            Some(path) => Identities::load(path)
                .map_err(|e| invalid("dtls.identities_file", e.to_string()))?,
            None => Identities::default(),
        };
        if !listen.is_empty() && self.ca_file.is_none() {
            let certificate_only = identities
                .identities()
                .find(|identity| identities.psk(identity.as_bytes()).is_none());
            if let Some(identity) = certificate_only {
                return Err(invalid(
                    "dtls.identities_file",
                    format!(
                        "identity {identity:?} has no key (certificate only), but no \
                         dtls.ca_file is set to check client certificates against"
                    ),
                ));
            }
        }
        Ok(DtlsSettings {
            listen,
            identities_file: self.identities_file.clone(),
            identities: Arc::new(identities),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            ca_file: self.ca_file.clone(),
            max_sessions: self.max_sessions,
            idle_timeout: Duration::from_secs(self.idle_timeout_s),
            handshake_timeout: Duration::from_secs(self.handshake_timeout_s),
            handshake_rate_per_s: self.handshake_rate_per_s,
            handshake_burst: self.handshake_burst,
        })
    }

    /// `dtls.listen` as socket addresses, each once.
    fn listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        let mut addrs: Vec<SocketAddr> = Vec::with_capacity(self.listen.len());
        for text in &self.listen {
            let addr: SocketAddr = text.parse().map_err(|_| {
                invalid(
                    "dtls.listen",
                    format!("{text:?} is not an address like 0.0.0.0:5684 or [::]:5684"),
                )
            })?;
            if addrs.contains(&addr) && addr.port() != 0 {
                return Err(invalid("dtls.listen", format!("{addr} is listed twice")));
            }
            addrs.push(addr);
        }
        Ok(addrs)
    }

    /// Which files go together, and that each named one can be opened (a certificate or key
    /// that cannot be read should stop `--check`, not the first handshake). Their content is
    /// the transport's to parse.
    fn validate_credentials(&self, listening: bool) -> Result<(), ConfigError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "dtls.cert_file",
                    "needs dtls.key_file, its private key",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "dtls.key_file",
                    "needs dtls.cert_file, the certificate it is the key of",
                ))
            }
            _ => {}
        }
        if listening && self.identities_file.is_none() && self.cert_file.is_none() {
            return Err(invalid(
                "dtls.listen",
                "DTLS needs credentials: set dtls.identities_file (pre-shared keys, \
                 certificate identities) or dtls.cert_file (the RD's certificate), or both",
            ));
        }
        if self.ca_file.is_some() && self.cert_file.is_none() {
            return Err(invalid(
                "dtls.ca_file",
                "needs dtls.cert_file: a client certificate is only asked for in a \
                 certificate handshake, which needs the RD's own certificate",
            ));
        }
        for (key, path) in [
            ("dtls.cert_file", &self.cert_file),
            ("dtls.key_file", &self.key_file),
            ("dtls.ca_file", &self.ca_file),
        ] {
            if let Some(path) = path {
                readable(path).map_err(|message| invalid(key, message))?;
            }
        }
        Ok(())
    }
}

/// Whether `path` opens for reading (as the gateway's user): nothing is read.
fn readable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(format!("{} is a directory", path.display())),
        _ => std::fs::File::open(path)
            .map(drop)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
    }
}

/// `dtls.listen` addresses that `rd.listen` also has (a port 0 never clashes): the plain and
/// the coaps socket cannot both bind them.
pub(super) fn check_disjoint_from_rd(
    dtls: &[SocketAddr],
    rd: &[SocketAddr],
    plain: PlainCoap,
) -> Result<(), ConfigError> {
    if plain == PlainCoap::Off {
        return Ok(());
    }
    match dtls
        .iter()
        .find(|addr| addr.port() != 0 && rd.contains(addr))
    {
        Some(addr) => Err(invalid(
            "dtls.listen",
            format!("{addr} is also in rd.listen: plain CoAP and coaps need their own ports"),
        )),
        None => Ok(()),
    }
}

impl DtlsSettings {
    /// The DTLS server's configuration from `dtls.*`; keys come from `store` at each handshake,
    /// so a reload takes effect for the next one.
    pub(crate) fn server_config(
        &self,
        store: Option<&IdentityStore>,
        exempt_loopback: bool,
    ) -> DtlsServerConfig {
        let certificates = match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => Some(CertificateFiles {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                ca_file: self.ca_file.clone(),
            }),
            _ => None,
        };
        DtlsServerConfig {
            psk: store.map(|s| std::sync::Arc::new(s.clone()) as std::sync::Arc<dyn PskStore>),
            certificates,
            max_sessions: self.max_sessions,
            idle_timeout: self.idle_timeout,
            handshake_timeout: self.handshake_timeout,
            handshake_rate_per_s: self.handshake_rate_per_s,
            handshake_burst: f64::from(self.handshake_burst),
            exempt_loopback,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, PlainCoap};

    /// A config with `dtls:` lines `body` (indented two spaces each).
    fn config(body: &str) -> Result<Config, String> {
        let yaml = format!("dtls:\n{body}");
        Config::from_yaml(&yaml).map_err(|e| e.to_string())
    }

    fn quoted(path: &Path) -> String {
        format!("{:?}", path.display().to_string())
    }

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            let dir = tempfile::tempdir().unwrap();
            for name in ["cert.pem", "key.pem", "ca.pem"] {
                std::fs::write(dir.path().join(name), "PEM").unwrap();
            }
            std::fs::write(
                dir.path().join("ids.yaml"),
                "identities:\n  - {identity: node1, psk_hex: \"7365637265742d6e6f646531\"}\n",
            )
            .unwrap();
            Files { dir }
        }
        fn path(&self, name: &str) -> String {
            quoted(&self.dir.path().join(name))
        }
    }

    #[test]
    fn absent_section_is_dtls_off_with_the_documented_defaults() {
        let c = Config::from_yaml("").unwrap();
        let dtls = c.dtls().unwrap();
        assert!(!dtls.enabled());
        assert!(dtls.identities.is_empty() && dtls.identity_store().is_none());
        assert_eq!(dtls.max_sessions, 25_000);
        assert_eq!(dtls.idle_timeout.as_secs(), 3_600);
        assert_eq!(dtls.handshake_timeout.as_secs(), 10);
        assert_eq!(dtls.handshake_rate_per_s, 20.0);
        assert_eq!(dtls.handshake_burst, 40);
        assert_eq!(c.plain_coap().unwrap(), PlainCoap::Open);
    }

    #[test]
    fn a_psk_listener_resolves_addresses_and_identities() {
        let f = Files::new();
        let c = config(&format!(
            "  listen: [\"127.0.0.1:5684\", \"[::1]:0\"]\n  identities_file: {}\n  idle_timeout_s: 60\n",
            f.path("ids.yaml")
        ))
        .unwrap();
        let dtls = c.dtls().unwrap();
        assert!(dtls.enabled());
        assert_eq!(
            dtls.listen,
            [
                "127.0.0.1:5684".parse().unwrap(),
                "[::1]:0".parse().unwrap()
            ]
        );
        assert_eq!(dtls.identities.psk(b"node1"), Some(&b"secret-node1"[..]));
        assert_eq!(dtls.idle_timeout.as_secs(), 60);
        let store = dtls.identity_store().unwrap();
        assert_eq!(store.path(), f.dir.path().join("ids.yaml"));
        assert!(store.current().contains("node1"));
        // Kept from validation, not read again: a later change of the file shows only on reload.
        std::fs::write(f.dir.path().join("ids.yaml"), "identities: []\n").unwrap();
        assert!(c.dtls().unwrap().identities.contains("node1"));
        assert_eq!(store.reload().unwrap().removed, ["node1"]);
        // Identities and settings never print a key.
        assert!(!format!("{c:?}").contains("secret"), "{c:?}");
        assert!(!format!("{:?}", c.dtls().unwrap()).contains("7365637265"));
    }

    #[test]
    fn a_certificate_listener_needs_its_key_and_a_ca_needs_a_certificate() {
        let f = Files::new();
        let (cert, key, ca) = (f.path("cert.pem"), f.path("key.pem"), f.path("ca.pem"));
        let listen = "  listen: [\"127.0.0.1:5684\"]\n";
        let c = config(&format!(
            "{listen}  cert_file: {cert}\n  key_file: {key}\n  ca_file: {ca}\n"
        ))
        .unwrap();
        let dtls = c.dtls().unwrap();
        assert!(dtls.cert_file.is_some() && dtls.key_file.is_some() && dtls.ca_file.is_some());
        for (body, refused) in [
            (format!("{listen}  cert_file: {cert}\n"), "dtls.cert_file"),
            (format!("{listen}  key_file: {key}\n"), "dtls.key_file"),
            (
                format!(
                    "  identities_file: {}\n  ca_file: {ca}\n",
                    f.path("ids.yaml")
                ),
                "dtls.ca_file",
            ),
            (listen.to_string(), "dtls.listen"),
            (
                format!(
                    "{listen}  cert_file: {}\n  key_file: {key}\n",
                    f.path("none.pem")
                ),
                "dtls.cert_file",
            ),
            (
                format!(
                    "{listen}  cert_file: {cert}\n  key_file: {}\n",
                    quoted(f.dir.path())
                ),
                "dtls.key_file",
            ),
        ] {
            let e = config(&body).unwrap_err();
            assert!(e.contains(refused), "{body}: {e}");
        }
        let e = config(&format!(
            "{listen}  cert_file: {}\n  key_file: {key}\n",
            f.path("none.pem")
        ))
        .unwrap_err();
        assert!(e.contains("none.pem"), "{e}");
    }

    #[test]
    fn certificate_only_identities_need_a_ca_when_listening() {
        let f = Files::new();
        std::fs::write(
            f.dir.path().join("ids.yaml"),
            "identities:\n  - {identity: sensor.example}\n",
        )
        .unwrap();
        let ids = f.path("ids.yaml");
        let (cert, key, ca) = (f.path("cert.pem"), f.path("key.pem"), f.path("ca.pem"));
        let listen = "  listen: [\"127.0.0.1:5684\"]\n";
        let e = config(&format!(
            "{listen}  identities_file: {ids}\n  cert_file: {cert}\n  key_file: {key}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("dtls.identities_file") && e.contains("\"sensor.example\""),
            "{e}"
        );
        config(&format!(
            "{listen}  identities_file: {ids}\n  cert_file: {cert}\n  key_file: {key}\n  ca_file: {ca}\n"
        ))
        .unwrap();
        // Not listening: nothing to check the certificates of yet.
        config(&format!("  identities_file: {ids}\n")).unwrap();
    }

    #[test]
    fn a_bad_identities_file_stops_the_config_at_its_line() {
        let f = Files::new();
        std::fs::write(
            f.dir.path().join("ids.yaml"),
            "identities:\n  - {identity: node1, psk_hex: \"73656372zz\"}\n",
        )
        .unwrap();
        let e = config(&format!(
            "  listen: [\"127.0.0.1:5684\"]\n  identities_file: {}\n",
            f.path("ids.yaml")
        ))
        .unwrap_err();
        assert!(
            e.contains("`dtls.identities_file` at line 3")
                && e.contains("ids.yaml: identities entry 1 (identity \"node1\"): `psk_hex`"),
            "{e}"
        );
        assert!(!e.contains("73656372"), "{e}");
        let e = config(&format!("  identities_file: {}\n", f.path("missing.yaml"))).unwrap_err();
        assert!(
            e.contains("cannot read identities file") && e.contains("missing.yaml"),
            "{e}"
        );
    }

    #[test]
    fn addresses_and_numbers_are_checked() {
        let f = Files::new();
        let ids = format!("  identities_file: {}\n", f.path("ids.yaml"));
        for (body, key) in [
            (
                "  listen: [\"localhost:5684\"]\n".to_string(),
                "dtls.listen",
            ),
            (
                format!("  listen: [\"127.0.0.1:5684\", \"127.0.0.1:5684\"]\n{ids}"),
                "dtls.listen",
            ),
            ("  max_sessions: 0\n".into(), "dtls.max_sessions"),
            ("  idle_timeout_s: 0\n".into(), "dtls.idle_timeout_s"),
            (
                "  handshake_timeout_s: 301\n".into(),
                "dtls.handshake_timeout_s",
            ),
            (
                "  idle_timeout_s: 5\n  handshake_timeout_s: 10\n".into(),
                "dtls.handshake_timeout_s",
            ),
            (
                "  handshake_rate_per_s: -1\n".into(),
                "dtls.handshake_rate_per_s",
            ),
            ("  handshake_burst: 0\n".into(), "dtls.handshake_burst"),
            ("  lissten: []\n".into(), "lissten"),
        ] {
            let e = config(&body).unwrap_err();
            assert!(e.contains(key), "{body}: {e}");
        }
        let c = config("  handshake_rate_per_s: 0\n").unwrap();
        assert_eq!(c.dtls().unwrap().handshake_rate_per_s, 0.0);
    }

    #[test]
    fn coaps_and_plain_coap_may_not_share_an_address() {
        let f = Files::new();
        let yaml = |plain: &str| {
            format!(
                "rd:\n  listen: [\"127.0.0.1:5683\"]\ndtls:\n  listen: [\"127.0.0.1:5683\"]\n  \
                 identities_file: {}\nsecurity:\n  plain_coap: {plain}\n",
                f.path("ids.yaml")
            )
        };
        let e = Config::from_yaml(&yaml("lookup_only"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dtls.listen") && e.contains("also in rd.listen"),
            "{e}"
        );
        // With plain CoAP off, rd.listen is not bound.
        Config::from_yaml(&yaml("off")).unwrap();
    }
}
