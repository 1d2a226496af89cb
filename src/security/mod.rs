//! Device identities for CoAP over DTLS: the identities file (who may connect, with which
//! pre-shared key, and which endpoint names and sectors each may register), its `*` patterns,
//! and the store that re-reads it on SIGHUP. Pure: nothing here opens a socket; the DTLS
//! transport asks [`Identities`] for keys and the RD asks it whether a registration is allowed.

//! `dtls` connects them: the PSK lookup, the RD's authority and the SIGHUP reload.

mod dtls;
mod glob;
mod identities;
mod store;

pub(crate) use dtls::reload;
pub(crate) use identities::Identities;
pub(crate) use store::IdentityStore;
