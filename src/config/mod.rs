//! The gateway's configuration (`config.yaml`), typed and validated.
//!
//! Every section and key is optional in the file and falls back to the documented default, but an
//! unknown key or a value of the wrong type is an error that names the key and its line: a typo
//! in a production config must not be silently ignored. Semantic checks (ranges, parsable
//! addresses) run after parsing, in [`Config::validate`], which asks each section to check
//! itself; what it parses out of text (listen addresses, discovery targets, the observer
//! selection) it returns as [`Parsed`], which [`Config::from_yaml`] keeps for `gateway::start`,
//! so nothing is parsed twice.
//!
//! One file per section (`gateway`, `rd`, `coap`, `pinger`, `discovery`, `observer`,
//! `executer`, `platform`, `http`, `limits`, `dtls`, `security`, `registry`), each with its type,
//! defaults, checks and tests; `secret` holds the never-printing [`Secret`], `key_line` finds
//! where a key is written and `preflight` what `--check` verifies beyond the YAML.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::discovery::Targets;
use crate::observer::ObserverSettings;

mod coap;
mod discovery;
mod dtls;
mod executer;
mod gateway;
mod http;
mod key_line;
mod limits;
mod observer;
mod pinger;
mod platform;
mod preflight;
mod rd;
mod registry;
mod security;

pub use crate::secret::Secret;
pub(crate) use coap::CoapConfig;
pub(crate) use discovery::DiscoveryConfig;
pub(crate) use dtls::{DtlsConfig, DtlsSettings};
pub(crate) use executer::ExecuterConfig;
pub(crate) use gateway::GatewayConfig;
pub(crate) use http::HttpConfig;
pub(crate) use key_line::line_of_key;
pub(crate) use limits::LimitsConfig;
pub(crate) use observer::ObserverConfig;
pub(crate) use pinger::PingerConfig;
pub use platform::PlatformConfig;
pub(crate) use platform::TOKEN_ENV;
pub(crate) use rd::{EndpointProtection, RdConfig};
pub(crate) use registry::{RegistryBackendConfig, PASSWORD_ENV as ETCD_PASSWORD_ENV};
pub(crate) use security::{PlainCoap, SecurityConfig};

/// Why a config could not be used. The binary prints it and exits with code 2.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    /// An [`ConfigError::Invalid`] whose key was found in the file: the line is named, as
    /// serde-saphyr names it for syntax errors.
    #[error("invalid config value for `{key}` at line {line}: {message}")]
    InvalidAt {
        key: &'static str,
        line: usize,
        message: String,
    },
}

impl ConfigError {
    /// Name the line of the refused key in `yaml`, the text the config was parsed from (a key
    /// not written in the file, i.e. a refused default, stays without a line).
    pub(crate) fn located_in(self, yaml: &str) -> ConfigError {
        match self {
            ConfigError::Invalid { key, message } => match line_of_key(yaml, key) {
                Some(line) => ConfigError::InvalidAt { key, line, message },
                None => ConfigError::Invalid { key, message },
            },
            other => other,
        }
    }
}

/// [`ConfigError::Invalid`] for `key`.
fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// `key` must lie in `min..=max`.
fn in_range(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(key, format!("{value} is outside {min}..={max}")))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub(crate) gateway: GatewayConfig,
    pub(crate) rd: RdConfig,
    pub(crate) coap: CoapConfig,
    pub(crate) pinger: PingerConfig,
    pub(crate) discovery: DiscoveryConfig,
    pub(crate) observer: ObserverConfig,
    pub(crate) executer: ExecuterConfig,
    pub(crate) platform: PlatformConfig,
    pub(crate) http: HttpConfig,
    pub(crate) limits: LimitsConfig,
    pub(crate) dtls: DtlsConfig,
    pub(crate) security: SecurityConfig,
    pub(crate) registry: RegistryBackendConfig,
    /// What [`Config::validate`] parsed, kept by [`Config::from_yaml`]; `None` for a config
    /// built in code (see [`Config::parsed`]).
    #[serde(skip)]
    parsed: Option<Parsed>,
}

/// What validation parsed out of the config's text, typed, for the components that run on
/// it: each value is parsed once, by [`Config::validate`], and `gateway::start` hands it on.
/// A setting read from text goes here; one that is only copied stays in its section.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    /// `rd.listen`.
    pub rd_listen: Vec<SocketAddr>,
    /// `http.listen`; `None` when empty (admin HTTP disabled).
    pub http_listen: Option<SocketAddr>,
    /// `discovery.targets`: unicast addresses and multicast groups.
    pub discovery_targets: Targets,
    /// `observer.*`, with `observer.select` parsed.
    pub observer: ObserverSettings,
    /// `dtls.*`, with the identities file read.
    pub dtls: DtlsSettings,
    /// `security.plain_coap`, its default resolved from `dtls.listen`.
    pub plain_coap: PlainCoap,
}

impl Config {
    /// Whether the gateway runs an mDNS daemon at all: nothing is sent on port 5353 otherwise.
    pub(crate) fn needs_mdns(&self) -> bool {
        self.rd.dnssd || (self.discovery.enabled && self.discovery.mdns)
    }

