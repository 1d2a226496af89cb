//! The gateway's configuration (`config.yaml`), typed and validated.
//!
//! Every section and key is optional in the file and falls back to the documented default, but an
//! unknown key or a value of the wrong type is an error that names the key and its line: a typo
//! in a production config must not be silently ignored. Semantic checks (ranges, parsable
//! addresses) run after parsing, in [`Config::validate`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// Environment variable that supplies the platform token (see
/// [`Config::resolve_platform_token`]).
pub const TOKEN_ENV: &str = "COAP_GATEWAY_PLATFORM_TOKEN";

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
}

/// A secret that never prints: `Debug` and `Display` show only whether it is set.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that must send it (the Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub rd: RdConfig,
    pub coap: CoapConfig,
    pub pinger: PingerConfig,
    pub observer: ObserverConfig,
    pub executer: ExecuterConfig,
    pub platform: PlatformConfig,
    pub http: HttpConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Identifies this gateway to the platform (`hello.gateway`).
    pub id: String,
    /// The sled database directory; created when missing.
    pub data_dir: PathBuf,
    /// sled's page cache, in MiB (sled's own default is 1 GiB, too much for a small box).
    pub cache_mb: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            id: "coap-gateway".into(),
            data_dir: PathBuf::from("./data"),
            cache_mb: 32,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RdConfig {
    /// UDP addresses the RD (and every request the gateway makes) uses. Port 0 picks a free port.
    pub listen: Vec<String>,
    /// `lt` assumed when a registration carries none (RFC 9176 §5: 90000 s).
    pub default_lifetime_s: u32,
    /// How long an expired registration stays revivable by an update (RFC 9176 §5.3).
    pub expiry_grace_s: u32,
    /// Show each endpoint's liveness as the attribute `status` in endpoint lookups.
    pub expose_status: bool,
    /// Accept simple registration (`POST /.well-known/rd`, RFC 9176 §5.1).
    pub simple_registration: bool,
}

impl Default for RdConfig {
    fn default() -> Self {
        RdConfig {
            listen: vec!["0.0.0.0:5683".into(), "[::]:5683".into()],
            default_lifetime_s: 90_000,
            expiry_grace_s: 3_600,
            expose_status: true,
            simple_registration: true,
        }
    }
}

/// RFC 7252 §4.8 transmission parameters and the endpoint's own bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoapConfig {
    pub ack_timeout_ms: u64,
    pub ack_random_factor: f64,
    pub max_retransmit: u32,
    /// Outstanding confirmable requests per peer (RFC 7252 §4.7 NSTART).
    pub nstart: usize,
    /// Outstanding requests the gateway sends, over all peers.
    pub max_in_flight: usize,
    /// Largest payload per block (16, 32, ..., 1024); larger bodies use Block2/Block1.
    pub block_size: usize,
}

