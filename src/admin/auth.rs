//! Bearer-token authentication of the admin API (`http.token_file` or
//! `COAP_GATEWAY_HTTP_TOKEN`). Pure: [`AdminAuth`] judges an `Authorization` header value, and
//! `server` wires it in as middleware after the `Host` check.
//!
//! Open without the token, so that a health check, a browser and a load balancer need no
//! secret: `GET`/`HEAD /health`, and the status page's shell (`/` and `/status.js`), which
//! without the token is served with no device data (the page's script then asks for the
//! token). Everything else (the device API, `/metrics`, unknown paths, other methods) is 401
//! with `WWW-Authenticate: Bearer` (RFC 6750 §3).
//!
//! The comparison is our own [`constant_time_eq`], a dozen lines, instead of a new
//! dependency: its time depends only on the length of what the client sent, never on where
//! it first differs from the token.

use actix_web::http::header::{HeaderValue, WWW_AUTHENTICATE};
use actix_web::http::Method;
use actix_web::HttpResponse;

use crate::secret::Secret;

/// The admin token, when one is configured; `AdminAuth::default()` authorizes every request
/// (today's unauthenticated admin API).
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    token: Option<Secret>,
}

/// What a request's `Authorization` header amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No token is configured, or the request carries it.
    Allowed,
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token that is not the configured one (or a malformed header).
    Wrong,
}

impl AdminAuth {
    /// Require `token` (never empty: `config::http` refuses an empty one).
    pub fn new(token: Option<Secret>) -> Self {
        AdminAuth {
            token: token.filter(|t| !t.is_empty()),
        }
    }

    /// Whether a token is configured.
    pub(crate) fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Judge an `Authorization` header (`None` when absent).
    pub(crate) fn check(&self, authorization: Option<&HeaderValue>) -> Verdict {
        let Some(token) = &self.token else {
            return Verdict::Allowed;
        };
        let Some(value) = authorization else {
            return Verdict::Missing;
        };
        // RFC 6750 §2.1: `Bearer` (scheme case-insensitive, RFC 9110 §11.1), one space, token.
        let value = value.as_bytes();
        let presented = match value.split_at_checked(7) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest,
            _ if value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"bearer") => {
                return Verdict::Wrong
            }
            _ => return Verdict::Missing,
        };
        if constant_time_eq(presented, token.expose().as_bytes()) {
            Verdict::Allowed
        } else {
            Verdict::Wrong
        }
    }

    /// Whether `method path` is served without the token (see the module comment).
    pub(crate) fn is_open(method: &Method, path: &str) -> bool {
        (method == Method::GET || method == Method::HEAD)
            && (matches!(path, "/health" | "/") || super::pages::is_asset(path))
    }
}

/// 401 for `verdict` (`Missing` or `Wrong`), with the API's JSON error shape. The body never
/// echoes what the client sent.
pub(crate) fn unauthorized(verdict: Verdict) -> HttpResponse {
    let (challenge, error) = match verdict {
        Verdict::Wrong => (
            r#"Bearer realm="coap-gateway", error="invalid_token""#,
            "wrong admin token",
        ),
        _ => (
            r#"Bearer realm="coap-gateway""#,
            "this admin API needs its token: Authorization: Bearer <token>",
        ),
    };
    HttpResponse::Unauthorized()
        .insert_header((WWW_AUTHENTICATE, challenge))
        .json(serde_json::json!({ "error": error }))
}

/// Whether `presented == token`, in time that depends on `presented.len()` only: every byte
/// of `presented` is compared (against the token repeated), and the lengths are folded into the
/// same accumulator instead of returning early. `token` must not be empty.
pub(crate) fn constant_time_eq(presented: &[u8], token: &[u8]) -> bool {
    if token.is_empty() {
        return false;
    }
    let mut diff = u8::from(presented.len() != token.len());
    for (i, &b) in presented.iter().enumerate() {
        diff |= b ^ token[i % token.len()];
    }
    // Keep the optimizer from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(token: &str) -> AdminAuth {
        AdminAuth::new(Some(Secret::new(token)))
    }

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        for other in [
            &b""[..],
            b"s3cre",
            b"s3cret!",
            b"S3cret",
            b"s3cres",
            b"s3crets3cret",
        ] {
            assert!(!constant_time_eq(other, b"s3cret"), "{other:?}");
        }
        assert!(!constant_time_eq(b"", b""), "an empty token never matches");
    }

    #[test]
    fn only_the_configured_bearer_token_passes() {
        let a = auth("s3cret");
        assert_eq!(a.check(Some(&header("Bearer s3cret"))), Verdict::Allowed);
        assert_eq!(a.check(Some(&header("bearer s3cret"))), Verdict::Allowed);
        assert_eq!(a.check(None), Verdict::Missing);
        assert_eq!(a.check(Some(&header("Basic czNjcmV0"))), Verdict::Missing);
        assert_eq!(a.check(Some(&header("Bearer s3cre"))), Verdict::Wrong);
        assert_eq!(a.check(Some(&header("Bearer  s3cret"))), Verdict::Wrong);
        assert_eq!(a.check(Some(&header("Bearer"))), Verdict::Wrong);
        assert_eq!(a.check(Some(&header("s3cret"))), Verdict::Missing);
    }

    #[test]
    fn without_a_token_everything_passes() {
        let open = AdminAuth::default();
        assert!(!open.required());
        assert_eq!(open.check(None), Verdict::Allowed);
        assert!(!AdminAuth::new(Some(Secret::new(""))).required());
    }

    #[test]
    fn only_health_and_the_page_shell_are_open() {
        assert!(AdminAuth::is_open(&Method::GET, "/health"));
        assert!(AdminAuth::is_open(&Method::HEAD, "/health"));
        assert!(AdminAuth::is_open(&Method::GET, "/"));
        assert!(AdminAuth::is_open(&Method::GET, "/status.js"));
        assert!(!AdminAuth::is_open(&Method::POST, "/health"));
        for path in [
            "/metrics",
            "/api/devices",
            "/api/devices/x",
            "/api/events",
            "/nope",
            "/health/",
        ] {
            assert!(!AdminAuth::is_open(&Method::GET, path), "{path}");
        }
    }

    #[test]
    fn a_401_never_shows_the_token_and_challenges_bearer() {
        let resp = unauthorized(Verdict::Wrong);
        assert_eq!(resp.status(), 401);
        let challenge = resp.headers().get(WWW_AUTHENTICATE).unwrap();
        assert!(challenge.to_str().unwrap().starts_with("Bearer "));
    }
}
