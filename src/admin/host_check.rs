//! Which `Host` headers the admin server answers: the defence against DNS
//! rebinding. A web page on `http://evil.example:8080` whose name the attacker re-points at
//! 127.0.0.1 makes the victim's browser send same-origin requests to the admin port, with
//! `Host: evil.example:8080`; without this check the page could read `/api/devices`.
//!
//! Accepted: any literal IP address (a rebinding needs a DNS name: a page whose origin is a
//! literal address is served by that address, so it can only be this server if the user
//! browsed to this server), `localhost`, and the names in `http.allowed_hosts`. The port is
//! not compared: the rebinding page uses the admin port too. A request without `Host` (an
//! HTTP/1.0 tool; browsers always send one) is accepted. Anything else gets 421 Misdirected
//! Request (RFC 9110 §15.5.20). Pure: the server wires it in as middleware.

use std::net::IpAddr;

/// The host names the admin server answers to, besides literal addresses and `localhost`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Lower case, without a trailing dot.
    names: Vec<String>,
}

impl AllowedHosts {
    /// From `http.allowed_hosts`.
    pub(crate) fn new<S: AsRef<str>>(names: &[S]) -> Self {
        AllowedHosts {
            names: names.iter().map(|n| normalise(n.as_ref())).collect(),
        }
    }

    /// Whether a request carrying `host` (the `Host` header's value, `None` when absent) may
    /// be answered.
    pub(crate) fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return true };
        let Some(name) = host_part(host.trim()) else {
            return false;
        };
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = normalise(name);
        name == "localhost" || self.names.contains(&name)
    }
}

fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The host of `host[:port]` or `[v6]:port`; `None` when malformed.
fn host_part(value: &str) -> Option<&str> {
    if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        return (after.is_empty() || after.strip_prefix(':').is_some_and(is_port))
            .then_some(inside);
    }
    match value.rsplit_once(':') {
        Some((name, port)) if is_port(port) && !name.contains(':') => Some(name),
        Some(_) => None,
        None => Some(value),
    }
    .filter(|name| !name.is_empty())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_localhost_always_pass() {
        let none = AllowedHosts::default();
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "[::1]",
            "192.168.1.5:8080",
            "localhost:8080",
            "LOCALHOST",
            "localhost.:8080",
        ] {
            assert!(none.allows(Some(ok)), "{ok}");
        }
        assert!(none.allows(None), "no Host: not a browser");
    }

    #[test]
    fn other_names_and_malformed_values_are_refused() {
        let none = AllowedHosts::default();
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "",
            ":8080",
            "[::1",
            "[::1]x",
            "a:b:c",
            "host:port",
        ] {
            assert!(!none.allows(Some(bad)), "{bad:?}");
        }
    }

    #[test]
    fn configured_names_pass_in_any_case() {
        let hosts = AllowedHosts::new(&["Gateway.Lan."]);
        assert!(hosts.allows(Some("gateway.lan:8080")));
        assert!(hosts.allows(Some("GATEWAY.LAN")));
        assert!(!hosts.allows(Some("gateway.lan.evil.example")));
    }
}
