//! `gateway.*`: who this gateway is and where its database lives.

use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GatewayConfig {
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

impl GatewayConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.id.trim().is_empty() {
            return Err(invalid("gateway.id", "must not be empty"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("gateway.data_dir", "must not be empty"));
        }
        if self.cache_mb == 0 {
            return Err(invalid("gateway.cache_mb", "must be at least 1"));
        }
        Ok(())
    }
}
