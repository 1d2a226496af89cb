//! `platform.*`: the WebSocket link to the platform (URL, token, trust, queue and frame
//! bounds), and reading the files it names: the token file and the CA file.

use std::path::PathBuf;

use serde::Deserialize;

use super::{in_range, invalid, ConfigError};
use crate::platform::backoff::INITIAL_DELAY;
use crate::platform::link::{
    LinkSettings, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT,
};
use crate::secret::Secret;
use std::time::Duration;

/// Environment variable that supplies the platform token (see
/// [`PlatformConfig::resolve_token`]).
pub(crate) const TOKEN_ENV: &str = "COAP_GATEWAY_PLATFORM_TOKEN";

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
    /// The most frame text (bytes) the outbox holds for the platform: `data` is dropped first,
    /// then the oldest events are replaced by a marker that forces a fresh snapshot.
    pub outbox_max_bytes: usize,
    /// Store `data` frames in the outbox like events (survive a restart), or keep them in
    /// memory only (the default: the next value supersedes them).
    pub durable_data: bool,
    /// The certificates of `ca_file`, read by `Config::load` ([`PlatformConfig::resolve_ca`]).
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
            outbox_max_bytes: 64 << 20,
            durable_data: false,
            ca_certs: Vec::new(),
        }
    }
}

impl PlatformConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.url;
        if !url.is_empty() && !url.starts_with("ws://") && !url.starts_with("wss://") {
            return Err(invalid(
                "platform.url",
                "must start with ws:// or wss://, or be empty",
            ));
        }
        if self.queue_capacity == 0 {
            return Err(invalid("platform.queue_capacity", "must be at least 1"));
        }
        in_range(
            "platform.max_frame_bytes",
            self.max_frame_bytes as u64,
            crate::platform::fit::MIN_FRAME_BYTES as u64,
            1 << 30,
        )?;
        in_range(
            "platform.outbox_max_bytes",
            self.outbox_max_bytes as u64,
            64 << 10,
            64 << 30,
        )?;
        in_range("platform.reconnect_max_s", self.reconnect_max_s, 1, 3_600)
    }

    /// Read `ca_file` (one or more PEM certificates) into `ca_certs`. A missing or unreadable
    /// file, or one without a usable certificate, is a config error.
    pub(crate) fn resolve_ca(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.ca_file else {
            return Ok(());
        };
        let invalid = |message: String| ConfigError::Invalid {
            key: "platform.ca_file",
            message,
        };
        let pem = std::fs::read(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        self.ca_certs = crate::platform::ca_file::parse_pem_certs(&pem)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        Ok(())
    }

    /// Where the token comes from, strongest first: the environment variable [`TOKEN_ENV`]
    /// (`from_env`), then `token_file`, then `token`. Keeping the token out of config.yaml
    /// lets the file be world-readable.
    pub(crate) fn resolve_token(&mut self, from_env: Option<String>) -> Result<(), ConfigError> {
        if let Some(token) = from_env.filter(|t| !t.trim().is_empty()) {
            self.token = Secret::new(token.trim());
            return Ok(());
        }
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                key: "platform.token_file",
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            self.token = Secret::new(text.trim());
        }
        Ok(())
    }
}

impl PlatformConfig {
    /// The PlatformLink's settings, for the gateway `gateway_id`.
    pub fn link_settings(&self, gateway_id: impl Into<String>) -> LinkSettings {
        LinkSettings {
            url: self.url.clone(),
            token: self.token.clone(),
            gateway_id: gateway_id.into(),
            queue_capacity: self.queue_capacity,
            reconnect_initial: INITIAL_DELAY,
            reconnect_max: Duration::from_secs(self.reconnect_max_s),
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_frame_bytes: self.max_frame_bytes,
            extra_root_certs: self.ca_certs.clone(),
            outbox_max_bytes: self.outbox_max_bytes,
            durable_data: self.durable_data,
            outbox: None,
            numbering: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

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
}
