//! `registry.*`: which backend holds the registry (`sled`, local to this gateway, the default;
//! or `etcd`, shared by replicas, `docs/ha-etcd.md`), and for etcd where its members are, under
//! which prefix this cluster's keys live, who this replica is and how it authenticates. The
//! password is settled like the platform token: `password`, overridden by `password_file`,
//! overridden by [`PASSWORD_ENV`] ([`RegistryBackendConfig::resolve_password`]).
//!
//! TLS to etcd: `https://` endpoints (all or none) need `ca_file`, the CA that signed the
//! members' certificates; `cert_file` and `key_file` add a client certificate (etcd's
//! `--client-cert-auth`). The files are read at start ([`RegistryBackendConfig::resolve_tls`]);
//! the key never appears in a message.
//!
//! `platform.durable_data` is refused with etcd rather than ignored: there, data frames
//! already travel through etcd's history as the events do (`cluster::data_relay`), so the
//! sled outbox it switches on does not exist.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{in_range, invalid, ConfigError, PlatformConfig};
use crate::registry::etcd::settings::EtcdTls;
use crate::registry::etcd::EtcdSettings;
use crate::secret::Secret;

/// Environment variable that supplies the etcd password (see
/// [`RegistryBackendConfig::resolve_password`]).
pub(crate) const PASSWORD_ENV: &str = "COAP_GATEWAY_ETCD_PASSWORD";

/// Where `registry.etcd.prefix` defaults to, followed by `gateway.id`.
const DEFAULT_PREFIX_ROOT: &str = "/coap-gateway/";

/// Longest `registry.etcd.prefix`: it starts every key, and etcd keys count against its
/// request size limit.
const MAX_PREFIX_BYTES: usize = 128;

/// The member name when the host name cannot be read.
const FALLBACK_MEMBER_NAME: &str = "replica";

/// Where Linux keeps the host name: read as a file, so that no dependency is needed for it.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// Which store holds the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    /// The local sled database in `gateway.data_dir`.
    #[default]
    Sled,
    /// An etcd cluster shared by every replica (`registry.etcd`).
    Etcd,
}

/// The `registry:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RegistryBackendConfig {
    pub backend: Backend,
    /// Needed by `backend: etcd`; checked whenever it is written, so that a section prepared
    /// while the backend is still sled is already right when it is switched.
    pub etcd: Option<EtcdConfig>,
}

/// The `registry.etcd:` section. Defaults that depend on something else (the prefix on
/// `gateway.id`, the member name on the host) stay `None` here and are settled by
/// [`EtcdConfig::prefix_or_default`] and [`EtcdConfig::member_name_or_default`], so that
/// validation can tell a refused default from a refused value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct EtcdConfig {
    /// `http://host:port` client URLs of the etcd members.
    pub endpoints: Vec<String>,
    /// Every key of this cluster starts with it; default `/coap-gateway/<gateway.id>`.
    pub prefix: Option<String>,
    /// This replica's name among the members; default the host name.
    pub member_name: Option<String>,
    /// Lease of this replica's member key, seconds.
    pub member_ttl_s: u32,
    /// etcd user; with a password, or neither.
    pub user: Option<String>,
    /// Never printed; settled by [`RegistryBackendConfig::resolve_password`].
    pub password: Secret,
    /// A file holding the password (e.g. a systemd credential), read at start; overrides
    /// `password`. [`PASSWORD_ENV`] overrides both.
    pub password_file: Option<PathBuf>,
    /// PEM: the CA that signed the etcd members' certificates; needed by `https://`.
    pub ca_file: Option<PathBuf>,
    /// PEM: this replica's client certificate, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM: the private key of `cert_file`. Never printed.
    pub key_file: Option<PathBuf>,
    /// What the three files hold, read by [`RegistryBackendConfig::resolve_tls`].
    #[serde(skip)]
    pub tls: Option<EtcdTls>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: Vec::new(),
            prefix: None,
            member_name: None,
            member_ttl_s: 10,
            user: None,
            password: Secret::default(),
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            tls: None,
        }
    }
}

