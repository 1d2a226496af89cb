//! The outbox of protocol 1.1 (`docs/platform-protocol.md`, "Acknowledged delivery"): every
//! frame the gateway owes the platform, from the moment the link learns of it until the platform
//! acknowledges it (acked mode) or it is written (protocol v1). Pure except `store`.
//!
//! - `ledger`: sequence numbers, cumulative acknowledgements, what to (re-)send next, the
//!   durable watermark and the bound (`platform.outbox_max_bytes`, `platform.queue_capacity`):
//!   `data` dropped first, then the oldest events replaced by one snapshot-forcing marker.
//! - `codec`: the stored record of an entry, and `seq` put into a frame's JSON text.
//! - `revision_seq`: the seqs of a cluster on etcd, derived from revisions (no store needed).
//! - `store`: the sled tree the durable entries live in (the registry's database), and the
//!   reserved sequence mark that lets a restart continue after the last seq used.

pub(crate) mod codec;
pub(crate) mod ledger;
pub(crate) mod revision_seq;
pub(crate) mod store;

pub(crate) use ledger::{Class, Ledger, Overflow};
pub use store::OutboxStore;
