//! Device identities for CoAP over DTLS: the identities file (who may connect, with which
//! pre-shared key, and which endpoint names and sectors each may register), its `*` patterns,
//! and the store that re-reads it on SIGHUP. Pure: nothing here opens a socket; the DTLS
//! transport asks [`Identities`] for keys and the RD asks it whether a registration is allowed.

mod glob;
mod identities;
mod store;

pub(crate) use identities::Identities;
#[allow(
    unused_imports,
    reason = "for the DTLS transport and the RD, once they are wired"
)]
pub(crate) use identities::{IdentitiesError, IdentityRefusal};
pub(crate) use store::IdentityStore;
#[allow(
    unused_imports,
    reason = "for the DTLS transport and the RD, once they are wired"
)]
pub(crate) use store::ReloadDiff;
