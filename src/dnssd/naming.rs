//! What the RD's DNS-SD advertisement says (RFC 6763, RFC 9176 §4.1.2): the service types, the
//! instance name and host name derived from `gateway.id`, and the TXT keys. Pure: no I/O.
//! Called by `responder` when the gateway starts advertising.

/// The RD's service type (RFC 9176 §4.1.2, §12.5 registration), in mDNS's `.local.` domain.
pub(crate) const RD_SERVICE_TYPE: &str = "_core-rd._udp.local.";

/// Plain CoAP servers (RFC 7252 §12.8): what `discovery.mdns` browses for passive devices.
pub(crate) const COAP_SERVICE_TYPE: &str = "_coap._udp.local.";

/// Used when `gateway.id` leaves nothing usable.
const FALLBACK_NAME: &str = "coap-gateway";

/// A DNS label's limit, for instance names (RFC 6763 §4.1.1) and host labels (RFC 1035 §2.3.4).
pub(crate) const MAX_LABEL: usize = 63;

/// The user-visible instance name: `gateway.id` as it is (RFC 6763 §4.1.1 allows any UTF-8),
/// except that dots and control characters become `-` (a dot would split the DNS label for
/// receivers that do not unescape), cut to 63 bytes on a character boundary.
pub(crate) fn instance_name(gateway_id: &str) -> String {
    let cleaned: String = gateway_id
        .trim()
        .chars()
        .map(|c| if c == '.' || c.is_control() { '-' } else { c })
        .collect();
    let cut = truncate_utf8(&cleaned, MAX_LABEL).trim().to_string();
    if cut.is_empty() {
        FALLBACK_NAME.to_string()
    } else {
        cut
    }
}

/// The instance name for a listener on another port than the first one: a DNS-SD instance
/// names one port, so each further port gets its own, e.g. `gw-1 port 5684`.
pub(crate) fn instance_name_for_port(instance: &str, port: u16) -> String {
    let suffix = format!(" port {port}");
    let head = truncate_utf8(instance, MAX_LABEL - suffix.len()).trim_end();
    format!("{head}{suffix}")
}

/// The mDNS host name (`<label>.local.`): `gateway.id` lowercased, every run of characters
/// other than ASCII letters and digits turned into one `-`, trimmed of `-`, at most 63 bytes
/// (RFC 952/1123 host name rules, so any resolver accepts it).
pub(crate) fn host_name(gateway_id: &str) -> String {
    let mut label = String::new();
    for c in gateway_id.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if !label.ends_with('-') {
            label.push('-');
        }
    }
    let label = label.trim_matches('-');
    let label = label[..label.len().min(MAX_LABEL)].trim_end_matches('-');
    let label = if label.is_empty() {
        FALLBACK_NAME
    } else {
        label
    };
    format!("{label}.local.")
}

/// The instance and host name of replica `member` of cluster `gateway_id` (replicas on etcd,
/// `docs/ha-etcd.md` §9): `<gateway.id> (<member>)` on `<gateway-id>-<member>.local.`. Equal
/// names from two hosts would start mDNS conflict resolution (RFC 6762 §9), which renames one;
/// the member part is kept whole and the cluster's part is cut to fit the label.
pub(crate) fn replica_names(gateway_id: &str, member: &str) -> (String, String) {
    let suffix = format!(" ({member})");
    let cluster = instance_name(gateway_id);
    let head = truncate_utf8(&cluster, MAX_LABEL.saturating_sub(suffix.len())).trim_end();
    let instance = instance_name(&format!("{head}{suffix}"));
    let member_label = host_name(member);
    let member_label = member_label
        .strip_suffix(".local.")
        .unwrap_or(&member_label);
    let cluster_label = host_name(gateway_id);
    let cluster_label = cluster_label
        .strip_suffix(".local.")
        .unwrap_or(&cluster_label);
    let room = MAX_LABEL.saturating_sub(member_label.len() + 1);
    let head = cluster_label[..cluster_label.len().min(room)].trim_end_matches('-');
    (instance, host_name(&format!("{head}-{member_label}")))
}

/// The host name for a listener whose addresses differ from the first one's: DNS-SD resolves
/// addresses by host name, so one shared host would merge both address sets and send devices to
/// a family the port is not served on. `test-gw.local.` + 5684 -> `test-gw-5684.local.`.
pub(crate) fn host_name_for_port(host: &str, port: u16) -> String {
    let label = host.strip_suffix(".local.").unwrap_or(host);
    let suffix = format!("-{port}");
    let head = &label[..label.len().min(MAX_LABEL - suffix.len())];
    format!("{}{suffix}.local.", head.trim_end_matches('-'))
}