    /// Read, parse and validate a config file, and read the files it names (token, CA).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_text(path).map(|(config, _)| config)
    }

    /// [`Config::load`], then what `--check` adds: the data directory exists or can be
    /// created, and is writable (a probe file; the database itself is not opened, since sled
    /// locks it and a gateway may be running on it).
    pub fn load_and_check(path: &Path) -> Result<Config, ConfigError> {
        let (config, text) = Config::load_with_text(path)?;
        preflight::check_data_dir(&config.gateway.data_dir)
            .map_err(|message| invalid("gateway.data_dir", message).located_in(&text))?;
        Ok(config)
    }

    fn load_with_text(path: &Path) -> Result<(Config, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        config
            .resolve_platform_token(std::env::var(TOKEN_ENV).ok())
            .map_err(|e| e.located_in(&text))?;
        config
            .resolve_platform_ca()
            .map_err(|e| e.located_in(&text))?;
        config
            .http
            .resolve(std::env::var(http::TOKEN_ENV).ok())
            .map_err(|e| e.located_in(&text))?;
        config
            .resolve_etcd_password(std::env::var(ETCD_PASSWORD_ENV).ok())
            .map_err(|e| e.located_in(&text))?;
        config
            .registry
            .resolve_tls()
            .map_err(|e| e.located_in(&text))?;
        Ok((config, text))
    }

    /// Read `platform.ca_file` into `platform.ca_certs` ([`PlatformConfig::resolve_ca`]).
    pub(crate) fn resolve_platform_ca(&mut self) -> Result<(), ConfigError> {
        self.platform.resolve_ca()
    }

    /// Settle the platform token: [`TOKEN_ENV`] (`from_env`), then `platform.token_file`, then
    /// `platform.token` ([`PlatformConfig::resolve_token`]).
    pub(crate) fn resolve_platform_token(
        &mut self,
        from_env: Option<String>,
    ) -> Result<(), ConfigError> {
        self.platform.resolve_token(from_env)
    }

    /// Settle the etcd password: [`ETCD_PASSWORD_ENV`] (`from_env`), then
    /// `registry.etcd.password_file`, then `registry.etcd.password`
    /// ([`RegistryBackendConfig::resolve_password`]).
    pub(crate) fn resolve_etcd_password(
        &mut self,
        from_env: Option<String>,
    ) -> Result<(), ConfigError> {
        self.registry.resolve_password(from_env)
    }

    /// The etcd backend's settings, `Some` exactly when `registry.backend` is etcd: the cluster
    /// id is `gateway.id`, the credentials are there when `registry.etcd.user` is set, with the
    /// password settled by [`Config::load`].
    pub(crate) fn etcd_settings(&self) -> Option<crate::registry::etcd::EtcdSettings> {
        self.registry.etcd_settings(&self.gateway.id)
    }

    /// Parse and validate YAML text (an empty document is the default config).
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: PathBuf::new(),
                message: e.to_string(),
            })?
        };
        let parsed = config.validate().map_err(|e| e.located_in(text))?;
        config.parsed = Some(parsed);
        Ok(config)
    }

    /// Range and syntax checks that the YAML types cannot express, section by section; returns
    /// what it parsed. The order of the checks is the order in which the first of several wrong
    /// keys is reported.
    pub(crate) fn validate(&self) -> Result<Parsed, ConfigError> {
        self.gateway.validate()?;
        let rd_listen = self.rd.validate_listen()?;
        self.coap.validate()?;
        self.pinger.validate()?;
        let discovery_targets = self.discovery.validate()?;
        self.rd.validate_dnssd()?;
        let observer = self.observer.settings()?;
        self.executer.validate()?;
        self.platform.validate()?;
        self.registry.validate(&self.gateway.id, &self.platform)?;
        self.rd.validate_capacity()?;
        self.rd.validate_multicast(&rd_listen)?;
        self.limits.validate(&self.coap)?;
        let http_listen = self.http.validate()?;
        let dtls = self.dtls.validate()?;
        let plain_coap = self.security.validate(&dtls.listen)?;
        dtls::check_disjoint_from_rd(&dtls.listen, &rd_listen, plain_coap)?;
        if let (Some((addr, _)), false) = (discovery_targets.secure.first(), dtls.enabled()) {
            return Err(invalid(
                "discovery.targets",
                format!("the coaps target {addr} needs dtls.listen: DTLS leaves from its socket"),
            ));
        }
        Ok(Parsed {
            rd_listen,
            http_listen,
            discovery_targets,
            observer,
            dtls,
            plain_coap,
        })
    }

    /// What validation parsed: kept from [`Config::from_yaml`] (and so from [`Config::load`]);
    /// a config built in code, which never went through it, is validated here instead. A
    /// config loaded from text and then edited in code must go through [`Config::from_yaml`]
    /// or [`Config::validate`] again: the kept values are those of the text.
    pub(crate) fn parsed(&self) -> Result<Cow<'_, Parsed>, ConfigError> {
        match &self.parsed {
            Some(parsed) => Ok(Cow::Borrowed(parsed)),
            None => self.validate().map(Cow::Owned),
        }
    }

    /// `rd.listen` as socket addresses.
    #[cfg(test)]
    pub(crate) fn rd_listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.rd.listen_addrs()
    }

    /// `http.listen` as a socket address; `None` when empty (admin HTTP disabled).
    #[cfg(test)]
    pub(crate) fn http_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.http.listen_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn empty_document_is_the_default() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.rd.default_lifetime_s, 90_000);
        assert_eq!(c.gateway.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn the_shipped_config_yaml_is_valid() {
        let text = include_str!("../../config.yaml");
        let c = Config::from_yaml(text).unwrap();
        assert!(
            c.platform.url.is_empty(),
            "default config runs without a platform"
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::from_yaml("gateway:\n  id: x\n  dta_dir: ./d\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("dta_dir"), "{msg}");
        assert!(msg.contains('3'), "line 3 should be named: {msg}");
    }

    #[test]
    fn wrong_type_is_named_with_its_line() {
        let err = Config::from_yaml("rd:\n  default_lifetime_s: forever\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("default_lifetime_s") || msg.contains("forever"),
            "{msg}"
        );
        assert!(msg.contains('2'), "line 2 should be named: {msg}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = Config::from_yaml("rd:\n  listen: [\"not an address\"]\n").unwrap_err();
        assert!(err.to_string().contains("rd.listen"), "{err}");
        let err = Config::from_yaml("platform:\n  url: http://x\n").unwrap_err();
        assert!(err.to_string().contains("platform.url"), "{err}");
    }

    #[test]
    fn value_errors_name_the_line_of_their_key() {
        for (yaml, key, line) in [
            (
                "gateway:\n  id: gw\nrd:\n  listen: [\"not an address\"]\n",
                "rd.listen",
                4,
            ),
            (
                "# comment\ncoap:\n  block_size: 100\n",
                "coap.block_size",
                3,
            ),
            ("http:\n  listen: localhost\n", "http.listen", 2),
        ] {
            let msg = Config::from_yaml(yaml).unwrap_err().to_string();
            assert!(
                msg.contains(key) && msg.contains(&format!("line {line}")),
                "{yaml}: {msg}"
            );
        }
        // A refused default has no line to name; the key is still named.
        let msg = Config::from_yaml("discovery:\n  interval_s: 600\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("discovery.lifetime_s") && !msg.contains("line"),
            "{msg}"
        );
    }

    #[test]
    fn load_and_check_refuses_an_unusable_data_dir_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "gateway:\n  id: gw\n  data_dir: /proc/nope\n").unwrap();
        Config::load(&path).expect("the YAML itself is valid");
        let msg = Config::load_and_check(&path).unwrap_err().to_string();
        assert!(
            msg.contains("gateway.data_dir")
                && msg.contains("line 3")
                && msg.contains("/proc/nope"),
            "{msg}"
        );
        let data = dir.path().join("data");
        std::fs::write(
            &path,
            format!("gateway:\n  data_dir: {:?}\n", data.display().to_string()),
        )
        .unwrap();
        Config::load_and_check(&path).unwrap();
        assert!(!data.exists(), "--check creates nothing");
    }

    #[test]
    fn values_past_their_upper_bound_are_refused() {
        for (yaml, key) in [
            (
                "coap:\n  ack_timeout_ms: 100000000000\n",
                "coap.ack_timeout_ms",
            ),
            ("pinger:\n  interval_s: 10000000\n", "pinger.interval_s"),
            (
                "executer:\n  timeout_ms: 99999999999\n",
                "executer.timeout_ms",
            ),
            ("rd:\n  max_registrations: 0\n", "rd.max_registrations"),
        ] {
            let err = Config::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn from_yaml_keeps_what_validation_parsed() {
        let c = Config::from_yaml(
            "discovery:\n  targets: [\"127.0.0.1:1-2\", \"224.0.1.187\"]\n\
             observer:\n  select: [\"rt=temp\"]\n  poll_interval_s: 5\n",
        )
        .unwrap();
        let parsed = c.parsed().unwrap();
        assert!(matches!(parsed, Cow::Borrowed(_)), "kept, not parsed again");
        assert_eq!(parsed.rd_listen, c.rd_listen_addrs().unwrap());
        assert_eq!(parsed.http_listen, c.http_listen_addr().unwrap());
        let unicast: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        assert_eq!(parsed.discovery_targets.unicast, unicast);
        assert_eq!(parsed.discovery_targets.groups.len(), 1);
        assert_eq!(parsed.observer.poll_interval, Duration::from_secs(5));
        assert_eq!(
            parsed.observer.selection,
            crate::observer::Selection::parse(&["rt=temp"]).unwrap()
        );
        // Built in code, never through from_yaml: validated when asked.
        assert!(matches!(Config::default().parsed().unwrap(), Cow::Owned(_)));
    }
}
