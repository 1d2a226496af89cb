//! From a platform `command` (docs/platform-protocol.md) to the CoAP request the gateway
//! sends: choosing the registration, validating the fields, resolving the path against the
//! registration's base (RFC 3986 §5.2 as for a link target, RFC 6690 §2.1), and mapping the
//! method (RFC 7252 §5.8, RFC 8132).
//!
//! Called by the Executer actor for every command. Pure: no actix, no sockets, no clock.
//! Every refusal is a [`CommandRefusal`] carrying the `command_result.error.kind` and a message
//! that names the offending field, so the platform can fix its command.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::coap::{ClientRequest, Method};
use crate::pinger::ping_target;
use crate::platform::protocol::{Command, CommandErrorKind, CommandMethod};
use crate::registry::{EndpointName, Registration, Sector};

/// Why a command is answered with an error instead of a CoAP request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub(crate) struct CommandRefusal {
    pub kind: CommandErrorKind,
    pub message: String,
}

impl CommandRefusal {
    fn bad(message: impl Into<String>) -> Self {
        CommandRefusal {
            kind: CommandErrorKind::BadCommand,
            message: message.into(),
        }
    }
}

/// The device's name as the registry keys it, validated. `d: None` is the registration
/// without a sector: a command names exactly one `ep`+`d`, never "whichever sector".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceKey {
    pub ep: EndpointName,
    pub d: Option<Sector>,
}

/// Validate the `ep` and `d` of a command. An absent `d`, `"d": null` and `"d": ""` all name
/// the registration without a sector: a default that meant "the only sector
/// the name has" could be blocked by anyone registering the name in a second sector, or
/// redirected by anyone registering it without one.
pub(crate) fn device_key(command: &Command) -> Result<DeviceKey, CommandRefusal> {
    let ep = EndpointName::new(command.ep.clone())
        .map_err(|e| CommandRefusal::bad(format!("invalid \"ep\": {e}")))?;
    let d = match command.d.as_deref() {
        None | Some("") => None,
        Some(d) => {
            Some(Sector::new(d).map_err(|e| CommandRefusal::bad(format!("invalid \"d\": {e}")))?)
        }
    };
    Ok(DeviceKey { ep, d })
}

/// The registration a command addresses: `exact`, the live lookup by `ep`+`d`. When there is
/// none, `elsewhere` (the live registrations of `ep` in any sector) only makes the refusal
/// say which sectors the name does have, so the platform can name one.
pub(crate) fn choose_registration(
    key: &DeviceKey,
    exact: Option<Arc<Registration>>,
    elsewhere: impl FnOnce() -> Vec<Arc<Registration>>,
) -> Result<Arc<Registration>, CommandRefusal> {
    if let Some(found) = exact {
        return Ok(found);
    }
    let mut message = match &key.d {
        Some(d) => format!(
            "no registration for ep {:?} in d {:?}",
            key.ep.as_str(),
            d.as_str()
        ),
        None => format!(
            "no registration for ep {:?} without a sector",
            key.ep.as_str()
        ),
    };
    let sectors: Vec<String> = elsewhere()
        .iter()
        .map(|r| match &r.d {
            Some(d) => format!("{:?}", d.as_str()),
            None => "\"\" (no sector)".to_string(),
        })
        .collect();
    if !sectors.is_empty() {
        message.push_str(&format!(
            "; it is registered with d {}: name one with \"d\"",
            sectors.join(", ")
        ));
    }
    Err(CommandRefusal {
        kind: CommandErrorKind::UnknownDevice,
        message,
    })
}

/// What to send, and where.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub peer: SocketAddr,
    pub request: ClientRequest,
    /// The overall budget, retransmissions and every block included.
    pub budget: Duration,
}

/// Build the request for `command` against `base` (the registration's `coap://` base).
/// `default_timeout` applies when the command has no `timeout_ms`.
pub(crate) fn plan(
    command: &Command,
    base: &str,
    default_timeout: Duration,
) -> Result<Plan, CommandRefusal> {
    let path = resolve_path(&command.path)?;
    let payload = command
        .payload_bytes()
        .map_err(|e| CommandRefusal::bad(format!("invalid \"payload\": {e}")))?;
    let budget = match command.timeout_ms {
        Some(0) => return Err(CommandRefusal::bad("\"timeout_ms\" must be at least 1")),
        Some(ms) => Duration::from_millis(ms),
        None => default_timeout,
    };
    // The base comes from the device's registration, not from the command: a base we cannot
    // reach is a transport problem, not a malformed command.
    let peer = ping_target(base).map_err(|e| CommandRefusal {
        kind: CommandErrorKind::CoapError,
        message: format!("device cannot be addressed: {e}"),
    })?;
    let mut request = ClientRequest::new(method(command.method), &path);
    request.query = query_items(command.query.as_deref());
    request.payload = payload;
    request.content_format = command.content_format;
    request.accept = command.accept;
    request.confirmable = command.confirmable;
    request.timeout = Some(budget);
    Ok(Plan {
        peer,
        request,
        budget,
    })
}

