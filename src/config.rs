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

mod key_line;
mod preflight;

pub use key_line::line_of_key;

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
    pub fn located_in(self, yaml: &str) -> ConfigError {
        match self {
            ConfigError::Invalid { key, message } => match line_of_key(yaml, key) {
                Some(line) => ConfigError::InvalidAt { key, line, message },
                None => ConfigError::Invalid { key, message },
            },
            other => other,
        }
    }
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
    pub discovery: DiscoveryConfig,
    pub observer: ObserverConfig,
    pub executer: ExecuterConfig,
    pub platform: PlatformConfig,
    pub http: HttpConfig,
    pub limits: LimitsConfig,
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
    /// New endpoints are refused with 5.03 beyond this many registrations (live or in grace):
    /// the RD is open to its network, and disk and memory are not.
    pub max_registrations: usize,
    /// Answer multicast discovery (RFC 9176 §4.1): join All-CoRE-RDs (224.0.1.190, ff02::fe,
    /// ff05::fe) and All-CoAP-Nodes (224.0.1.187, ff02::fd) with the `0.0.0.0:5683` /
    /// `[::]:5683` listeners, and answer `GET /.well-known/core` sent to them (only that).
    pub multicast: bool,
    /// Interfaces to join the groups on. Empty: every interface that is up, multicast-capable
    /// and not loopback at start (none found is logged as an error). A name that does not
    /// exist stops the start.
    pub multicast_interfaces: Vec<String>,
    /// Upper bound of the random delay before a multicast answer (RFC 7252 §8.2 Leisure).
    pub multicast_leisure_ms: u64,
    /// Advertise the RD as `_core-rd._udp` over DNS-SD/mDNS (RFC 9176 §4.1.2, RFC 6763).
    pub dnssd: bool,
    /// Interfaces (by name) the mDNS daemon uses, for advertising and for `discovery.mdns`;
    /// empty: every interface the daemon finds, loopback included.
    pub dnssd_interfaces: Vec<String>,
    /// RFC 9176 §7.5 "First Come First Remembered": a live registration may be replaced,
    /// updated or deleted only from the IP address it was written from (others get 4.03).
    pub endpoint_protection: EndpointProtection,
}

/// `rd.endpoint_protection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointProtection {
    FirstComeFirstRemembered,
    Off,
}

/// Resource limits and abuse protection; see `config.yaml` for why each default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body (a registration's links), whole or reassembled from Block1: 4.13.
    pub max_payload_bytes: usize,
    /// Most links in one registration: 4.13.
    pub max_links: usize,
    /// Registrations one source IP may hold (live or in grace); a new one beyond gets 4.03.
    pub max_registrations_per_source: usize,
    /// Requests per second per source IP to the RD (token bucket); 0 turns it off.
    pub request_rate_per_s: f64,
    /// Requests a source may send at once before the rate applies.
    pub request_burst: u32,
    /// Sources remembered at most by each per-source table (rate buckets, proven sources).
    pub source_table_size: usize,
    /// Request handlers running at once in the RD's endpoint; beyond: 5.03 (CON), drop (NON).
    pub max_concurrent_handlers: usize,
    /// Responses to sources not proven to receive at their address are at most this many times
    /// the request's size (RFC 7252 §11.3); 0 turns it off.
    pub amplification_factor: u32,
    /// Bytes per second (for the whole gateway) by which responses that fit in one block may
    /// exceed `amplification_factor` for unproven sources, so clients that implement neither
    /// Block2 nor Echo get whole answers; once spent, the factor is strict until it refills.
    /// 0 makes the factor strict always.
    pub unproven_excess_bytes_per_s: u64,
    /// Loopback sources (local processes; unspoofable from the network) are exempt from the
    /// rate limit, the per-source quota and the amplification bound.
    pub exempt_loopback: bool,
    /// IPv6 sources count per prefix of this length for every per-source limit (rate, quota,
    /// observers); 128 counts each address alone.
    pub ipv6_source_prefix: u8,
    /// Simple registrations (the RD fetching the registrant's links) in progress at once, over
    /// all sources; at most half of `coap.max_in_flight`. Beyond: 5.03.
    pub max_simple_registrations_in_progress: usize,
    /// ... and per source (IPv4 address, IPv6 prefix). Beyond: 5.03.
    pub max_simple_registrations_per_source: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_payload_bytes: 65_536,
            max_links: 1_024,
            max_registrations_per_source: 20_000,
            request_rate_per_s: 200.0,
            request_burst: 1_000,
            source_table_size: 65_536,
            max_concurrent_handlers: 4_096,
            amplification_factor: 3,
            unproven_excess_bytes_per_s: 262_144,
            ipv6_source_prefix: crate::limits::source_key::DEFAULT_IPV6_PREFIX,
            max_simple_registrations_in_progress: 64,
            max_simple_registrations_per_source: 2,
            exempt_loopback: true,
        }
    }
}

