//! The registry on etcd, for replicas sharing one registry (`docs/ha-etcd.md`). Being built
//! step by step: the key layout ([`keys`]) and the settings ([`settings`]).

pub mod keys;
pub mod settings;

pub use settings::EtcdSettings;
