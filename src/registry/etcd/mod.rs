//! The registry on etcd, for replicas sharing one registry (`docs/ha-etcd.md`): the key layout
//! ([`keys`]), the settings ([`settings`]), the records ([`record`]) and the etcd client side
//! ([`store`]: load, id blocks, transactions, watch). The Registry actor drives them
//! (`registry/actor/etcd_*.rs`).

pub mod keys;
pub mod record;
pub mod settings;
pub mod store;

pub use settings::EtcdSettings;
pub use store::EtcdStore;
