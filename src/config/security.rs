//! `security.*`: what plain (unencrypted, unauthenticated) CoAP may still do once the RD
//! speaks DTLS. Anyone on the segment can spoof a plain UDP source, so a registration over
//! plain CoAP proves nothing about who made it.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{invalid, Config, ConfigError};

/// `security.plain_coap`, resolved (`auto` is not one: it becomes one of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainCoap {
    /// Everything, as without DTLS (the default while `dtls.listen` is empty).
    Open,
    /// Lookups only; registrations, updates and removals get 4.01 Unauthorized (the default
    /// once `dtls.listen` is set, and the recommended setting once devices have identities).
    LookupOnly,
    /// The plain sockets are not opened at all.
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SecurityConfig {
    /// `open`, `lookup_only`, `off`, or `auto` (the default): decided by `dtls.listen`, see
    /// [`SecurityConfig::validate`]. Text rather than an enum so that config.yaml can show the
    /// default as a value (`auto`) and a wrong one is named with its key and line.
    pub plain_coap: String,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            plain_coap: "auto".into(),
        }
    }
}

impl SecurityConfig {
    /// The `plain_coap` in force: as written, or for `auto` `open` without DTLS and
    /// `lookup_only` with it.
    /// `off` without DTLS would leave the RD listening nowhere.
    pub(super) fn validate(&self, dtls_listen: &[SocketAddr]) -> Result<PlainCoap, ConfigError> {
        let dtls = !dtls_listen.is_empty();
        match self.plain_coap.as_str() {
            "auto" if dtls => Ok(PlainCoap::LookupOnly),
            "auto" | "open" => Ok(PlainCoap::Open),
            "lookup_only" => Ok(PlainCoap::LookupOnly),
            "off" if dtls => Ok(PlainCoap::Off),
            "off" => Err(invalid(
                "security.plain_coap",
                "off, but dtls.listen is empty: the RD would listen nowhere",
            )),
            other => Err(invalid(
                "security.plain_coap",
                format!("{other:?} is not one of auto, open, lookup_only, off"),
            )),
        }
    }
}

impl Config {
    /// `security.plain_coap` resolved (`open` without DTLS, `lookup_only` with it, unless
    /// written).
    pub(crate) fn plain_coap(&self) -> Result<PlainCoap, ConfigError> {
        self.parsed().map(|parsed| parsed.plain_coap)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, PlainCoap};

    fn plain(yaml: &str) -> Result<PlainCoap, String> {
        Config::from_yaml(yaml)
            .and_then(|c| c.plain_coap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_follows_dtls_listen() {
        let dir = tempfile::tempdir().unwrap();
        let ids = dir.path().join("ids.yaml");
        std::fs::write(&ids, "identities: []\n").unwrap();
        let dtls = format!(
            "dtls:\n  listen: [\"127.0.0.1:0\"]\n  identities_file: {:?}\n",
            ids.display().to_string()
        );
        assert_eq!(plain(""), Ok(PlainCoap::Open));
        assert_eq!(
            plain("security:\n  plain_coap: auto\n"),
            Ok(PlainCoap::Open)
        );
        assert_eq!(plain(&dtls), Ok(PlainCoap::LookupOnly));
        assert_eq!(
            plain(&format!("{dtls}security:\n  plain_coap: auto\n")),
            Ok(PlainCoap::LookupOnly)
        );
        assert_eq!(
            plain(&format!("{dtls}security:\n  plain_coap: open\n")),
            Ok(PlainCoap::Open)
        );
        assert_eq!(
            plain(&format!("{dtls}security:\n  plain_coap: off\n")),
            Ok(PlainCoap::Off)
        );
        assert_eq!(
            plain("security:\n  plain_coap: lookup_only\n"),
            Ok(PlainCoap::LookupOnly)
        );
    }

    #[test]
    fn off_without_dtls_and_unknown_values_are_refused() {
        let e = plain("security:\n  plain_coap: off\n").unwrap_err();
        assert!(
            e.contains("security.plain_coap") && e.contains("line 2") && e.contains("nowhere"),
            "{e}"
        );
        let e = plain("security:\n  plain_coap: closed\n").unwrap_err();
        assert!(
            e.contains("security.plain_coap")
                && e.contains("\"closed\" is not one of auto, open, lookup_only, off")
                && e.contains("line 2"),
            "{e}"
        );
        let e = plain("security:\n  plain: open\n").unwrap_err();
        assert!(e.contains("plain"), "{e}");
    }
}