/// TXT keys that let a device use the RD without a discovery round trip (RFC 6763 §6): the
/// version of this key set first (§6.7), the resource type, the registration resource
/// (RFC 9176 §5), the lookup resources (§6) and, when enabled, simple registration (§5.1).
/// Paths are the ones `rd::route` serves. Keys are at most nine characters (RFC 6763 §6.4),
/// hence `res-lkup`. A replica on etcd adds `cluster=<gateway.id>`: every replica serves the
/// same registry, so a device may use any instance with that key.
pub(crate) fn txt_records(
    simple_registration: bool,
    cluster: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut txt: Vec<(&'static str, String)> = [
        ("txtvers", "1"),
        ("rt", "core.rd"),
        ("path", "/rd"),
        ("ep-lookup", "/rd-lookup/ep"),
        ("res-lkup", "/rd-lookup/res"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    if simple_registration {
        txt.push(("simple", "/.well-known/rd".to_owned()));
    }
    if let Some(cluster) = cluster {
        txt.push(("cluster", cluster.to_owned()));
    }
    txt
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_keep_the_id_but_not_dots() {
        assert_eq!(instance_name("test-gw"), "test-gw");
        assert_eq!(instance_name("Halle 3 Gateway"), "Halle 3 Gateway");
        assert_eq!(instance_name("gw.site1"), "gw-site1");
        assert_eq!(instance_name("  "), "coap-gateway");
        assert_eq!(instance_name("a\nb"), "a-b");
        let long = "ü".repeat(40); // 80 bytes
        let name = instance_name(&long);
        assert!(
            name.len() <= MAX_LABEL && name.chars().all(|c| c == 'ü'),
            "{name}"
        );
        assert_eq!(name.len(), 62, "cut on a character boundary");
    }

    #[test]
    fn replicas_get_names_of_their_own_that_keep_the_member() {
        assert_eq!(
            replica_names("test-gw", "a"),
            ("test-gw (a)".to_owned(), "test-gw-a.local.".to_owned())
        );
        assert_eq!(
            replica_names("Halle 3", "gw-b"),
            (
                "Halle 3 (gw-b)".to_owned(),
                "halle-3-gw-b.local.".to_owned()
            )
        );
        let (instance, host) = replica_names(&"x".repeat(80), "replica-7");
        assert!(
            instance.len() <= MAX_LABEL && instance.ends_with(" (replica-7)"),
            "{instance}"
        );
        let label = host.strip_suffix(".local.").unwrap();
        assert!(
            label.len() <= MAX_LABEL && label.ends_with("-replica-7"),
            "{host}"
        );
        assert_ne!(replica_names("gw", "a"), replica_names("gw", "b"));
    }

    #[test]
    fn further_ports_get_their_own_instance() {
        assert_eq!(instance_name_for_port("gw", 5684), "gw port 5684");
        let long = "x".repeat(63);
        let name = instance_name_for_port(&long, 65535);
        assert!(name.len() <= MAX_LABEL, "{name}");
        assert!(name.ends_with(" port 65535"));
    }

    #[test]
    fn host_names_are_dns_labels() {
        assert_eq!(host_name("test-gw"), "test-gw.local.");
        assert_eq!(
            host_name("Halle 3 / Gateway #1"),
            "halle-3-gateway-1.local."
        );
        assert_eq!(host_name("gw.site1"), "gw-site1.local.");
        assert_eq!(host_name("--"), "coap-gateway.local.");
        assert_eq!(host_name("äöü"), "coap-gateway.local.");
        let host = host_name(&"ab-".repeat(40));
        let label = host.strip_suffix(".local.").unwrap();
        assert!(label.len() <= MAX_LABEL && !label.ends_with('-'), "{host}");
    }

    #[test]
    fn further_address_sets_get_their_own_host() {
        assert_eq!(
            host_name_for_port("test-gw.local.", 5684),
            "test-gw-5684.local."
        );
        let host = host_name_for_port(&host_name(&"a".repeat(70)), 65535);
        let label = host.strip_suffix(".local.").unwrap();
        assert!(
            label.len() <= MAX_LABEL && label.ends_with("-65535"),
            "{host}"
        );
    }

    #[test]
    fn txt_names_the_rd_and_its_paths() {
        let txt = txt_records(false, None);
        let has =
            |txt: &[(&str, String)], k: &str, v: &str| txt.iter().any(|(a, b)| *a == k && b == v);
        assert_eq!(
            txt[0],
            ("txtvers", "1".to_owned()),
            "txtvers first (RFC 6763 §6.7)"
        );
        assert!(has(&txt, "rt", "core.rd"));
        assert!(has(&txt, "path", "/rd"));
        assert!(has(&txt, "ep-lookup", "/rd-lookup/ep"));
        assert!(has(&txt, "res-lkup", "/rd-lookup/res"));
        assert!(!txt.iter().any(|(k, _)| *k == "simple" || *k == "cluster"));
        assert!(has(&txt_records(true, None), "simple", "/.well-known/rd"));
        assert!(has(
            &txt_records(false, Some("site-a")),
            "cluster",
            "site-a"
        ));
        // RFC 6763 §6.1: each string at most 255 bytes; keys printable ASCII without '='.
        for (k, v) in txt_records(true, Some("site-a")) {
            assert!(k.len() + 1 + v.len() <= 255);
            assert!(k.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b'='));
            assert!(
                k.len() <= 9,
                "{k}: keys SHOULD be at most nine characters (§6.4)"
            );
        }
    }
}
