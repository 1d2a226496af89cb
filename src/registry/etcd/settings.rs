//! What the etcd backend needs from `config.yaml` (`registry.etcd.*`, validated by
//! `config/registry.rs`): where etcd is, under which prefix this cluster's keys live, and who
//! this replica is.

use crate::secret::Secret;

/// The etcd backend's settings, already validated.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// `http://host:port` client URLs of the etcd members (`registry.etcd.endpoints`).
    pub endpoints: Vec<String>,
    /// Every key of this cluster starts with it; starts with `/`, no trailing `/`.
    pub prefix: String,
    /// This replica's name among the members (`registry.etcd.member_name`).
    pub member_name: String,
    /// Lease of the member key, seconds (`registry.etcd.member_ttl_s`).
    pub member_ttl_s: u32,
    /// etcd authentication: user and password, both or neither.
    pub credentials: Option<(String, Secret)>,
    /// TLS (`https://` endpoints): the CA, and a client certificate if configured.
    pub tls: Option<EtcdTls>,
    /// The cluster id (`gateway.id`), equal on every replica.
    pub cluster_id: String,
}

impl EtcdSettings {
    /// Settings for tests and tools: `endpoints` and `prefix`, member `member_name`, TTL 10 s,
    /// no authentication.
    pub fn new(endpoints: Vec<String>, prefix: &str, member_name: &str) -> EtcdSettings {
        EtcdSettings {
            endpoints,
            prefix: prefix.to_owned(),
            member_name: member_name.to_owned(),
            member_ttl_s: 10,
            credentials: None,
            tls: None,
            cluster_id: "coap-gateway".to_owned(),
        }
    }
}

/// TLS to etcd, read from `registry.etcd.{ca_file, cert_file, key_file}`.
#[derive(Clone)]
pub struct EtcdTls {
    /// PEM certificates of the CA that signed the members' certificates.
    pub ca_pem: Vec<u8>,
    /// PEM client certificate and its private key (never printed).
    pub identity: Option<(Vec<u8>, Secret)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}