impl RegistryBackendConfig {
    /// The section's own checks, then what `backend: etcd` cannot be combined with yet.
    /// `gateway_id` gives the default prefix; `platform` is checked against the backend.
    pub(super) fn validate(
        &self,
        gateway_id: &str,
        platform: &PlatformConfig,
    ) -> Result<(), ConfigError> {
        if self.backend == Backend::Etcd && self.etcd.is_none() {
            return Err(invalid(
                "registry.backend",
                "etcd needs a registry.etcd section (at least its endpoints)",
            ));
        }
        if let Some(etcd) = &self.etcd {
            etcd.validate(gateway_id, host_name)?;
        }
        if self.backend != Backend::Etcd {
            return Ok(());
        }
        if platform.durable_data {
            return Err(invalid(
                "platform.durable_data",
                "is for registry.backend: sled; with etcd, data frames already travel through \
                 etcd's history as events do and survive a leader change until etcd compacts it \
                 (docs/ha-etcd.md section 8): remove it",
            ));
        }
        Ok(())
    }

    /// Settle the etcd password, strongest first: [`PASSWORD_ENV`] (`from_env`; blank counts
    /// as unset, and `password_file` is then not read), then `password_file` (its trailing
    /// line ending is not part of the password), then `password`. Then the user and the
    /// password must come together: which of the three sources supplies the password is only
    /// known here, so this half of the pairing cannot be checked by `validate`.
    ///
    /// Only with `backend: etcd`: a sled gateway reads no etcd file and ignores the variable.
    /// No message holds the password: a password file is named by its path only.
    pub(crate) fn resolve_password(&mut self, from_env: Option<String>) -> Result<(), ConfigError> {
        if self.backend != Backend::Etcd {
            return Ok(());
        }
        let Some(etcd) = &mut self.etcd else {
            return Ok(());
        };
        if let Some(password) = from_env.filter(|p| !p.trim().is_empty()) {
            etcd.password = Secret::new(password);
        } else if let Some(path) = &etcd.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "registry.etcd.password_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let password = text.trim_end_matches(['\r', '\n']);
            if password.trim().is_empty() {
                return Err(invalid(
                    "registry.etcd.password_file",
                    format!("{} is empty", path.display()),
                ));
            }
            etcd.password = Secret::new(password);
        }
        match (&etcd.user, etcd.password.is_empty()) {
            (Some(_), true) => Err(invalid(
                "registry.etcd.user",
                format!(
                    "needs a password: registry.etcd.password, registry.etcd.password_file or \
                     the environment variable {PASSWORD_ENV}"
                ),
            )),
            (None, false) => Err(invalid(
                "registry.etcd.user",
                format!(
                    "is not set, but a password is (registry.etcd.password, password_file or \
                     {PASSWORD_ENV}): set both or neither"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Read the TLS files (`ca_file`, `cert_file`, `key_file`) with `backend: etcd`: the CA
    /// must hold a certificate, the key must match nothing but be present. A message names
    /// the key and the path, never a file's content.
    pub(crate) fn resolve_tls(&mut self) -> Result<(), ConfigError> {
        if self.backend != Backend::Etcd {
            return Ok(());
        }
        let Some(etcd) = self.etcd.as_mut() else {
            return Ok(());
        };
        let Some(ca_path) = &etcd.ca_file else {
            return Ok(());
        };
        let read = |key: &'static str, path: &PathBuf| {
            std::fs::read(path)
                .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
        };
        let ca_pem = read("registry.etcd.ca_file", ca_path)?;
        match crate::platform::ca_file::parse_pem_certs(&ca_pem) {
            Ok(certs) if !certs.is_empty() => {}
            Ok(_) => {
                return Err(invalid(
                    "registry.etcd.ca_file",
                    format!("{} holds no PEM certificate", ca_path.display()),
                ))
            }
            Err(e) => {
                return Err(invalid(
                    "registry.etcd.ca_file",
                    format!("{}: {e}", ca_path.display()),
                ))
            }
        }
        let identity = match (&etcd.cert_file, &etcd.key_file) {
            (Some(cert), Some(key)) => {
                let cert_pem = read("registry.etcd.cert_file", cert)?;
                if !String::from_utf8_lossy(&cert_pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(invalid(
                        "registry.etcd.cert_file",
                        format!("{} holds no PEM certificate", cert.display()),
                    ));
                }
                let key_pem = read("registry.etcd.key_file", key)?;
                let key_text = String::from_utf8(key_pem).map_err(|_| {
                    invalid(
                        "registry.etcd.key_file",
                        format!("{} is not a PEM private key", key.display()),
                    )
                })?;
                if !key_text.contains("PRIVATE KEY-----") {
                    return Err(invalid(
                        "registry.etcd.key_file",
                        format!("{} is not a PEM private key", key.display()),
                    ));
                }
                Some((cert_pem, Secret::new(key_text)))
            }
            _ => None,
        };
        etcd.tls = Some(EtcdTls { ca_pem, identity });
        Ok(())
    }

    /// The etcd backend's settings for the cluster `gateway_id`; `None` unless `backend` is
    /// etcd (a validated config then has the section). The password is the one settled by
    /// [`RegistryBackendConfig::resolve_password`], which `Config::load` runs.
    pub(crate) fn etcd_settings(&self, gateway_id: &str) -> Option<EtcdSettings> {
        if self.backend != Backend::Etcd {
            return None;
        }
        let etcd = self.etcd.as_ref()?;
        Some(EtcdSettings {
            endpoints: etcd.endpoints.clone(),
            prefix: etcd.prefix_or_default(gateway_id),
            member_name: etcd.member_name_or_default(host_name),
            member_ttl_s: etcd.member_ttl_s,
            credentials: etcd
                .user
                .as_ref()
                .map(|user| (user.clone(), etcd.password.clone())),
            tls: etcd.tls.clone(),
            cluster_id: gateway_id.to_owned(),
        })
    }
}

impl EtcdConfig {
    /// `prefix`, or `/coap-gateway/<gateway.id>`.
    pub(crate) fn prefix_or_default(&self, gateway_id: &str) -> String {
        match &self.prefix {
            Some(prefix) => prefix.clone(),
            None => format!("{DEFAULT_PREFIX_ROOT}{gateway_id}"),
        }
    }

    /// `member_name`, or the host name `host` gives (read only when needed; [`host_name`] but
    /// in tests), or [`FALLBACK_MEMBER_NAME`] when there is none.
    pub(crate) fn member_name_or_default(&self, host: impl FnOnce() -> Option<String>) -> String {
        self.member_name
            .clone()
            .or_else(host)
            .unwrap_or_else(|| FALLBACK_MEMBER_NAME.to_owned())
    }

    /// Every check that needs nothing but the text (the password's own file is read later).
    /// `host` gives the host name, the default member name.
    fn validate(
        &self,
        gateway_id: &str,
        host: impl FnOnce() -> Option<String>,
    ) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(invalid(
                "registry.etcd.endpoints",
                "must list at least one etcd member, e.g. [\"http://10.0.0.21:2379\"]",
            ));
        }
        for endpoint in &self.endpoints {
            check_endpoint(endpoint)
                .map_err(|message| invalid("registry.etcd.endpoints", message))?;
        }
        self.check_tls()?;
        let prefix = self.prefix_or_default(gateway_id);
        if let Err(why) = check_prefix(&prefix) {
            return Err(invalid(
                "registry.etcd.prefix",
                match self.prefix {
                    Some(_) => format!("{prefix:?} {why}"),
                    None => format!(
                        "the default {prefix:?} (\"{DEFAULT_PREFIX_ROOT}\" and gateway.id) {why}: \
                         set registry.etcd.prefix"
                    ),
                },
            ));
        }
        in_range(
            "registry.etcd.member_ttl_s",
            u64::from(self.member_ttl_s),
            3,
            60,
        )?;
        let member_name = self.member_name_or_default(host);
        if !is_member_name(&member_name) {
            let why = "is not 1..=63 characters of A-Za-z0-9._-";
            return Err(invalid(
                "registry.etcd.member_name",
                match self.member_name {
                    Some(_) => format!("{member_name:?} {why}"),
                    None => format!(
                        "the default, the host name {member_name:?}, {why}: set \
                         registry.etcd.member_name"
                    ),
                },
            ));
        }
        if self.user.as_deref() == Some("") {
            return Err(invalid(
                "registry.etcd.user",
                "must not be empty (leave it out for no authentication)",
            ));
        }
        // The other half (a user whose password comes from nowhere) waits for the file and the
        // environment: `resolve_password`.
        if self.user.is_none() {
            if !self.password.is_empty() {
                return Err(invalid(
                    "registry.etcd.password",
                    "is set but registry.etcd.user is not: set both or neither",
                ));
            }
            if self.password_file.is_some() {
                return Err(invalid(
                    "registry.etcd.password_file",
                    "is set but registry.etcd.user is not: set both or neither",
                ));
            }
        }
        Ok(())
    }
}

impl EtcdConfig {
    /// All endpoints `https://` or none; `https://` needs `ca_file`, the files need
    /// `https://`, `cert_file` and `key_file` come together.
    fn check_tls(&self) -> Result<(), ConfigError> {
        let tls = self
            .endpoints
            .iter()
            .filter(|e| {
                e.get(..8)
                    .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
            })
            .count();
        if tls > 0 && tls < self.endpoints.len() {
            return Err(invalid(
                "registry.etcd.endpoints",
                "mixes http:// and https://: a cluster is reached with TLS or without",
            ));
        }
        if tls > 0 && self.ca_file.is_none() {
            return Err(invalid(
                "registry.etcd.ca_file",
                "is needed by https:// endpoints: the PEM file of the CA that signed the etcd \
                 members' certificates",
            ));
        }
        if tls == 0 {
            for (key, set) in [
                ("registry.etcd.ca_file", self.ca_file.is_some()),
                ("registry.etcd.cert_file", self.cert_file.is_some()),
                ("registry.etcd.key_file", self.key_file.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        key,
                        "is set but the endpoints are http://: use https:// endpoints for TLS",
                    ));
                }
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(invalid(
                "registry.etcd.key_file",
                "is needed with registry.etcd.cert_file",
            )),
            (None, Some(_)) => Err(invalid(
                "registry.etcd.cert_file",
                "is needed with registry.etcd.key_file",
            )),
            _ => Ok(()),
        }
    }
}

