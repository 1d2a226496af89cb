//! URI references: RFC 3986 §5.2 resolution against a base, and the shape checks the RD needs
//! (scheme present, path-absolute, usable registration base).
//!
//! Used by registration parsing (Limited Link Format, RFC 9176 App. C; `base` rules, §5) and by
//! resource lookup, which returns targets fully resolved and anchors resolved when present
//! (RFC 9176 §6.1). Link-format carries no percent-encoding (RFC 9176 App. B.4), so references
//! are handled as UTF-8 text; nothing is normalised beyond dot-segment removal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::BaseError;
use crate::host_addrs::{canonical, is_loopback_or_unspecified};
use link_format::Link;

/// The five components of a URI reference (RFC 3986 §3, split as in its Appendix B).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UriRef<'a> {
    pub scheme: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub fragment: Option<&'a str>,
}

/// The scheme of `s` if it starts with one: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"`
/// before any `/`, `?` or `#` (RFC 3986 §3.1).
fn scheme_of(s: &str) -> Option<&str> {
    let colon = s.find(':')?;
    let candidate = &s[..colon];
    let mut chars = candidate.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
        Some(candidate)
    } else {
        None
    }
}

impl<'a> UriRef<'a> {
    pub(crate) fn parse(s: &'a str) -> UriRef<'a> {
        let (s, fragment) = match s.split_once('#') {
            Some((rest, f)) => (rest, Some(f)),
            None => (s, None),
        };
        let (s, query) = match s.split_once('?') {
            Some((rest, q)) => (rest, Some(q)),
            None => (s, None),
        };
        let (scheme, s) = match scheme_of(s) {
            Some(scheme) => (Some(scheme), &s[scheme.len() + 1..]),
            None => (None, s),
        };
        let (authority, path) = match s.strip_prefix("//") {
            Some(rest) => {
                let end = rest.find('/').unwrap_or(rest.len());
                (Some(&rest[..end]), &rest[end..])
            }
            None => (None, s),
        };
        UriRef {
            scheme,
            authority,
            path,
            query,
            fragment,
        }
    }
}

/// Whether `s` is a full URI (starts with a scheme).
pub(crate) fn is_full_uri(s: &str) -> bool {
    scheme_of(s).is_some()
}

/// Whether `s` is a path-absolute reference: starts with a single `/` (not `//`). A query or
/// fragment after the path is tolerated (RFC 9176 App. C is about how the path resolves).
pub(crate) fn is_path_absolute(s: &str) -> bool {
    s.starts_with('/') && !s.starts_with("//")
}

/// RFC 3986 §5.2.4.
pub(crate) fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output: Vec<&str> = Vec::new();
    // Each output element is a segment *with* its leading '/', except possibly the first.
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            output.pop();
        } else if input == "/.." {
            input = "/";
            output.pop();
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..]
                .find('/')
                .map(|i| i + start)
                .unwrap_or(input.len());
            output.push(&input[..end]);
            input = &input[end..];
        }
    }
    output.concat()
}

/// RFC 3986 §5.2.3.
fn merge(base: &UriRef<'_>, reference_path: &str) -> String {
    if base.authority.is_some() && base.path.is_empty() {
        format!("/{reference_path}")
    } else {
        match base.path.rfind('/') {
            Some(i) => format!("{}{}", &base.path[..=i], reference_path),
            None => reference_path.to_string(),
        }
    }
}