impl Default for CoapConfig {
    fn default() -> Self {
        CoapConfig {
            ack_timeout_ms: 2_000,
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
            max_in_flight: 2_048,
            block_size: 1_024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PingerConfig {
    pub enabled: bool,
    pub interval_s: u64,
    pub timeout_ms: u64,
    pub attempts: u32,
    pub max_in_flight: usize,
}

impl Default for PingerConfig {
    fn default() -> Self {
        PingerConfig {
            enabled: true,
            interval_s: 30,
            timeout_ms: 2_000,
            attempts: 3,
            max_in_flight: 1_024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObserverConfig {
    pub enabled: bool,
    pub poll_interval_s: u64,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            enabled: true,
            poll_interval_s: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecuterConfig {
    pub timeout_ms: u64,
    /// Commands running at once; one more is answered `overloaded`.
    pub max_in_flight: usize,
    /// Send commands to devices whose status is 0 instead of answering `device_offline`.
    pub send_to_offline: bool,
    /// How long a finished command id is remembered, so a retry is not executed twice
    /// (0 turns deduplication off).
    pub dedup_window_s: u64,
}

impl Default for ExecuterConfig {
    fn default() -> Self {
        ExecuterConfig {
            timeout_ms: 10_000,
            max_in_flight: 256,
            send_to_offline: false,
            dedup_window_s: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// `ws://` or `wss://` URL of the platform; empty disables the link.
    pub url: String,
    /// Bearer token; never logged.
    pub token: Secret,
    /// A file holding the token (e.g. a systemd credential), read at start; overrides `token`.
    /// The environment variable `COAP_GATEWAY_PLATFORM_TOKEN` overrides both.
    pub token_file: Option<PathBuf>,
    pub reconnect_max_s: u64,
    pub queue_capacity: usize,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            url: String::new(),
            token: Secret::default(),
            token_file: None,
            reconnect_max_s: 30,
            queue_capacity: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Admin HTTP address; empty disables it. Localhost by default: it is not authenticated.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
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
        config.resolve_platform_token(std::env::var(TOKEN_ENV).ok())?;
        Ok(config)
    }

    /// Where the platform token comes from, strongest first: the environment variable
    /// [`TOKEN_ENV`], then `platform.token_file`, then `platform.token`. Keeping the token out of
    /// config.yaml lets the file be world-readable.
    pub fn resolve_platform_token(&mut self, from_env: Option<String>) -> Result<(), ConfigError> {
        if let Some(token) = from_env.filter(|t| !t.trim().is_empty()) {
            self.platform.token = Secret::new(token.trim());
            return Ok(());
        }
        if let Some(path) = &self.platform.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                key: "platform.token_file",
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            self.platform.token = Secret::new(text.trim());
        }
        Ok(())
    }

    /// Parse and validate YAML text (an empty document is the default config).
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: PathBuf::new(),
                message: e.to_string(),
            })?
        };
        config.validate()?;
        Ok(config)
    }

    /// Range and syntax checks that the YAML types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                message: message.into(),
            }
        }
        if self.gateway.id.trim().is_empty() {
            return Err(invalid("gateway.id", "must not be empty"));
        }
        if self.gateway.data_dir.as_os_str().is_empty() {
            return Err(invalid("gateway.data_dir", "must not be empty"));
        }
        if self.gateway.cache_mb == 0 {
            return Err(invalid("gateway.cache_mb", "must be at least 1"));
        }
        if self.rd.listen.is_empty() {
            return Err(invalid("rd.listen", "needs at least one UDP address"));
        }
        self.rd_listen_addrs()?;
        if self.rd.default_lifetime_s == 0 {
            return Err(invalid("rd.default_lifetime_s", "must be 1..=4294967295"));
        }
        if !(1.0..=10.0).contains(&self.coap.ack_random_factor) {
            return Err(invalid(
                "coap.ack_random_factor",
                "must be between 1.0 and 10.0",
            ));
        }
        if self.coap.ack_timeout_ms == 0 {
            return Err(invalid("coap.ack_timeout_ms", "must be at least 1"));
        }
        if self.coap.max_retransmit > 20 {
            return Err(invalid("coap.max_retransmit", "must be at most 20"));
        }
        if self.coap.nstart == 0 || self.coap.max_in_flight == 0 {
            return Err(invalid(
                "coap.nstart",
                "nstart and max_in_flight must be at least 1",
            ));
        }
        if !matches!(self.coap.block_size, 16 | 32 | 64 | 128 | 256 | 512 | 1024) {
            return Err(invalid(
                "coap.block_size",
                format!(
                    "{} is not a block size (16, 32, ..., 1024)",
                    self.coap.block_size
                ),
            ));
        }
        if self.pinger.interval_s == 0 || self.pinger.timeout_ms == 0 || self.pinger.attempts == 0 {
            return Err(invalid(
                "pinger",
                "interval_s, timeout_ms and attempts must be at least 1",
            ));
        }
        if self.pinger.max_in_flight == 0 {
            return Err(invalid("pinger.max_in_flight", "must be at least 1"));
        }
        if self.observer.poll_interval_s == 0 {
            return Err(invalid("observer.poll_interval_s", "must be at least 1"));
        }
        if self.executer.timeout_ms == 0 {
            return Err(invalid("executer.timeout_ms", "must be at least 1"));
        }
        if self.executer.max_in_flight == 0 {
            return Err(invalid("executer.max_in_flight", "must be at least 1"));
        }
        let url = &self.platform.url;
        if !url.is_empty() && !url.starts_with("ws://") && !url.starts_with("wss://") {
            return Err(invalid(
                "platform.url",
                "must start with ws:// or wss://, or be empty",
            ));
        }
        if self.platform.queue_capacity == 0 {
            return Err(invalid("platform.queue_capacity", "must be at least 1"));
        }
        if self.platform.reconnect_max_s == 0 {
            return Err(invalid("platform.reconnect_max_s", "must be at least 1"));
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:8080",
                    self.http.listen
                ),
            ));
        }
        Ok(())
    }

    /// `rd.listen` as socket addresses.
    pub fn rd_listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.rd
            .listen
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                    key: "rd.listen",
                    message: format!(
                        "{s:?} is not a UDP socket address like 0.0.0.0:5683 or [::]:5683"
                    ),
                })
            })
            .collect()
    }

    pub fn coap_ack_timeout(&self) -> Duration {
        Duration::from_millis(self.coap.ack_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_is_the_default() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.rd.default_lifetime_s, 90_000);
        assert_eq!(c.gateway.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn the_shipped_config_yaml_is_valid() {
        let text = include_str!("../config.yaml");
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
    fn platform_token_comes_from_env_then_file_then_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let yaml = format!(
            "platform:\n  token: from-config\n  token_file: {:?}\n",
            file.display().to_string()
        );
        let mut c = Config::from_yaml(&yaml).unwrap();
        c.resolve_platform_token(None).unwrap();
        assert_eq!(c.platform.token.expose(), "from-file");
        c.resolve_platform_token(Some("from-env".into())).unwrap();
        assert_eq!(c.platform.token.expose(), "from-env");

        let mut c = Config::from_yaml("platform:\n  token_file: /nonexistent/t\n").unwrap();
        let err = c.resolve_platform_token(None).unwrap_err();
        assert!(err.to_string().contains("platform.token_file"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::from_yaml("platform:\n  token: hunter2\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.platform.token.expose(), "hunter2");
    }

    #[test]
    fn executer_keys_have_defaults_and_are_validated() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.executer.max_in_flight, 256);
        assert!(!c.executer.send_to_offline);
        assert_eq!(c.executer.dedup_window_s, 300);
        let c = Config::from_yaml(
            "executer:\n  max_in_flight: 8\n  send_to_offline: true\n  dedup_window_s: 0\n",
        )
        .unwrap();
        assert_eq!(c.executer.max_in_flight, 8);
        assert!(c.executer.send_to_offline);
        assert_eq!(c.executer.dedup_window_s, 0);
        let err = Config::from_yaml("executer:\n  max_in_flight: 0\n").unwrap_err();
        assert!(err.to_string().contains("executer.max_in_flight"), "{err}");
    }
}
