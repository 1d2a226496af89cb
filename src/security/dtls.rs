//! The identities as the CoAP layer and the RD ask for them: the DTLS server's PSK lookup
//! ([`PskStore`]), the RD's "may this identity use this name" ([`RegistrationAuthority`]),
//! and what a SIGHUP does.

use std::collections::HashSet;

use coap_endpoint::{Endpoint, PskStore};

use super::IdentityStore;
use crate::rd::access::RegistrationAuthority;

impl PskStore for IdentityStore {
    fn psk(&self, identity: &[u8], out: &mut [u8]) -> Option<usize> {
        let identities = self.current();
        let key = identities.psk(identity)?;
        out.get_mut(..key.len())?.copy_from_slice(key);
        Some(key.len())
    }
}

impl RegistrationAuthority for IdentityStore {
    fn authorize(&self, identity: &str, ep: &str, d: Option<&str>) -> Result<(), String> {
        self.current()
            .authorize_registration(identity, ep, d)
            .map_err(|refusal| refusal.to_string())
    }

    fn knows(&self, identity: &str) -> bool {
        self.current().contains(identity)
    }
}

/// SIGHUP: read the identities file again. On success the new set serves the next handshake
/// and the next registration, and the sessions of removed or changed identities are closed
/// (their devices handshake again, with the new key, or not at all). On failure the old set
/// stays and the error is logged (never a key: the errors name entries, not values).
pub(crate) fn reload(store: &IdentityStore, endpoint: &Endpoint) {
    match store.reload() {
        Ok(diff) if diff.is_empty() => {
            log::info!(
                "dtls: identities reloaded from {}: no change",
                store.path().display()
            );
        }
        Ok(diff) => {
            let gone: HashSet<&str> = diff
                .removed
                .iter()
                .chain(&diff.changed)
                .map(String::as_str)
                .collect();
            let closed = if gone.is_empty() {
                0
            } else {
                endpoint.close_dtls_sessions(&|identity| gone.contains(identity))
            };
            log::info!(
                "dtls: identities reloaded from {}: {} added, {} removed, {} changed; {closed} \
                 session(s) closed",
                store.path().display(),
                diff.added.len(),
                diff.removed.len(),
                diff.changed.len()
            );
        }
        Err(e) => log::error!("dtls: identities not reloaded, the old set stays: {e}"),
    }
}