fn recompose(
    scheme: Option<&str>,
    authority: Option<&str>,
    path: &str,
    query: Option<&str>,
    fragment: Option<&str>,
) -> String {
    let mut out = String::with_capacity(path.len() + 32);
    if let Some(s) = scheme {
        out.push_str(s);
        out.push(':');
    }
    if let Some(a) = authority {
        out.push_str("//");
        out.push_str(a);
    }
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Resolves `reference` against `base` (RFC 3986 §5.2.2, strict). A full URI comes back as
/// given (but with dot-segments removed); an empty reference gives the base without fragment.
pub(crate) fn resolve(base: &str, reference: &str) -> String {
    let r = UriRef::parse(reference);
    let b = UriRef::parse(base);
    if r.scheme.is_some() {
        if !reference.contains("/.") {
            // The common case of an absolute target: returned unmodified (RFC 9176 §6.1).
            return reference.to_string();
        }
        let path = remove_dot_segments(r.path);
        return recompose(r.scheme, r.authority, &path, r.query, r.fragment);
    }
    let (authority, path, query);
    if r.authority.is_some() {
        authority = r.authority;
        path = remove_dot_segments(r.path);
        query = r.query;
    } else {
        authority = b.authority;
        if r.path.is_empty() {
            path = b.path.to_string();
            query = r.query.or(b.query);
        } else {
            path = if r.path.starts_with('/') {
                remove_dot_segments(r.path)
            } else {
                remove_dot_segments(&merge(&b, r.path))
            };
            query = r.query;
        }
    }
    recompose(b.scheme, authority, &path, query, r.fragment)
}

/// The URI schemes a registration base may use: CoAP over every transport (RFC 7252, RFC 8323)
/// and HTTP, which RFC 9176 §5 mentions as an alternative registrant protocol.
pub(crate) const BASE_SCHEMES: &[&str] = &[
    "coap",
    "coaps",
    "coap+tcp",
    "coaps+tcp",
    "coap+ws",
    "coaps+ws",
    "http",
    "https",
];

/// Checks a `base` value (RFC 9176 §5): an absolute URI with a known scheme and an authority,
/// no query or fragment, no IPv6 zone identifier. A path is allowed (the RFC allows it, and
/// Limited Link Format references resolve the same with or without it).
pub(crate) fn validate_base(base: &str) -> Result<(), BaseError> {
    // Control characters, spaces, quotes and the like would be stored and rendered into every
    // lookup (found by the rd_query fuzzer: a NUL in a base broke endpoint lookups).
    if !base.bytes().all(is_uri_char) {
        return Err(BaseError::NotUriCharacter);
    }
    let u = UriRef::parse(base);
    let scheme = u.scheme.ok_or(BaseError::NoScheme)?;
    if !BASE_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(BaseError::UnsupportedScheme(scheme.to_string()));
    }
    let authority = u.authority.ok_or(BaseError::NoAuthority)?;
    if u.query.is_some() {
        return Err(BaseError::HasQuery);
    }
    if u.fragment.is_some() {
        return Err(BaseError::HasFragment);
    }
    // userinfo has no meaning for CoAP (RFC 7252 §6.1 forbids it) but is harmless to skip here.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let port = if let Some(rest) = host_port.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(BaseError::BadHost)?;
        if literal.contains('%') {
            return Err(BaseError::ZoneId);
        }
        if literal.parse::<Ipv6Addr>().is_err() && !literal.starts_with(['v', 'V']) {
            return Err(BaseError::BadHost);
        }
        match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(BaseError::BadHost)?),
        }
    } else {
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        };
        if host.is_empty() || host.contains(['[', ']', '%', ' ']) {
            return Err(BaseError::BadHost);
        }
        port
    };
    if let Some(p) = port {
        // An empty port is allowed by RFC 3986 §3.2.3 and means the default.
        if !p.is_empty() && (!p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err()) {
            return Err(BaseError::BadPort);
        }
    }
    Ok(())
}

/// RFC 3986 §2: unreserved, reserved and `%` (percent-encoding) are the only characters of a
/// URI.
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

