//! `http.*`: the admin HTTP server's address, the host names it answers to, its token
//! (`token_file` or the environment variable [`TOKEN_ENV`]) and its optional HTTPS certificate,
//! and reading the files they name ([`HttpConfig::resolve`], called by `Config::load`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::admin::tls::{AdminTls, TlsFileError};
use crate::secret::Secret;

/// Environment variable that supplies the admin token; it wins over `http.token_file`.
pub(crate) const TOKEN_ENV: &str = "COAP_GATEWAY_HTTP_TOKEN";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HttpConfig {
    /// Admin HTTP address; empty disables it. Localhost by default: without a token it is not
    /// authenticated.
    pub listen: String,
    /// Host names the admin server answers to besides literal addresses and `localhost`
    /// (DNS-rebinding defence, `admin::host_check`); other `Host` headers get 421.
    pub allowed_hosts: Vec<String>,
    /// A file holding the admin token (surrounding whitespace trimmed), read at start. The
    /// environment variable [`TOKEN_ENV`] wins over it (the file is then not read).
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain (leaf first) for HTTPS; with `tls_key_file`, or neither.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// The admin token, from [`TOKEN_ENV`] or `token_file` ([`HttpConfig::resolve`]).
    #[serde(skip)]
    pub token: Option<Secret>,
    /// The certificate and key, read by [`HttpConfig::resolve`].
    #[serde(skip)]
    pub tls: Option<AdminTls>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            allowed_hosts: Vec::new(),
            token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            token: None,
            tls: None,
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
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            let (key, missing) = if self.tls_cert_file.is_some() {
                ("http.tls_cert_file", "http.tls_key_file")
            } else {
                ("http.tls_key_file", "http.tls_cert_file")
            };
            return Err(ConfigError::Invalid {
                key,
                message: format!("HTTPS needs both files: {missing} is not set"),
            });
        }
        Ok(listen)
    }

    /// Read the files `http.*` names: the token (`from_env`, the value of [`TOKEN_ENV`], wins
    /// when set and not blank), the certificate and key. A missing or unreadable file, an
    /// empty token, a token a header cannot carry, or an unusable certificate or key is a
    /// config error naming its key.
    pub(crate) fn resolve(&mut self, from_env: Option<String>) -> Result<(), ConfigError> {
        if let Some(token) = from_env.filter(|t| !t.trim().is_empty()) {
            self.token = Some(checked_token(TOKEN_ENV, token.trim())?);
        } else if let Some(path) = &self.token_file {
            let text = read_text("http.token_file", path)?;
            if text.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key: "http.token_file",
                    message: format!("{} is empty", path.display()),
                });
            }
            self.token = Some(checked_token("http.token_file", text.trim())?);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            let cert_pem = read_bytes("http.tls_cert_file", cert)?;
            let key_pem = read_bytes("http.tls_key_file", key)?;
            let tls = AdminTls::from_pem(&cert_pem, &key_pem).map_err(|e| {
                // A key that does not fit is blamed on the key file.
                let (name, path) = match e {
                    TlsFileError::NoKey { .. } | TlsFileError::Mismatch { .. } => {
                        ("http.tls_key_file", key)
                    }
                    _ => ("http.tls_cert_file", cert),
                };
                ConfigError::Invalid {
                    key: name,
                    message: format!("{}: {e}", path.display()),
                }
            })?;
            self.tls = Some(tls);
        }
        Ok(())
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

/// The token as a `Secret`, if an `Authorization` header can carry it: visible ASCII, no
/// spaces (`source` names the key or variable it came from; the value is never shown).
fn checked_token(source: &'static str, token: &str) -> Result<Secret, ConfigError> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(Secret::new(token))
    } else {
        Err(ConfigError::Invalid {
            key: source,
            message: "the token must be printable ASCII without spaces (an HTTP header carries it)"
                .into(),
        })
    }
}

fn read_bytes(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::Invalid {
        key,
        message: format!("cannot read {}: {e}", path.display()),
    })
}

fn read_text(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    let bytes = read_bytes(key, path)?;
    String::from_utf8(bytes).map_err(|_| ConfigError::Invalid {
        key,
        message: format!("{} is not UTF-8 text", path.display()),
    })
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

#[cfg(test)]
mod file_tests {
    use super::TOKEN_ENV;
    use crate::config::Config;

    fn load(yaml: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_yaml(yaml)
    }

    #[test]
    fn the_token_file_is_read_trimmed_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret-admin\n").unwrap();
        let mut c = load(&format!(
            "http:\n  token_file: {:?}\n",
            file.display().to_string()
        ))
        .unwrap();
        assert!(
            c.http.token.is_none(),
            "files are read by resolve, not by from_yaml"
        );
        c.http.resolve(None).unwrap();
        assert_eq!(c.http.token.as_ref().unwrap().expose(), "s3cret-admin");
        assert!(!format!("{c:?}").contains("s3cret"));
        // The environment wins over the file; a blank variable counts as unset.
        c.http.resolve(Some(" from-env ".into())).unwrap();
        assert_eq!(c.http.token.as_ref().unwrap().expose(), "from-env");
        c.http.resolve(Some("  ".into())).unwrap();
        assert_eq!(c.http.token.as_ref().unwrap().expose(), "s3cret-admin");
    }

    #[test]
    fn a_missing_empty_or_unsendable_token_is_a_config_error_naming_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let spaced = dir.path().join("spaced");
        std::fs::write(&spaced, "two words\n").unwrap();
        for (path, says) in [
            (&missing, "cannot read"),
            (&empty, "is empty"),
            (&spaced, "ASCII"),
        ] {
            let mut c = load(&format!(
                "http:\n  token_file: {:?}\n",
                path.display().to_string()
            ))
            .unwrap();
            let err = c.http.resolve(None).unwrap_err().to_string();
            assert!(
                err.contains("http.token_file") && err.contains(says),
                "{err}"
            );
            assert!(
                !err.contains("two words"),
                "the token is never shown: {err}"
            );
        }
        let mut c = load("").unwrap();
        let err = c.http.resolve(Some("tab\there".into())).unwrap_err();
        assert!(err.to_string().contains(TOKEN_ENV), "{err}");
        assert!(!err.to_string().contains("here"), "{err}");
    }

    #[test]
    fn https_needs_both_files_and_a_key_that_fits() {
        let err = load("http:\n  tls_cert_file: c.pem\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("http.tls_cert_file") && err.contains("http.tls_key_file"),
            "{err}"
        );
        let err = load("http:\n  tls_key_file: k.pem\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.tls_key_file"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let other = dir.path().join("other.pem");
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, a.signing_key.serialize_pem()).unwrap();
        std::fs::write(&other, b.signing_key.serialize_pem()).unwrap();
        let yaml = |key: &std::path::Path| {
            format!(
                "http:\n  tls_cert_file: {:?}\n  tls_key_file: {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            )
        };
        let mut c = load(&yaml(&key)).unwrap();
        c.http.resolve(None).unwrap();
        assert!(c.http.tls.is_some());
        let mut c = load(&yaml(&other)).unwrap();
        let err = c.http.resolve(None).unwrap_err().to_string();
        assert!(err.contains("http.tls_key_file"), "{err}");
        let mut c = load(&yaml(&dir.path().join("missing.pem"))).unwrap();
        let err = c.http.resolve(None).unwrap_err().to_string();
        assert!(
            err.contains("http.tls_key_file") && err.contains("cannot read"),
            "{err}"
        );
    }
}
