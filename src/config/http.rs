//! `http.*`: the admin HTTP server's address and the host names it answers to.

use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HttpConfig {
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

impl HttpConfig {
    /// `http.listen` as a socket address; `None` when empty (admin HTTP disabled).
    pub(crate) fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen
            .parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                key: "http.listen",
                message: format!("{:?} is not an address like 127.0.0.1:8080", self.listen),
            })
    }

    /// Check `http.*`; returns `http.listen` parsed.
    pub(super) fn validate(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let listen = self.listen_addr()?;
        self.validate_allowed_hosts()?;
        Ok(listen)
    }

    /// `http.allowed_hosts`: DNS names (letters, digits, `-`, `.`; at most 253 bytes), so that
    /// a typo such as a URL or a `host:port` is refused at start instead of never matching.
    fn validate_allowed_hosts(&self) -> Result<(), ConfigError> {
        for name in &self.allowed_hosts {
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
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

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
}
