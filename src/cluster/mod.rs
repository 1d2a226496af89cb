//! A replica's part in a cluster of gateways sharing one registry on etcd (issue 22,
//! `docs/ha-etcd.md`): what runs only on the elected leader ([`leader_link`]: the platform
//! link and its Executer; [`feed`]: the registry events it sends, read from etcd's history and
//! numbered by revision), and what runs on every replica for it ([`data_relay`]: the device
//! data of the devices it owns, handed to the leader through etcd). The registry side (records, transactions, watch, members, ownership,
//! the election) is `registry::etcd`.

pub mod data_relay;
pub mod feed;
pub mod leader_link;

pub use leader_link::{LeaderLink, StopLeaderLink};