/// The CoAP method of a command method.
pub(crate) fn method(m: CommandMethod) -> Method {
    match m {
        CommandMethod::Get => Method::Get,
        CommandMethod::Post => Method::Post,
        CommandMethod::Put => Method::Put,
        CommandMethod::Delete => Method::Delete,
        CommandMethod::Fetch => Method::Fetch,
        CommandMethod::Patch => Method::Patch,
        CommandMethod::IPatch => Method::IPatch,
    }
}

/// The command's path as the request's path: it must be absolute (so it replaces whatever
/// path the base has, RFC 3986 §5.2.2), carry no query or fragment, and `.`/`..` segments
/// are removed (RFC 3986 §5.2.4) so the device never sees them as Uri-Path options.
pub(crate) fn resolve_path(path: &str) -> Result<String, CommandRefusal> {
    if path.is_empty() {
        return Err(CommandRefusal::bad(
            "\"path\" is empty; it must start with '/'",
        ));
    }
    if !path.starts_with('/') {
        return Err(CommandRefusal::bad(format!(
            "\"path\" {path:?} is not absolute; it must start with '/'"
        )));
    }
    if path.starts_with("//") {
        return Err(CommandRefusal::bad(format!(
            "\"path\" {path:?} starts with \"//\" (an authority); give a path only"
        )));
    }
    if let Some(c) = path
        .chars()
        .find(|c| matches!(c, '?' | '#') || c.is_control())
    {
        return Err(CommandRefusal::bad(format!(
            "\"path\" {path:?} contains {c:?}; put a query in \"query\""
        )));
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/').skip(1) {
        match seg {
            "." | "" => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// `a=1&b=2` as Uri-Query items; empty items are dropped.
pub(crate) fn query_items(query: Option<&str>) -> Vec<String> {
    query
        .map(|q| {
            q.split('&')
                .filter(|item| !item.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::protocol::PayloadEncoding;

    fn command(path: &str) -> Command {
        Command {
            id: "c1".into(),
            ep: "node1".into(),
            d: None,
            method: CommandMethod::Get,
            path: path.into(),
            query: None,
            payload: None,
            payload_encoding: None,
            content_format: None,
            accept: None,
            confirmable: true,
            timeout_ms: None,
        }
    }

    const DEFAULT: Duration = Duration::from_secs(10);

    #[test]
    fn get_against_a_base_with_port() {
        let p = plan(&command("/sensors/temp"), "coap://127.0.0.1:40001", DEFAULT).unwrap();
        assert_eq!(p.peer, "127.0.0.1:40001".parse().unwrap());
        assert_eq!(p.request.method, Method::Get);
        assert_eq!(p.request.path, "/sensors/temp");
        assert!(p.request.confirmable);
        assert_eq!(p.budget, DEFAULT);
        assert_eq!(p.request.timeout, Some(DEFAULT));
    }

    #[test]
    fn absolute_path_replaces_the_base_path() {
        let p = plan(&command("/a/b"), "coap://[::1]:5000/prefix/x", DEFAULT).unwrap();
        assert_eq!(p.peer, "[::1]:5000".parse().unwrap());
        assert_eq!(p.request.path, "/a/b");
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(resolve_path("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(resolve_path("/../..").unwrap(), "/");
        assert_eq!(resolve_path("/").unwrap(), "/");
    }

    #[test]
    fn relative_empty_and_query_paths_are_bad_commands() {
        for path in ["", "sensors/temp", "//host/x", "/a?b=1", "/a#f", "/a\nb"] {
            let err = plan(&command(path), "coap://127.0.0.1:1", DEFAULT).unwrap_err();
            assert_eq!(err.kind, CommandErrorKind::BadCommand, "{path:?}");
            assert!(err.message.contains("path"), "{}", err.message);
        }
    }

    #[test]
    fn fields_are_carried_over() {
        let mut c = command("/actuators/led");
        c.method = CommandMethod::IPatch;
        c.query = Some("a=1&&b=2".into());
        c.payload = Some("AAH/".into());
        c.payload_encoding = Some(PayloadEncoding::Base64);
        c.content_format = Some(60);
        c.accept = Some(65535);
        c.confirmable = false;
        c.timeout_ms = Some(500);
        let p = plan(&c, "coap://10.0.0.1", DEFAULT).unwrap();
        assert_eq!(p.peer, "10.0.0.1:5683".parse().unwrap());
        assert_eq!(p.request.method, Method::IPatch);
        assert_eq!(p.request.query, vec!["a=1", "b=2"]);
        assert_eq!(p.request.payload, vec![0, 1, 0xff]);
        assert_eq!(p.request.content_format, Some(60));
        assert_eq!(p.request.accept, Some(65535));
        assert!(!p.request.confirmable);
        assert_eq!(p.budget, Duration::from_millis(500));
    }

    #[test]
    fn invalid_base64_is_a_bad_command() {
        let mut c = command("/x");
        c.payload = Some("not base64!".into());
        c.payload_encoding = Some(PayloadEncoding::Base64);
        let err = plan(&c, "coap://127.0.0.1:1", DEFAULT).unwrap_err();
        assert_eq!(err.kind, CommandErrorKind::BadCommand);
        assert!(err.message.contains("payload"), "{}", err.message);
    }

    #[test]
    fn zero_timeout_is_a_bad_command() {
        let mut c = command("/x");
        c.timeout_ms = Some(0);
        let err = plan(&c, "coap://127.0.0.1:1", DEFAULT).unwrap_err();
        assert_eq!(err.kind, CommandErrorKind::BadCommand);
    }

    #[test]
    fn unreachable_base_is_a_coap_error() {
        let err = plan(&command("/x"), "coap://example.org", DEFAULT).unwrap_err();
        assert_eq!(err.kind, CommandErrorKind::CoapError);
    }

    #[test]
    fn every_method_maps() {
        assert_eq!(method(CommandMethod::Post), Method::Post);
        assert_eq!(method(CommandMethod::Put), Method::Put);
        assert_eq!(method(CommandMethod::Delete), Method::Delete);
        assert_eq!(method(CommandMethod::Fetch), Method::Fetch);
        assert_eq!(method(CommandMethod::Patch), Method::Patch);
    }

    #[test]
    fn device_key_validates_names() {
        let mut c = command("/x");
        c.ep = String::new();
        assert_eq!(
            device_key(&c).unwrap_err().kind,
            CommandErrorKind::BadCommand
        );
        c.ep = "node1".into();
        c.d = Some("floor1".into());
        let key = device_key(&c).unwrap();
        assert_eq!(key.d.unwrap().as_str(), "floor1");
    }

    #[test]
    fn without_d_only_the_registration_without_a_sector_is_addressed() {
        let key = device_key(&command("/x")).unwrap();
        assert_eq!(key.d, None);
        let mut empty = command("/x");
        empty.d = Some(String::new());
        assert_eq!(device_key(&empty).unwrap(), key, "\"d\": \"\" is no sector");
        let none = choose_registration(&key, None, Vec::new).unwrap_err();
        assert_eq!(none.kind, CommandErrorKind::UnknownDevice);
        let reg = |d: Option<&str>| {
            let mut r = crate::device_object::tests::registration("node1");
            r.d = d.map(|d| Sector::new(d).unwrap());
            Arc::new(r)
        };
        // Other sectors never stand in for the missing one; they are named in the refusal.
        let elsewhere =
            choose_registration(&key, None, || vec![reg(Some("a")), reg(Some("b"))]).unwrap_err();
        assert_eq!(elsewhere.kind, CommandErrorKind::UnknownDevice);
        assert!(
            elsewhere.message.contains("\"a\", \"b\""),
            "{}",
            elsewhere.message
        );
        let found = choose_registration(&key, Some(reg(None)), || unreachable!()).unwrap();
        assert_eq!(found.d, None);
    }

    #[test]
    fn lookup_with_d_uses_the_exact_match() {
        let mut c = command("/x");
        c.d = Some("b".into());
        let key = device_key(&c).unwrap();
        let err = choose_registration(&key, None, Vec::new).unwrap_err();
        assert_eq!(err.kind, CommandErrorKind::UnknownDevice);
        assert!(err.message.contains("\"b\""));
    }
}
