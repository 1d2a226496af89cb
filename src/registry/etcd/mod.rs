//! The registry on etcd, for replicas sharing one registry (`docs/ha-etcd.md`): the key layout
//! ([`keys`]), the settings ([`settings`]), the records ([`record`]), the etcd client side
//! ([`store`]: load, id blocks, transactions, watch) and this replica's membership
//! ([`members`]: its leased key, the member list, and [`ownership`], the rule that decides
//! which member owns a registration) and the election of the replica that holds the platform
//! link ([`leader`]). The Registry actor drives them
//! (`registry/actor/etcd_*.rs`).

pub mod keys;
pub mod leader;
pub mod members;
pub mod ownership;
pub mod record;
pub mod settings;
pub mod store;

pub use members::Ownership;
pub use settings::EtcdSettings;
pub use store::EtcdStore;