/// The host name, the default member name: `None` when it cannot be read or is blank.
fn host_name() -> Option<String> {
    let text = std::fs::read_to_string(HOSTNAME_FILE).ok()?;
    let name = text.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// `endpoint` is `http://host:port`: a host (a name, an IPv4 address or a bracketed IPv6
/// address) and a port 1..=65535, nothing else. Why not, otherwise.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let not =
        |why: &str| format!("{endpoint:?} is not http://host:port or https://host:port ({why})");
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| not("the scheme must be http:// or https://"))?;
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (address, port) = bracketed
            .split_once("]:")
            .ok_or_else(|| not("an IPv6 address is written [address]:port"))?;
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| not("not an IPv6 address between the brackets"))?;
        (address, port)
    } else {
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| not("no port"))?;
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(not(
                "the host is a name or an IPv4 address, without a path or user",
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(not("no host"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(not("the port must be 1..=65535, without a path")),
    }
}

/// `prefix` can start every key of a cluster: starts with `/`, does not end with one (the key
/// layout adds it), at most [`MAX_PREFIX_BYTES`], printable ASCII without space. Why not,
/// otherwise.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err("must start with /".to_owned());
    }
    if prefix.ends_with('/') {
        return Err("must not end with /".to_owned());
    }
    if prefix.len() > MAX_PREFIX_BYTES {
        return Err(format!(
            "is {} bytes, over {MAX_PREFIX_BYTES}",
            prefix.len()
        ));
    }
    if let Some(at) = prefix.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(format!(
            "has a byte outside printable ASCII (0x21..=0x7e, no space) at byte {at}"
        ));
    }
    Ok(())
}