impl Default for RdConfig {
    fn default() -> Self {
        RdConfig {
            listen: vec!["0.0.0.0:5683".into(), "[::]:5683".into()],
            default_lifetime_s: 90_000,
            expiry_grace_s: 3_600,
            expose_status: true,
            simple_registration: true,
            max_registrations: 200_000,
            multicast: false,
            multicast_interfaces: Vec::new(),
            multicast_leisure_ms: crate::rd::multicast::DEFAULT_LEISURE_MS,
            dnssd: false,
            dnssd_interfaces: Vec::new(),
            endpoint_protection: EndpointProtection::FirstComeFirstRemembered,
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
    /// Receive and send buffer asked of the kernel for each CoAP socket.
    pub socket_buffer_bytes: usize,
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
            socket_buffer_bytes: 16 << 20,
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

/// Active discovery: unicast `GET /.well-known/core` to configured targets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    pub enabled: bool,
    /// Seconds between discovery rounds (the first runs at start).
    pub interval_s: u64,
    /// `addr:port`, `addr` (port 5683), `addr:first-last`, or a multicast group
    /// (`224.0.1.187`, `[ff02::fd%eth0]`).
    pub targets: Vec<String>,
    /// Lifetime of a discovered registration; each round refreshes it, so it must outlast
    /// `interval_s`. A device that stops answering expires after it.
    pub lifetime_s: u32,
    /// Budget of one device's `GET /.well-known/core`, retransmissions included.
    pub timeout_ms: u64,
    /// Devices asked at once.
    pub max_in_flight: usize,
    /// Also browse mDNS for `_coap._udp` services and ask each one found (RFC 6763, RFC 7252
    /// §12.8); needs `enabled`.
    pub mdns: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            enabled: false,
            interval_s: 60,
            targets: Vec::new(),
            lifetime_s: 180,
            timeout_ms: 5_000,
            max_in_flight: 64,
            mdns: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObserverConfig {
    pub enabled: bool,
    pub poll_interval_s: u64,
    /// RD-style filters choosing the links to watch; a link is watched when it matches any
    /// entry; `&` inside an entry ANDs filters (`"rt=temp*&if=sensor"`).
    pub select: Vec<String>,
    /// Forward a poll result only when it differs from the previous one for that link.
    pub only_changes: bool,
    /// Per device; frames beyond it are dropped and counted.
    pub max_frames_per_s: u32,
    /// Polls and observation set-ups running at once.
    pub max_in_flight: usize,
    /// Cap on observations plus polled links held at once (bounded state).
    pub max_watched: usize,
    /// A polled link answering with an error is asked again after twice the interval, then
    /// four times, ..., at most this many seconds apart (never less than the interval) until
    /// it answers with a value.
    pub error_backoff_max_s: u64,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            enabled: true,
            poll_interval_s: 60,
            select: vec!["obs".to_string(), "if=sensor".to_string()],
            only_changes: false,
            max_frames_per_s: 10,
            max_in_flight: 256,
            max_watched: 400_000,
            error_backoff_max_s: 600,
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
    /// The largest WebSocket frame the platform accepts, in bytes: the gateway writes no larger
    /// frame (snapshot parts are cut by bytes, a device object that cannot fit alone loses links
    /// from its end, see `platform::fit`).
    pub max_frame_bytes: usize,
    /// PEM file of certificates trusted for `wss://` besides the public web roots.
    pub ca_file: Option<PathBuf>,
    /// The certificates of `ca_file`, read by `Config::load` (`resolve_platform_ca`).
    #[serde(skip)]
    pub ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            url: String::new(),
            token: Secret::default(),
            token_file: None,
            reconnect_max_s: 30,
            queue_capacity: 50_000,
            max_frame_bytes: 1 << 20,
            ca_file: None,
            ca_certs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Admin HTTP address; empty disables it. Localhost by default: it is not authenticated.
    pub listen: String,
    /// Host names the admin server answers to besides literal addresses and `localhost`
    /// (DNS-rebinding defence, `admin::host_check`); other `Host` headers get 421.
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// `key` must lie in `min..=max`.
fn in_range(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            message: format!("{value} is outside {min}..={max}"),
        })
    }
}

/// A Linux interface name: 1..=15 bytes, no '/', ':' or whitespace.
fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

impl Config {
    /// Whether the gateway runs an mDNS daemon at all: nothing is sent on port 5353 otherwise.
    pub fn needs_mdns(&self) -> bool {
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
        preflight::check_data_dir(&config.gateway.data_dir).map_err(|message| {
            ConfigError::Invalid {
                key: "gateway.data_dir",
                message,
            }
            .located_in(&text)
        })?;
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
        Ok((config, text))
    }

