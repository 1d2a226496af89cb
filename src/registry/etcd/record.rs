//! A registration as etcd holds it: the sled record (`store::encode`, `{"v":2,"reg":{..}}`)
//! with one more member, `"etcd":{"state":"live"|"expired","cause":".."}`. `state` makes expiry
//! a written change; `cause` lets every replica derive the events the writer meant
//! (`change::events_of`). `store::decode` ignores the extra member, so `rd-dump` and the sled
//! loader read these records too (`docs/ha-etcd.md` §3).

use serde::{Deserialize, Serialize};

use crate::registry::change::Cause;
use crate::registry::error::StoreError;
use crate::registry::model::Registration;
use crate::registry::store::{self, FORMAT_VERSION};

/// A registration's state on etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Live,
    /// Lifetime over, revivable until the grace period ends.
    Expired,
}

/// The member `store::encode` does not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub state: State,
    pub cause: Cause,
}

#[derive(Serialize)]
struct Out<'a> {
    v: u64,
    reg: &'a Registration,
    etcd: Meta,
}

#[derive(Deserialize)]
struct MetaOnly {
    etcd: Option<Meta>,
}

/// The value of `P/reg/<id>`.
pub fn encode(reg: &Registration, meta: Meta) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&Out {
        v: FORMAT_VERSION,
        reg,
        etcd: meta,
    })
    .map_err(StoreError::Encode)
}

/// Decode a `P/reg/<id>` value; `key` only names it in errors. A record without the `etcd`
/// member (written by hand, or imported) counts as live, written by a registration.
pub fn decode(key: &str, value: &[u8]) -> Result<(Registration, Meta), StoreError> {
    let reg = store::decode(key, value)?;
    let meta = serde_json::from_slice::<MetaOnly>(value)
        .map_err(|source| StoreError::Decode {
            key: key.to_owned(),
            source,
        })?
        .etcd
        .unwrap_or(Meta {
            state: State::Live,
            cause: Cause::Register,
        });
    Ok((reg, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_the_sled_decoder_reads_it() {
        let reg = crate::registry::store::tests::sample(17);
        let meta = Meta {
            state: State::Expired,
            cause: Cause::Expire,
        };
        let bytes = encode(&reg, meta).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.contains(r#""etcd":{"state":"expired","cause":"expire"}"#),
            "{text}"
        );
        let (back, back_meta) = decode("reg/17", &bytes).unwrap();
        assert_eq!(back_meta, meta);
        assert_eq!(back.id, reg.id);
        assert_eq!(back.ep, reg.ep);
        assert_eq!(store::decode("reg/17", &bytes).unwrap().links, reg.links);
    }

    #[test]
    fn a_sled_record_reads_as_live() {
        let reg = crate::registry::store::tests::sample(3);
        let bytes = store::encode(&reg).unwrap();
        let (_, meta) = decode("reg/3", &bytes).unwrap();
        assert_eq!(meta.state, State::Live);
    }
}
