//! The etcd key layout under `registry.etcd.prefix` (`docs/ha-etcd.md`, section 3): pure
//! functions from names and ids to keys and back.
//!
//! - `P/reg/<id>`: the id as 16 lower-case hex digits, so that etcd's byte order is id order,
//!   as sled's big-endian keys are, and a range read lists registrations by id.
//! - `P/name/<d>/<ep>`: the uniqueness index of ep+d. Both are percent-encoded (every byte
//!   outside `A-Za-z0-9-._~`), so a `/` in a sector cannot forge another key and no sector
//!   is an empty segment (`name//node1` is "no sector").
//! - `P/members/<name>`, `P/leader`, `P/ids/next`, `P/cluster`, `P/platform/acked`.
//! - `P/data/<name>`: the device data a member's Observer hands to the leader, one batch per
//!   put (the leader's cluster feed reads every revision of it, `cluster::data_relay`).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

fn decode(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The keys of one registry under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The prefix without a trailing `/`.
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (`/coap-gateway/site-a`; a trailing `/` is ignored).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// `P/reg/<id>`.
    pub fn registration(&self, id: u64) -> String {
        format!("{}/reg/{id:016x}", self.prefix)
    }

    /// The prefix of every registration key: a range read over it lists them in id order.
    pub fn registrations(&self) -> String {
        format!("{}/reg/", self.prefix)
    }

    /// The id in a `P/reg/<id>` key; None for any other key, or a malformed one.
    pub fn registration_id(&self, key: &str) -> Option<u64> {
        let hex = key.strip_prefix(&self.registrations())?;
        if hex.len() != 16
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    }

    /// `P/name/<d>/<ep>`; `d` None is the empty segment.
    pub fn name(&self, d: Option<&str>, ep: &str) -> String {
        format!(
            "{}/name/{}/{}",
            self.prefix,
            d.map(encode).unwrap_or_default(),
            encode(ep)
        )
    }

    /// The (d, ep) of a `P/name/<d>/<ep>` key.
    pub fn name_of(&self, key: &str) -> Option<(Option<String>, String)> {
        let rest = key.strip_prefix(&format!("{}/name/", self.prefix))?;
        let (d, ep) = rest.split_once('/')?;
        if ep.is_empty() || ep.contains('/') {
            return None;
        }
        let d = if d.is_empty() { None } else { Some(decode(d)?) };
        Some((d, decode(ep)?))
    }

    /// `P/members/<name>`.
    pub fn member(&self, name: &str) -> String {
        format!("{}/members/{}", self.prefix, encode(name))
    }

    /// The prefix of every member key.
    pub fn members(&self) -> String {
        format!("{}/members/", self.prefix)
    }

    /// `P/leader`: the platform link's election.
    pub fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// `P/ids/next`: the first registration id not yet reserved by any replica.
    pub fn next_id(&self) -> String {
        format!("{}/ids/next", self.prefix)
    }

    /// `P/cluster`: the cluster's identity (`hello.gateway`).
    pub fn cluster(&self) -> String {
        format!("{}/cluster", self.prefix)
    }

    /// `P/`: everything of this cluster (the leader's cluster feed watches it).
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// `P/data/<name>`: member `name`'s batches of device data for the leader.
    pub fn data(&self, member: &str) -> String {
        format!("{}/data/{}", self.prefix, encode(member))
    }

    /// Whether `key` is some member's `P/data/<name>`.
    pub fn is_data(&self, key: &str) -> bool {
        key.strip_prefix(&format!("{}/data/", self.prefix))
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    }

    /// `P/platform/acked`: the platform's last cumulative acknowledgement.
    pub fn platform_acked(&self) -> String {
        format!("{}/platform/acked", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new("/coap-gateway/site-a/")
    }

    #[test]
    fn registration_keys_are_fixed_width_hex_and_read_back() {
        let k = keys();
        assert_eq!(
            k.registration(17),
            "/coap-gateway/site-a/reg/0000000000000011"
        );
        for id in [0, 1, 17, 0xffff, u64::MAX] {
            assert_eq!(k.registration_id(&k.registration(id)), Some(id));
        }
        assert!(k.registration(17).starts_with(&k.registrations()));
    }

    #[test]
    fn data_keys_name_one_member_each() {
        let k = keys();
        assert_eq!(k.data("gw a"), "/coap-gateway/site-a/data/gw%20a");
        assert!(k.is_data(&k.data("gw/a")));
        assert!(!k.is_data("/coap-gateway/site-a/data/"));
        assert!(!k.is_data("/coap-gateway/site-a/data/a/b"));
        assert!(!k.is_data(&k.registration(1)));
        assert!(!k.is_data("/other/data/a"));
    }

    #[test]
    fn byte_order_of_registration_keys_is_id_order() {
        let k = keys();
        let ids = [0u64, 9, 10, 15, 16, 255, 256, 1 << 40, u64::MAX];
        for pair in ids.windows(2) {
            assert!(
                k.registration(pair[0]) < k.registration(pair[1]),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn malformed_registration_keys_are_not_ids() {
        let k = keys();
        for bad in [
            "/coap-gateway/site-a/reg/11",
            "/coap-gateway/site-a/reg/000000000000001G",
            "/coap-gateway/site-a/reg/000000000000001A",
            "/coap-gateway/site-a/reg/00000000000000011",
            "/coap-gateway/site-b/reg/0000000000000011",
            "/coap-gateway/site-a/name//x",
        ] {
            assert_eq!(k.registration_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_are_percent_encoded_and_read_back() {
        let k = keys();
        assert_eq!(k.name(None, "node1"), "/coap-gateway/site-a/name//node1");
        assert_eq!(
            k.name(Some("floor/2"), "node 1"),
            "/coap-gateway/site-a/name/floor%2F2/node%201"
        );
        for (d, ep) in [
            (None, "node1"),
            (Some("floor/2"), "a/b"),
            (Some("ü"), "%41"),
            (Some("x"), "~._-"),
        ] {
            let key = k.name(d, ep);
            assert_eq!(
                k.name_of(&key),
                Some((d.map(str::to_owned), ep.to_owned())),
                "{key}"
            );
        }
    }

    #[test]
    fn a_slash_in_a_sector_cannot_forge_another_name() {
        let k = keys();
        // Without encoding, sector "a/b" + ep "c" and sector "a" + ep "b/c" would share a key.
        assert_ne!(k.name(Some("a/b"), "c"), k.name(Some("a"), "b/c"));
    }

    #[test]
    fn other_keys_sit_under_the_prefix() {
        let k = keys();
        assert_eq!(k.member("gw-a"), "/coap-gateway/site-a/members/gw-a");
        assert!(k.member("gw-a").starts_with(&k.members()));
        assert_eq!(k.leader(), "/coap-gateway/site-a/leader");
        assert_eq!(k.next_id(), "/coap-gateway/site-a/ids/next");
        assert_eq!(k.cluster(), "/coap-gateway/site-a/cluster");
        assert_eq!(k.platform_acked(), "/coap-gateway/site-a/platform/acked");
        assert_eq!(k.name_of(&k.member("gw-a")), None);
    }
}