    /// Read `platform.ca_file` (one or more PEM certificates) into `platform.ca_certs`. A
    /// missing or unreadable file, or one without a usable certificate, is a config error.
    pub fn resolve_platform_ca(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.platform.ca_file else {
            return Ok(());
        };
        let invalid = |message: String| ConfigError::Invalid {
            key: "platform.ca_file",
            message,
        };
        let pem = std::fs::read(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        self.platform.ca_certs = crate::platform::ca_file::parse_pem_certs(&pem)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        Ok(())
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
        config.validate().map_err(|e| e.located_in(text))?;
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
        // Upper bounds keep every derived deadline (e.g. MAX_TRANSMIT_WAIT) far from overflow.
        in_range("coap.ack_timeout_ms", self.coap.ack_timeout_ms, 1, 60_000)?;
        in_range(
            "coap.max_retransmit",
            self.coap.max_retransmit.into(),
            0,
            20,
        )?;
        if self.coap.nstart == 0 || self.coap.max_in_flight == 0 {
            return Err(invalid(
                "coap.nstart",
                "nstart and max_in_flight must be at least 1",
            ));
        }
        in_range(
            "coap.socket_buffer_bytes",
            self.coap.socket_buffer_bytes as u64,
            64 << 10,
            1 << 30,
        )?;
        if !matches!(self.coap.block_size, 16 | 32 | 64 | 128 | 256 | 512 | 1024) {
            return Err(invalid(
                "coap.block_size",
                format!(
                    "{} is not a block size (16, 32, ..., 1024)",
                    self.coap.block_size
                ),
            ));
        }
        in_range("pinger.interval_s", self.pinger.interval_s, 1, 86_400)?;
        in_range("pinger.timeout_ms", self.pinger.timeout_ms, 1, 60_000)?;
        in_range("pinger.attempts", self.pinger.attempts.into(), 1, 100)?;
        if self.pinger.max_in_flight == 0 {
            return Err(invalid("pinger.max_in_flight", "must be at least 1"));
        }
        let d = &self.discovery;
        in_range("discovery.interval_s", d.interval_s, 1, 86_400)?;
        in_range("discovery.timeout_ms", d.timeout_ms, 1, 60_000)?;
        in_range(
            "discovery.max_in_flight",
            d.max_in_flight as u64,
            1,
            100_000,
        )?;
        if u64::from(d.lifetime_s) <= d.interval_s {
            return Err(invalid(
                "discovery.lifetime_s",
                format!(
                    "{} must exceed interval_s ({}), or discovered devices expire between rounds",
                    d.lifetime_s, d.interval_s
                ),
            ));
        }
        if let Err(e) = crate::discovery::expand_targets(&d.targets) {
            return Err(invalid("discovery.targets", e.to_string()));
        }
        if d.mdns && !d.enabled {
            return Err(invalid(
                "discovery.mdns",
                "needs discovery.enabled: true (the Discovery actor asks what mDNS finds)",
            ));
        }
        if let Some(bad) = self
            .rd
            .dnssd_interfaces
            .iter()
            .find(|n| !is_interface_name(n))
        {
            return Err(invalid(
                "rd.dnssd_interfaces",
                format!("{bad:?} is not an interface name like eth0"),
            ));
        }
        let o = &self.observer;
        in_range(
            "observer.max_frames_per_s",
            o.max_frames_per_s.into(),
            1,
            1_000_000,
        )?;
        in_range("observer.max_in_flight", o.max_in_flight as u64, 1, 100_000)?;
        in_range("observer.max_watched", o.max_watched as u64, 1, 10_000_000)?;
        if let Err(e) = crate::observer::Selection::parse(&o.select) {
            return Err(invalid("observer.select", e.to_string()));
        }
        in_range(
            "observer.poll_interval_s",
            self.observer.poll_interval_s,
            1,
            86_400,
        )?;
        in_range(
            "executer.timeout_ms",
            self.executer.timeout_ms,
            1,
            3_600_000,
        )?;
        in_range(
            "executer.max_in_flight",
            self.executer.max_in_flight as u64,
            1,
            100_000,
        )?;
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
        in_range(
            "platform.max_frame_bytes",
            self.platform.max_frame_bytes as u64,
            crate::platform::fit::MIN_FRAME_BYTES as u64,
            1 << 30,
        )?;
        in_range(
            "platform.reconnect_max_s",
            self.platform.reconnect_max_s,
            1,
            3_600,
        )?;
        in_range(
            "rd.max_registrations",
            self.rd.max_registrations as u64,
            1,
            10_000_000,
        )?;
        self.validate_multicast()?;
        self.validate_limits()?;
        self.http_listen_addr()?;
        self.validate_allowed_hosts()?;
        Ok(())
    }

    /// `http.allowed_hosts`: DNS names (letters, digits, `-`, `.`; at most 253 bytes), so that
    /// a typo such as a URL or a `host:port` is refused at start instead of never matching.
    fn validate_allowed_hosts(&self) -> Result<(), ConfigError> {
        for name in &self.http.allowed_hosts {
            let plausible = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !plausible {
                return Err(ConfigError::Invalid {
                    key: "http.allowed_hosts",
                    message: format!("{name:?} is not a host name like gateway.example"),
                });
            }
        }
        Ok(())
    }

    /// `http.listen` as a socket address; `None` when empty (admin HTTP disabled).
    pub fn http_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.http.listen.is_empty() {
            return Ok(None);
        }
        self.http
            .listen
            .parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                key: "http.listen",
                message: format!(
                    "{:?} is not an address like 127.0.0.1:8080",
                    self.http.listen
                ),
            })
    }

    /// `rd.multicast*`: a leisure within a minute, plausible interface names, and a listener
    /// that can receive group traffic (only a socket bound to the unspecified address on the
    /// CoAP port gets datagrams sent to `224.0.1.187:5683` and the like).
    fn validate_multicast(&self) -> Result<(), ConfigError> {
        let rd = &self.rd;
        in_range(
            "rd.multicast_leisure_ms",
            rd.multicast_leisure_ms,
            0,
            60_000,
        )?;
        for name in &rd.multicast_interfaces {
            // IFNAMSIZ is 16 bytes with the terminating NUL.
            if name.is_empty() || name.len() > 15 || name.contains(['\0', '/', ' ']) {
                return Err(ConfigError::Invalid {
                    key: "rd.multicast_interfaces",
                    message: format!("{name:?} is not an interface name"),
                });
            }
        }
        if !rd.multicast {
            return Ok(());
        }
        let wildcard_coap_port = self.rd_listen_addrs()?.iter().any(|a| {
            a.ip().is_unspecified() && a.port() == crate::rd::multicast::RD_MULTICAST_PORT
        });
        if !wildcard_coap_port {
            return Err(ConfigError::Invalid {
                key: "rd.multicast",
                message: "needs 0.0.0.0:5683 and/or [::]:5683 in rd.listen: only a socket bound \
                          to the unspecified address on the CoAP port receives multicast"
                    .into(),
            });
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        in_range(
            "limits.max_payload_bytes",
            l.max_payload_bytes as u64,
            64,
            16 << 20,
        )?;
        in_range("limits.max_links", l.max_links as u64, 1, 1_000_000)?;
        in_range(
            "limits.max_registrations_per_source",
            l.max_registrations_per_source as u64,
            1,
            10_000_000,
        )?;
        if !(0.0..=10_000_000.0).contains(&l.request_rate_per_s) {
            return Err(ConfigError::Invalid {
                key: "limits.request_rate_per_s",
                message: format!("{} is outside 0..=10000000", l.request_rate_per_s),
            });
        }
        in_range(
            "limits.request_burst",
            l.request_burst.into(),
            1,
            10_000_000,
        )?;
        in_range(
            "limits.source_table_size",
            l.source_table_size as u64,
            16,
            10_000_000,
        )?;
        in_range(
            "limits.max_concurrent_handlers",
            l.max_concurrent_handlers as u64,
            1,
            1_000_000,
        )?;
        in_range(
            "limits.amplification_factor",
            l.amplification_factor.into(),
            0,
            1_000,
        )?;
        in_range(
            "limits.unproven_excess_bytes_per_s",
            l.unproven_excess_bytes_per_s,
            0,
            1 << 30,
        )?;
        in_range(
            "limits.ipv6_source_prefix",
            l.ipv6_source_prefix.into(),
            32,
            128,
        )?;
        // Half of the client's slots at most: the Pinger, Executer and Observer share them,
        // and a host that never answers the RD's GET must not take them all.
        in_range(
            "limits.max_simple_registrations_in_progress",
            l.max_simple_registrations_in_progress as u64,
            1,
            (self.coap.max_in_flight as u64 / 2).max(1),
        )?;
        in_range(
            "limits.max_simple_registrations_per_source",
            l.max_simple_registrations_per_source as u64,
            1,
            l.max_simple_registrations_in_progress as u64,
        )
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
    fn observer_keys_have_defaults_and_are_validated() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.observer.select, vec!["obs", "if=sensor"]);
        assert!(!c.observer.only_changes);
        assert_eq!(c.observer.max_frames_per_s, 10);
        assert_eq!(c.observer.max_in_flight, 256);
        let c = Config::from_yaml("observer:\n  select: [\"rt=temp*&if=sensor\"]\n").unwrap();
        assert_eq!(c.observer.select, vec!["rt=temp*&if=sensor"]);
        for bad in [
            "observer:\n  select: [\"\"]\n",
            "observer:\n  select: [\"count=3\"]\n",
            "observer:\n  max_frames_per_s: 0\n",
            "observer:\n  max_in_flight: 0\n",
        ] {
            let err = Config::from_yaml(bad).unwrap_err().to_string();
            assert!(err.contains("observer"), "{bad}: {err}");
        }
    }

    #[test]
    fn multicast_keys_have_defaults_and_are_validated() {
        let c = Config::from_yaml("").unwrap();
        assert!(!c.rd.multicast);
        assert!(c.rd.multicast_interfaces.is_empty());
        assert_eq!(c.rd.multicast_leisure_ms, 4_000);
        let c = Config::from_yaml(
            "rd:\n  multicast: true\n  multicast_interfaces: [eth0, veth0]\n  multicast_leisure_ms: 50\n",
        )
        .unwrap();
        assert!(c.rd.multicast);
        assert_eq!(c.rd.multicast_interfaces, vec!["eth0", "veth0"]);
        assert_eq!(c.rd.multicast_leisure_ms, 50);
        // IPv6 only is enough.
        Config::from_yaml("rd:\n  multicast: true\n  listen: [\"[::]:5683\"]\n").unwrap();
        for (bad, key) in [
            (
                "rd:\n  multicast: true\n  listen: [\"127.0.0.1:5683\"]\n",
                "rd.multicast",
            ),
            (
                "rd:\n  multicast: true\n  listen: [\"0.0.0.0:5684\"]\n",
                "rd.multicast",
            ),
            (
                "rd:\n  multicast_leisure_ms: 60001\n",
                "rd.multicast_leisure_ms",
            ),
            (
                "rd:\n  multicast_interfaces: [\"\"]\n",
                "rd.multicast_interfaces",
            ),
            (
                "rd:\n  multicast_interfaces: [a-very-long-interface-name]\n",
                "rd.multicast_interfaces",
            ),
        ] {
            let err = Config::from_yaml(bad).unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn http_listen_defaults_to_localhost_and_empty_disables_it() {
        let default = Config::from_yaml("").unwrap();
        assert_eq!(
            default.http_listen_addr().unwrap(),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        let off = Config::from_yaml("http:\n  listen: \"\"\n").unwrap();
        assert_eq!(off.http_listen_addr().unwrap(), None);
        let err = Config::from_yaml("http:\n  listen: localhost\n").unwrap_err();
        assert!(err.to_string().contains("http.listen"), "{err}");
    }

    #[test]
    fn allowed_hosts_are_host_names() {
        let ok = Config::from_yaml("http:\n  allowed_hosts: [gateway.lan, gw-1]\n").unwrap();
        assert_eq!(ok.http.allowed_hosts, ["gateway.lan", "gw-1"]);
        for bad in ["http://gw.lan", "gw.lan:8080", "\"\""] {
            let yaml = format!("http:\n  allowed_hosts: [{bad}]\n");
            let err = Config::from_yaml(&yaml).unwrap_err();
            assert!(
                err.to_string().contains("http.allowed_hosts"),
                "{bad}: {err}"
            );
        }
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
    fn platform_ca_file_is_read_and_a_bad_one_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(&file, cert.cert.pem()).unwrap();
        let yaml = |path: &std::path::Path| {
            format!("platform:\n  ca_file: {:?}\n", path.display().to_string())
        };
        let mut c = Config::from_yaml(&yaml(&file)).unwrap();
        c.resolve_platform_ca().unwrap();
        assert_eq!(c.platform.ca_certs, vec![cert.cert.der().clone()]);
        let mut c = Config::from_yaml(&yaml(&dir.path().join("missing.pem"))).unwrap();
        let err = c.resolve_platform_ca().unwrap_err().to_string();
        assert!(
            err.contains("platform.ca_file") && err.contains("missing.pem"),
            "{err}"
        );
        std::fs::write(&file, "not a certificate\n").unwrap();
        let mut c = Config::from_yaml(&yaml(&file)).unwrap();
        let err = c.resolve_platform_ca().unwrap_err().to_string();
        assert!(
            err.contains("platform.ca_file") && err.contains("no PEM"),
            "{err}"
        );
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
    fn discovery_defaults_and_checks() {
        let c = Config::from_yaml("").unwrap();
        assert!(!c.discovery.enabled);
        assert_eq!(c.discovery.interval_s, 60);
        assert_eq!(c.discovery.lifetime_s, 180);
        let c = Config::from_yaml(
            "discovery:\n  enabled: true\n  targets: [\"127.0.0.1:40000-40019\", \"[::1]:5683\"]\n",
        )
        .unwrap();
        assert_eq!(c.discovery.targets.len(), 2);
        let err = Config::from_yaml("discovery:\n  targets: [\"ff02::fd\"]\n").unwrap_err();
        assert!(err.to_string().contains("discovery.targets"), "{err}");
        let c =
            Config::from_yaml("discovery:\n  targets: [\"224.0.1.187\", \"[ff02::fd%eth0]\"]\n")
                .unwrap();
        assert_eq!(c.discovery.targets.len(), 2);
        let err =
            Config::from_yaml("discovery:\n  interval_s: 60\n  lifetime_s: 60\n").unwrap_err();
        assert!(err.to_string().contains("discovery.lifetime_s"), "{err}");
        let err = Config::from_yaml("discovery:\n  timeout_ms: 0\n").unwrap_err();
        assert!(err.to_string().contains("discovery"), "{err}");
    }

    #[test]
    fn dnssd_keys_default_off_and_are_checked() {
        let c = Config::from_yaml("").unwrap();
        assert!(!c.rd.dnssd && !c.discovery.mdns && c.rd.dnssd_interfaces.is_empty());
        assert!(!c.needs_mdns(), "the default config never sends mDNS");
        let c =
            Config::from_yaml("rd:\n  dnssd: true\n  dnssd_interfaces: [eth0, veth0]\n").unwrap();
        assert!(c.needs_mdns());
        assert_eq!(c.rd.dnssd_interfaces, vec!["eth0", "veth0"]);
        let c = Config::from_yaml("discovery:\n  enabled: true\n  mdns: true\n").unwrap();
        assert!(c.needs_mdns());
        let err = Config::from_yaml("discovery:\n  mdns: true\n").unwrap_err();
        assert!(err.to_string().contains("discovery.mdns"), "{err}");
        for bad in ["\"\"", "\"a/b\"", "\"eth 0\"", "sixteen-chars-xx"] {
            let err =
                Config::from_yaml(&format!("rd:\n  dnssd_interfaces: [{bad}]\n")).unwrap_err();
            assert!(
                err.to_string().contains("rd.dnssd_interfaces"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::from_yaml("platform:\n  token: hunter2\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.platform.token.expose(), "hunter2");
    }

    #[test]
    fn limits_have_defaults_and_are_validated() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.platform.max_frame_bytes, 1 << 20);
        assert_eq!(c.limits.max_payload_bytes, 65_536);
        assert_eq!(c.limits.request_rate_per_s, 200.0);
        assert_eq!(c.limits.amplification_factor, 3);
        assert!(c.limits.exempt_loopback);
        assert_eq!(
            c.rd.endpoint_protection,
            EndpointProtection::FirstComeFirstRemembered
        );
        let c = Config::from_yaml(
            "rd:\n  endpoint_protection: off\nlimits:\n  request_rate_per_s: 0\n  max_links: 3\n",
        )
        .unwrap();
        assert_eq!(c.rd.endpoint_protection, EndpointProtection::Off);
        assert_eq!(c.limits.request_rate_per_s, 0.0);
        assert_eq!(c.limits.max_links, 3);
        for (yaml, key) in [
            ("limits:\n  max_links: 0\n", "limits.max_links"),
            (
                "limits:\n  request_rate_per_s: -1\n",
                "limits.request_rate_per_s",
            ),
            (
                "limits:\n  source_table_size: 1\n",
                "limits.source_table_size",
            ),
            (
                "limits:\n  max_concurrent_handlers: 0\n",
                "limits.max_concurrent_handlers",
            ),
            (
                "limits:\n  max_payload_bytes: 1\n",
                "limits.max_payload_bytes",
            ),
            (
                "platform:\n  max_frame_bytes: 65535\n",
                "platform.max_frame_bytes",
            ),
        ] {
            let err = Config::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
        assert!(Config::from_yaml("rd:\n  endpoint_protection: maybe\n").is_err());
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