/// A member name: 1..=63 characters of `A-Za-z0-9._-` (it is a key segment and a log field).
fn is_member_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::{Backend, EtcdConfig, PASSWORD_ENV};
    use crate::config::{Config, ConfigError};
    use crate::registry::etcd::EtcdSettings;

    /// A valid etcd section (lines 1 to 4), to which a test appends keys of `registry.etcd`
    /// from line 5 on.
    const ETCD: &str =
        "registry:\n  backend: etcd\n  etcd:\n    endpoints: [\"http://10.0.0.21:2379\"]\n";

    /// The refused key, its line and the message of a config that `from_yaml` refuses.
    fn refused(yaml: &str) -> (&'static str, Option<usize>, String) {
        match Config::from_yaml(yaml) {
            Err(ConfigError::Invalid { key, message }) => (key, None, message),
            Err(ConfigError::InvalidAt { key, line, message }) => (key, Some(line), message),
            Err(other) => panic!("{yaml}: not a value error: {other}"),
            Ok(_) => panic!("{yaml}: accepted"),
        }
    }

    /// `refused`, for a config that names the key at line `line` with a message containing
    /// `says`.
    fn assert_refused(yaml: &str, key: &str, line: Option<usize>, says: &str) {
        let (k, l, message) = refused(yaml);
        assert_eq!((k, l), (key, line), "{yaml}: {message}");
        assert!(message.contains(says), "{yaml}: {message}");
    }

    /// The refused key and message of `resolve_etcd_password(from_env)` on `yaml`.
    fn resolve_refused(yaml: &str, from_env: Option<&str>) -> (&'static str, String) {
        let mut c = Config::from_yaml(yaml).unwrap();
        match c.resolve_etcd_password(from_env.map(str::to_owned)) {
            Err(ConfigError::Invalid { key, message }) => (key, message),
            other => panic!("{yaml}: {other:?}"),
        }
    }

    #[test]
    fn the_default_backend_is_sled_without_etcd_settings() {
        for yaml in ["", "registry:\n  backend: sled\n"] {
            let c = Config::from_yaml(yaml).unwrap();
            assert_eq!(c.registry.backend, Backend::Sled);
            assert!(c.registry.etcd.is_none());
            assert!(c.etcd_settings().is_none());
        }
    }

    #[test]
    fn an_unknown_backend_is_refused_at_its_line() {
        let err = Config::from_yaml("registry:\n  backend: consul\n").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }), "{msg}");
        assert!(msg.contains("consul") && msg.contains('2'), "{msg}");
    }

    #[test]
    fn backend_etcd_needs_the_etcd_section() {
        assert_refused(
            "registry:\n  backend: etcd\n",
            "registry.backend",
            Some(2),
            "needs a registry.etcd section",
        );
    }

    #[test]
    fn etcd_defaults() {
        let c = Config::from_yaml(ETCD).unwrap();
        let s = c.etcd_settings().unwrap();
        assert_eq!(s.endpoints, ["http://10.0.0.21:2379"]);
        assert_eq!(s.prefix, "/coap-gateway/coap-gateway");
        assert_eq!(s.member_ttl_s, 10);
        assert_eq!(
            s.member_name,
            super::host_name().unwrap_or_else(|| "replica".into())
        );
        assert!(s.credentials.is_none());
        assert_eq!(s.cluster_id, "coap-gateway");
        // The host name is the default member name, "replica" when there is none.
        let etcd = EtcdConfig::default();
        assert_eq!(etcd.member_name_or_default(|| Some("gw-b".into())), "gw-b");
        assert_eq!(etcd.member_name_or_default(|| None), "replica");
        let named = EtcdConfig {
            member_name: Some("gw-a".into()),
            ..EtcdConfig::default()
        };
        assert_eq!(
            named.member_name_or_default(|| panic!("the host name is read only when needed")),
            "gw-a"
        );
    }

    #[test]
    fn a_full_etcd_section_becomes_its_settings() {
        let yaml = "gateway:\n  id: site-a\nregistry:\n  backend: etcd\n  etcd:\n    \
                    endpoints: [\"http://10.0.0.21:2379\", \"http://etcd-2.lan:2379\", \
                    \"http://[fd00::23]:2379\"]\n    prefix: /ha/site-a\n    member_name: gw-a\n    \
                    member_ttl_s: 15\n    user: coap-gateway\n    password: hunter2\n";
        let mut c = Config::from_yaml(yaml).unwrap();
        c.resolve_etcd_password(None).unwrap();
        let s = c.etcd_settings().unwrap();
        let EtcdSettings {
            endpoints,
            prefix,
            member_name,
            member_ttl_s,
            credentials,
            tls,
            cluster_id,
        } = s;
        assert!(tls.is_none(), "http:// endpoints");
        assert_eq!(
            endpoints,
            [
                "http://10.0.0.21:2379",
                "http://etcd-2.lan:2379",
                "http://[fd00::23]:2379"
            ]
        );
        assert_eq!(prefix, "/ha/site-a");
        assert_eq!(member_name, "gw-a");
        assert_eq!(member_ttl_s, 15);
        let (user, password) = credentials.unwrap();
        assert_eq!(
            (user.as_str(), password.expose()),
            ("coap-gateway", "hunter2")
        );
        assert_eq!(cluster_id, "site-a");
    }

    #[test]
    fn endpoints_must_be_http_host_port() {
        assert_refused(
            "registry:\n  backend: etcd\n  etcd:\n    endpoints: []\n",
            "registry.etcd.endpoints",
            Some(4),
            "at least one etcd member",
        );
        assert_refused(
            "registry:\n  backend: etcd\n  etcd:\n    member_name: gw\n",
            "registry.etcd.endpoints",
            None,
            "at least one etcd member",
        );
        for (endpoint, says) in [
            ("10.0.0.21:2379", "scheme must be http:// or https://"),
            (
                "etcd://10.0.0.21:2379",
                "scheme must be http:// or https://",
            ),
            ("http://10.0.0.21", "no port"),
            ("http://:2379", "no host"),
            ("http://10.0.0.21:0", "1..=65535"),
            ("http://10.0.0.21:65536", "1..=65535"),
            ("http://10.0.0.21:2379/v3", "without a path"),
            ("http://user@10.0.0.21:2379", "without a path or user"),
            ("http://fd00::23:2379", "the host is a name"),
            ("http://[fd00::zz]:2379", "not an IPv6 address"),
            ("http://[fd00::23]2379", "[address]:port"),
        ] {
            let yaml = format!(
                "registry:\n  backend: etcd\n  etcd:\n    endpoints:\n      - \"http://a:1\"\n      \
                 - {endpoint:?}\n"
            );
            let (key, line, message) = refused(&yaml);
            assert_eq!(
                (key, line),
                ("registry.etcd.endpoints", Some(4)),
                "{message}"
            );
            assert!(
                message.contains(says) && message.contains("is not http://host:port"),
                "{endpoint}: {message}"
            );
        }
    }

    #[test]
    fn tls_rows() {
        let tls =
            "registry:\n  backend: etcd\n  etcd:\n    endpoints: [\"https://10.0.0.21:2379\"]\n";
        assert_refused(tls, "registry.etcd.ca_file", None, "needed by https://");
        assert_refused(
            "registry:\n  backend: etcd\n  etcd:\n    endpoints: [\"https://a:1\", \"http://b:1\"]\n    ca_file: /ca.pem\n",
            "registry.etcd.endpoints",
            Some(4),
            "mixes http:// and https://",
        );
        for key in ["ca_file", "cert_file", "key_file"] {
            assert_refused(
                &format!("{ETCD}    {key}: /x.pem\n"),
                &format!("registry.etcd.{key}"),
                Some(5),
                "endpoints are http://",
            );
        }
        assert_refused(
            &format!("{tls}    ca_file: /ca.pem\n    cert_file: /c.pem\n"),
            "registry.etcd.key_file",
            None,
            "needed with registry.etcd.cert_file",
        );
        assert_refused(
            &format!("{tls}    ca_file: /ca.pem\n    key_file: /k.pem\n"),
            "registry.etcd.cert_file",
            None,
            "needed with registry.etcd.key_file",
        );
        // The peer link's key is not one yet.
        let err =
            Config::from_yaml(&format!("{ETCD}    peer_listen: \"10.0.0.11:7683\"\n")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn the_tls_files_are_read_and_the_key_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let (ca, crt, key, junk) = (
            dir.path().join("ca.pem"),
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("junk.pem"),
        );
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        std::fs::write(&crt, cert.cert.pem()).unwrap();
        std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
        std::fs::write(&junk, "not pem").unwrap();
        let yaml = |ca: &std::path::Path, crt: &std::path::Path, key: &std::path::Path| {
            format!(
                "registry:\n  backend: etcd\n  etcd:\n    endpoints: [\"https://127.0.0.1:2379\"]\n    \
                 ca_file: {ca:?}\n    cert_file: {crt:?}\n    key_file: {key:?}\n"
            )
        };
        let mut c = Config::from_yaml(&yaml(&ca, &crt, &key)).unwrap();
        c.registry.resolve_tls().unwrap();
        let settings = c.etcd_settings().expect("etcd settings");
        let tls = settings.tls.as_ref().expect("tls");
        assert!(!tls.ca_pem.is_empty() && tls.identity.is_some());
        let printed = format!("{settings:?}");
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        for (bad, key_name) in [
            (yaml(&junk, &crt, &key), "registry.etcd.ca_file"),
            (yaml(&ca, &junk, &key), "registry.etcd.cert_file"),
            (yaml(&ca, &crt, &junk), "registry.etcd.key_file"),
            (
                yaml(&dir.path().join("none"), &crt, &key),
                "registry.etcd.ca_file",
            ),
        ] {
            let mut c = Config::from_yaml(&bad).unwrap();
            match c.registry.resolve_tls().unwrap_err() {
                ConfigError::Invalid { key, message } => {
                    assert_eq!(key, key_name, "{message}");
                    assert!(!message.contains("not pem"), "no file content: {message}");
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn prefix_rows() {
        let long = format!("/{}", "p".repeat(128));
        for (prefix, says) in [
            ("coap-gateway/a", "must start with /"),
            ("/coap-gateway/a/", "must not end with /"),
            ("/", "must not end with /"),
            (long.as_str(), "129 bytes, over 128"),
            ("/coap gateway", "outside printable ASCII"),
            ("/coap-gatewäy", "outside printable ASCII"),
        ] {
            assert_refused(
                &format!("{ETCD}    prefix: {prefix:?}\n"),
                "registry.etcd.prefix",
                Some(5),
                says,
            );
        }
        let just_long_enough = format!("/{}", "p".repeat(127));
        Config::from_yaml(&format!("{ETCD}    prefix: {just_long_enough}\n")).unwrap();
    }

    #[test]
    fn a_default_prefix_that_gateway_id_spoils_says_to_set_prefix() {
        for id in ["site a", "site-a/"] {
            let yaml = format!("gateway:\n  id: {id:?}\n{ETCD}");
            let (key, line, message) = refused(&yaml);
            assert_eq!((key, line), ("registry.etcd.prefix", None), "{message}");
            assert!(
                message.contains("the default") && message.contains("set registry.etcd.prefix"),
                "{message}"
            );
        }
        // A prefix of its own makes such an id usable.
        Config::from_yaml(&format!(
            "gateway:\n  id: \"site a\"\n{ETCD}    prefix: /site-a\n"
        ))
        .unwrap();
    }

    #[test]
    fn member_ttl_s_is_3_to_60() {
        for ttl in [0, 2, 61, 3600] {
            assert_refused(
                &format!("{ETCD}    member_ttl_s: {ttl}\n"),
                "registry.etcd.member_ttl_s",
                Some(5),
                "outside 3..=60",
            );
        }
        for ttl in [3, 60] {
            let c = Config::from_yaml(&format!("{ETCD}    member_ttl_s: {ttl}\n")).unwrap();
            assert_eq!(c.etcd_settings().unwrap().member_ttl_s, ttl);
        }
    }

    #[test]
    fn member_name_rows() {
        let long = "m".repeat(64);
        for name in ["", "gw a", "gw/a", "gwä", long.as_str()] {
            assert_refused(
                &format!("{ETCD}    member_name: {name:?}\n"),
                "registry.etcd.member_name",
                Some(5),
                "1..=63 characters of A-Za-z0-9._-",
            );
        }
        let ok = format!("gw-A.1_{}", "m".repeat(56));
        Config::from_yaml(&format!("{ETCD}    member_name: {ok}\n")).unwrap();
        // A host name that is no member name is refused as the default it is.
        let etcd = EtcdConfig {
            endpoints: vec!["http://a:1".into()],
            ..EtcdConfig::default()
        };
        let err = etcd
            .validate("gw", || Some("x".repeat(64)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("registry.etcd.member_name")
                && err.contains("the host name")
                && err.contains("set registry.etcd.member_name"),
            "{err}"
        );
        etcd.validate("gw", || None).unwrap();
    }

    #[test]
    fn user_and_password_come_together() {
        // A password without a user is known from the text alone.
        assert_refused(
            &format!("{ETCD}    password: hunter2\n"),
            "registry.etcd.password",
            Some(5),
            "registry.etcd.user is not",
        );
        assert_refused(
            &format!("{ETCD}    password_file: /run/pw\n"),
            "registry.etcd.password_file",
            Some(5),
            "registry.etcd.user is not",
        );
        assert_refused(
            &format!("{ETCD}    user: \"\"\n"),
            "registry.etcd.user",
            Some(5),
            "must not be empty",
        );
        // A user without a password only once the file and the environment are known.
        let yaml = format!("{ETCD}    user: gw\n");
        let (key, message) = resolve_refused(&yaml, None);
        assert_eq!(key, "registry.etcd.user");
        assert!(message.contains("needs a password") && message.contains(PASSWORD_ENV));
        let mut c = Config::from_yaml(&yaml).unwrap();
        c.resolve_etcd_password(Some("from-env".into())).unwrap();
        // And the variable without a user.
        let (key, message) = resolve_refused(ETCD, Some("hunter2"));
        assert_eq!(key, "registry.etcd.user");
        assert!(message.contains("set both or neither"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn an_empty_or_unreadable_password_file_is_refused_without_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd-password");
        let yaml = |path: &std::path::Path| {
            format!(
                "{ETCD}    user: gw\n    password: hunter2\n    password_file: {:?}\n",
                path.display().to_string()
            )
        };
        for (content, says) in [("", "is empty"), ("\n", "is empty"), (" \r\n", "is empty")] {
            std::fs::write(&file, content).unwrap();
            let (key, message) = resolve_refused(&yaml(&file), None);
            assert_eq!(key, "registry.etcd.password_file");
            assert!(message.contains(says), "{message}");
        }
        let (key, message) = resolve_refused(&yaml(&dir.path().join("missing")), None);
        assert_eq!(key, "registry.etcd.password_file");
        assert!(
            message.contains("cannot read") && message.contains("missing"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        std::fs::write(&file, [0xff, 0xfe, b'x']).unwrap();
        let (_, message) = resolve_refused(&yaml(&file), None);
        assert!(message.contains("cannot read"), "{message}");
    }

    #[test]
    fn the_password_comes_from_env_then_file_then_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd-password");
        std::fs::write(&file, "from-file\r\n").unwrap();
        let yaml = format!(
            "{ETCD}    user: gw\n    password: from-config\n    password_file: {:?}\n",
            file.display().to_string()
        );
        let password = |from_env: Option<&str>| {
            let mut c = Config::from_yaml(&yaml).unwrap();
            c.resolve_etcd_password(from_env.map(str::to_owned))
                .unwrap();
            let (_, password) = c.etcd_settings().unwrap().credentials.unwrap();
            password.expose().to_owned()
        };
        assert_eq!(password(None), "from-file");
        assert_eq!(password(Some("from-env")), "from-env");
        // A blank variable counts as unset.
        assert_eq!(password(Some("  ")), "from-file");
        // The variable wins without reading the file.
        std::fs::remove_file(&file).unwrap();
        assert_eq!(password(Some("from-env")), "from-env");
        let mut c =
            Config::from_yaml(&format!("{ETCD}    user: gw\n    password: from-config\n")).unwrap();
        c.resolve_etcd_password(None).unwrap();
        let (_, password) = c.etcd_settings().unwrap().credentials.unwrap();
        assert_eq!(password.expose(), "from-config");
    }

    #[test]
    fn the_password_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd-password");
        std::fs::write(&file, "pw-from-file\n").unwrap();
        let yaml = format!(
            "{ETCD}    user: gw\n    password: pw-from-config\n    password_file: {:?}\n",
            file.display().to_string()
        );
        let mut c = Config::from_yaml(&yaml).unwrap();
        assert!(!format!("{c:?}").contains("pw-from"), "{c:?}");
        c.resolve_etcd_password(None).unwrap();
        assert!(!format!("{c:?}").contains("pw-from"), "{c:?}");
        let settings = c.etcd_settings().unwrap();
        assert!(!format!("{settings:?}").contains("pw-from"), "{settings:?}");
        c.resolve_etcd_password(Some("pw-from-env".into())).unwrap();
        assert!(!format!("{c:?}").contains("pw-from"), "{c:?}");
        // Nor does any refusal of a config that holds one.
        for extra in [
            "    member_ttl_s: 1\n",
            "    member_name: \"a b\"\n",
            "    prefix: x\n",
        ] {
            let (_, _, message) = refused(&format!("{yaml}{extra}"));
            assert!(!message.contains("pw-from"), "{message}");
        }
    }

    #[test]
    fn backend_etcd_takes_the_platform_link_but_refuses_durable_data() {
        // The elected replica holds the link (docs/ha-etcd.md section 8).
        Config::from_yaml(&format!("platform:\n  url: ws://platform:8080/ws\n{ETCD}")).unwrap();
        assert_refused(
            &format!("platform:\n  durable_data: true\n{ETCD}"),
            "platform.durable_data",
            Some(2),
            "is for registry.backend: sled",
        );
        // Both are fine on sled, with or without an etcd section.
        let sled = ETCD.replace("backend: etcd", "backend: sled");
        Config::from_yaml(&format!(
            "platform:\n  url: ws://platform:8080/ws\n  durable_data: true\n{sled}"
        ))
        .unwrap();
    }

    #[test]
    fn an_etcd_section_is_checked_but_not_read_while_the_backend_is_sled() {
        assert_refused(
            "registry:\n  etcd:\n    endpoints: [\"https://a:1\"]\n",
            "registry.etcd.ca_file",
            None,
            "needed by https://",
        );
        let yaml = "registry:\n  etcd:\n    endpoints: [\"http://a:1\"]\n    user: gw\n    \
                    password_file: /nonexistent/pw\n";
        let mut c = Config::from_yaml(yaml).unwrap();
        c.resolve_etcd_password(Some("ignored".into())).unwrap();
        assert!(c.etcd_settings().is_none());
    }

    #[test]
    fn load_reads_the_password_file_and_names_its_line() {
        if std::env::var_os(PASSWORD_ENV).is_some() {
            return; // the variable would win over the file this test is about
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let file = dir.path().join("etcd-password");
        let yaml = format!(
            "{ETCD}    user: gw\n    password_file: {:?}\n",
            file.display().to_string()
        );
        std::fs::write(&path, &yaml).unwrap();
        let msg = Config::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains("registry.etcd.password_file") && msg.contains("line 6"),
            "{msg}"
        );
        std::fs::write(&file, "s3cret\n").unwrap();
        let c = Config::load(&path).unwrap();
        let (_, password) = c.etcd_settings().unwrap().credentials.unwrap();
        assert_eq!(password.expose(), "s3cret");
    }
}