/// The IP literal of a URI's host, if it is one (`[v6]` or dotted IPv4).
fn host_ip(uri: &str) -> Option<IpAddr> {
    let authority = UriRef::parse(uri).authority?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if let Some(rest) = host_port.strip_prefix('[') {
        let literal = rest.split_once(']')?.0;
        let literal = literal
            .split_once('%')
            .map_or(literal, |(addr, _zone)| addr);
        return literal.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Whether an address is link-local: fe80::/10 or 169.254.0.0/16 (an IPv4-mapped IPv6 source
/// counts as its IPv4 address).
pub(crate) fn is_link_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_link_local(),
            None => (v6.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

/// Whether a base URI's host is a link-local IP literal (RFC 9176 §5, §6.1, §6.4 restrict those).
pub(crate) fn is_link_local_base(base: &str) -> bool {
    host_ip(base).is_some_and(is_link_local_ip)
}

/// RFC 9176 §5: a link-local base "MUST be local to the link on which the registration request
/// is received". The RD cannot see the base's link, so it requires the request itself to come
/// from a link-local address: a registrant (or CT) that reached us from afar cannot vouch for a
/// link-local address on our links.
pub(crate) fn check_link_local_base(base: &str, source: SocketAddr) -> Result<(), BaseError> {
    if is_link_local_base(base) && !is_link_local_ip(source.ip()) {
        return Err(BaseError::LinkLocalFromAfar);
    }
    Ok(())
}

/// Whether the gateway may send to `target` for a registration made from `registrant` (the
/// foreign-base rule): a target on the gateway's own host (loopback, unspecified, or an address
/// `is_own` reports, see `host_addrs`) only for a registrant on that host too. Anything else
/// (another LAN host, the registrant itself) is allowed. `is_own` is asked only when the answer
/// depends on it, so the common case (a device that names itself) costs no interface read.
pub(crate) fn may_target(
    target: IpAddr,
    registrant: IpAddr,
    is_own: impl Fn(IpAddr) -> bool,
) -> bool {
    let (target, registrant) = (canonical(target), canonical(registrant));
    if target == registrant || is_loopback_or_unspecified(registrant) {
        return true;
    }
    if is_loopback_or_unspecified(target) {
        return is_own(registrant);
    }
    !is_own(target) || is_own(registrant)
}

/// [`may_target`] with the host's real addresses: what the Executer, Observer and Pinger ask
/// before sending to a stored registration's base (one stored by an older version may name
/// the host).
pub(crate) fn gateway_may_contact(target: IpAddr, registrant: IpAddr) -> bool {
    may_target(target, registrant, crate::host_addrs::is_own)
}

/// RFC 6761 §6.3: `localhost` and names under it are the loopback host.
fn is_localhost_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// The host of a URI's authority as written (brackets kept), without userinfo and port.
fn host_text(uri: &str) -> Option<&str> {
    let authority = UriRef::parse(uri).authority?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.starts_with('[') {
        return host_port
            .split_once(']')
            .map(|(h, _)| &host_port[..=h.len()]);
    }
    Some(host_port.rsplit_once(':').map_or(host_port, |(h, _)| h))
}

/// A base must not turn the gateway against its own host. A registrant on
/// the LAN that names loopback (127.0.0.0/8, `::1`, `::ffff:127.0.0.1`), an unspecified
/// address (`0.0.0.0`, `::`), one of the gateway's own addresses or a `localhost` name would
/// make the Observer stream a loopback-only service's data to the platform and the Executer
/// carry platform commands to it. Only a registrant on the gateway's host (its source is
/// loopback or one of the host's addresses) may name the host. Other host names are stored
/// as given: the gateway never resolves them (Pinger, Observer and Executer need an IP
/// literal), so they cannot reach the host through it.
pub(crate) fn check_self_base(
    base: &str,
    source: SocketAddr,
    is_own: impl Fn(IpAddr) -> bool,
) -> Result<(), BaseError> {
    let allowed = match host_ip(base) {
        Some(ip) => may_target(ip, source.ip(), is_own),
        None => match host_text(base) {
            Some(name) if is_localhost_name(name) => {
                is_loopback_or_unspecified(source.ip()) || is_own(canonical(source.ip()))
            }
            _ => true,
        },
    };
    if allowed {
        Ok(())
    } else {
        Err(BaseError::NamesGatewayHost)
    }
}

/// The path of a reference given either path-absolute or as a full URI (RFC 9176 §6.2: endpoint
/// `href` queries SHOULD be path-absolute, the RD SHOULD recognise either form).
pub(crate) fn path_of(reference: &str) -> &str {
    if is_full_uri(reference) {
        UriRef::parse(reference).path
    } else {
        reference
    }
}

/// A registered link's target, fully resolved (RFC 9176 §6.1). When the link has an anchor the
/// target is resolved against the resolved anchor (RFC 6690 §2.1); Limited Link Format (App. C)
/// guarantees that this gives the same URI as resolving against the base (RFC 8288 App. B.2).
pub(crate) fn resolved_target(base: &str, link: &Link) -> String {
    match link.anchor() {
        Some(anchor) if !is_full_uri(&link.target) => resolve(&resolve(base, anchor), &link.target),
        _ => resolve(base, &link.target),
    }
}

/// A registered link's anchor resolved against the base, or `None` when it had none: links
/// registered without an anchor are returned without one (RFC 9176 §6.1).
#[cfg(test)]
pub(crate) fn resolved_anchor(base: &str, link: &Link) -> Option<String> {
    link.anchor().map(|a| resolve(base, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3986 §5.4.1 and §5.4.2, verbatim.
    #[test]
    fn rfc_3986_examples() {
        let base = "http://a/b/c/d;p?q";
        let cases = [
            ("g:h", "g:h"),
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"),
            ("g#s", "http://a/b/c/g#s"),
            ("g?y#s", "http://a/b/c/g?y#s"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("g;x?y#s", "http://a/b/c/g;x?y#s"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("g#s/./x", "http://a/b/c/g#s/./x"),
            ("g#s/../x", "http://a/b/c/g#s/../x"),
        ];
        for (reference, expected) in cases {
            assert_eq!(
                resolve(base, reference),
                expected,
                "reference {reference:?}"
            );
        }
    }

    #[test]
    fn coap_bases_without_path() {
        let base = "coap://[2001:db8:3::123]:61616";
        assert_eq!(
            resolve(base, "/temp"),
            "coap://[2001:db8:3::123]:61616/temp"
        );
        assert_eq!(resolve(base, ""), base);
        assert_eq!(resolve(base, "x"), "coap://[2001:db8:3::123]:61616/x");
        assert_eq!(
            resolve(base, "http://www.example.com/sensors/t123"),
            "http://www.example.com/sensors/t123"
        );
        // RFC 9176 App. B: the target resolved against a resolved anchor on the same origin.
        assert_eq!(
            resolve("coap://[2001:db8:f0::1]/sensors/temp", "/t"),
            "coap://[2001:db8:f0::1]/t"
        );
    }

    #[test]
    fn link_resolution_per_rfc_9176_section_6_1() {
        let base = "coap://[2001:db8:3::101]";
        let plain = Link::new("/sensors/temp").with("rt", Some("temperature-c"));
        assert_eq!(
            resolved_target(base, &plain),
            "coap://[2001:db8:3::101]/sensors/temp"
        );
        assert_eq!(resolved_anchor(base, &plain), None);
        let described = Link::new("http://www.example.com/sensors/t123")
            .with("anchor", Some("/sensors/temp"))
            .with("rel", Some("describedby"));
        assert_eq!(
            resolved_target(base, &described),
            "http://www.example.com/sensors/t123"
        );
        assert_eq!(
            resolved_anchor(base, &described).as_deref(),
            Some("coap://[2001:db8:3::101]/sensors/temp")
        );
        let alternate = Link::new("/t").with("anchor", Some("/sensors/temp"));
        assert_eq!(
            resolved_target(base, &alternate),
            "coap://[2001:db8:3::101]/t"
        );
        let empty_anchor = Link::new("/t").with("anchor", Some(""));
        assert_eq!(resolved_anchor(base, &empty_anchor).as_deref(), Some(base));
    }

    #[test]
    fn uri_and_path_shapes() {
        assert!(is_full_uri("coap://x/y"));
        assert!(is_full_uri("urn:uuid:1"));
        assert!(!is_full_uri("/a:b"));
        assert!(!is_full_uri("1a:b"));
        assert!(is_path_absolute("/sensors/temp"));
        assert!(!is_path_absolute("//host/x"));
        assert!(!is_path_absolute("sensors/x"));
        assert!(!is_path_absolute("../x"));
        assert!(!is_path_absolute(""));
        assert_eq!(path_of("coap://rd.example/reg/1"), "/reg/1");
        assert_eq!(path_of("/reg/1"), "/reg/1");
    }

    #[test]
    fn valid_bases() {
        for ok in [
            "coap://[2001:db8::1]",
            "coap://[2001:db8::1]:61616",
            "coaps://new.example.com:5684",
            "coap+tcp://simple-host1.example.com",
            "coap://192.0.2.1:5683",
            "http://[2001:db8:1::1]",
            "coap://[ff35:30:2001:db8:f1::8000:1]",
            "coap://h/",
            "coap://h:",
        ] {
            assert_eq!(validate_base(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn link_local_bases() {
        assert!(is_link_local_base("coap://[fe80::1]:5683"));
        assert!(is_link_local_base("coap://[FE80::abcd]"));
        assert!(is_link_local_base("coap://169.254.1.2"));
        assert!(!is_link_local_base("coap://[2001:db8::1]"));
        assert!(!is_link_local_base("coap://[ff02::1]"));
        assert!(!is_link_local_base("coap://fe80.example"));
        let far: SocketAddr = "[2001:db8::9]:5683".parse().unwrap();
        let near: SocketAddr = "[fe80::9%2]:5683".parse().unwrap();
        assert_eq!(
            check_link_local_base("coap://[fe80::1]", far),
            Err(BaseError::LinkLocalFromAfar)
        );
        assert_eq!(check_link_local_base("coap://[fe80::1]", near), Ok(()));
        assert_eq!(check_link_local_base("coap://[2001:db8::1]", far), Ok(()));
        assert!(is_link_local_ip(
            "[::ffff:169.254.0.1]:1".parse::<SocketAddr>().unwrap().ip()
        ));
    }

    /// The gateway's host, in every form, only for a registrant on it.
    #[test]
    fn bases_naming_the_gateway_host() {
        let own = |ip: IpAddr| {
            is_loopback_or_unspecified(ip)
                || ip == "10.77.0.1".parse::<IpAddr>().unwrap()
                || ip == "fd77::1".parse::<IpAddr>().unwrap()
        };
        let lan: SocketAddr = "10.77.0.2:40000".parse().unwrap();
        let lan6: SocketAddr = "[fd77::2]:40000".parse().unwrap();
        for base in [
            "coap://127.0.0.1:5800",
            "coap://127.9.9.9",
            "coap://0.0.0.0:5800",
            "coap://[::1]:5800",
            "coap://[::]:5800",
            "coap://[::ffff:127.0.0.1]:5800",
            "coap://[::ffff:10.77.0.1]",
            "coap://10.77.0.1:5800",
            "coap://[fd77::1]:5683",
            "coap://localhost:5800",
            "coap://LocalHost.:5800",
            "coap://x.localhost",
            "http://u@127.0.0.1:8080/admin",
        ] {
            for source in [lan, lan6] {
                assert_eq!(
                    check_self_base(base, source, own),
                    Err(BaseError::NamesGatewayHost),
                    "{base} from {source}"
                );
            }
            // From the host itself (loopback, or one of its own addresses): allowed.
            for source in ["127.0.0.1:1", "127.0.0.2:1", "[::1]:1", "10.77.0.1:1"] {
                let source: SocketAddr = source.parse().unwrap();
                assert_eq!(check_self_base(base, source, own), Ok(()), "{base}");
            }
        }
        for base in [
            "coap://10.77.0.2:40000",
            "coap://10.77.0.9",
            "coap://[fd77::2]:5683",
            "coap://[2001:db8::1]",
            "coap://sensor.example",
            "coap://localhost.example",
            "coap://[ff05::fd]",
        ] {
            assert_eq!(check_self_base(base, lan, own), Ok(()), "{base}");
        }
    }

    #[test]
    fn the_interface_list_is_read_only_when_it_decides() {
        let asked = std::cell::Cell::new(0);
        let own = |_: IpAddr| {
            asked.set(asked.get() + 1);
            false
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(may_target(ip("10.0.0.2"), ip("10.0.0.2"), own));
        assert!(may_target(ip("127.0.0.1"), ip("127.0.0.1"), own));
        assert!(may_target(ip("10.0.0.9"), ip("::1"), own));
        assert_eq!(asked.get(), 0);
        assert!(!may_target(ip("127.0.0.1"), ip("10.0.0.2"), own));
        assert!(may_target(ip("10.0.0.9"), ip("10.0.0.2"), own));
    }

    #[test]
    fn invalid_bases() {
        let cases = [
            ("/rd", BaseError::NoScheme),
            ("[::1]:5683", BaseError::NoScheme),
            ("ftp://h", BaseError::UnsupportedScheme("ftp".into())),
            ("coap:/x", BaseError::NoAuthority),
            ("coap://h?x=1", BaseError::HasQuery),
            ("coap://h#f", BaseError::HasFragment),
            ("coap://[fe80::1%25eth0]", BaseError::ZoneId),
            ("coap://[fe80::1%eth0]:5683", BaseError::ZoneId),
            ("coap://[zz::1]", BaseError::BadHost),
            ("coap://[::1", BaseError::BadHost),
            ("coap://", BaseError::BadHost),
            ("coap://h:99999", BaseError::BadPort),
            ("coap://h:x1", BaseError::BadPort),
            // Found by the rd_query fuzzer: a NUL reached every endpoint lookup.
            ("coap://`g\0\0/", BaseError::NotUriCharacter),
            ("coap://h/a b", BaseError::NotUriCharacter),
            ("coap://h/\"x\"", BaseError::NotUriCharacter),
            ("coap://h\n", BaseError::NotUriCharacter),
        ];
        for (base, err) in cases {
            assert_eq!(validate_base(base), Err(err), "{base}");
        }
    }
}
