//! The registry on etcd, for replicas sharing one registry (`docs/ha-etcd.md`). Being built
//! step by step; so far the key layout ([`keys`]). Nothing in the gateway uses it yet: the
//! sled store stays the only backend until the transactions and the watch exist.

pub mod keys;
