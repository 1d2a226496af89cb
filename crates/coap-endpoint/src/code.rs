//! CoAP message codes (RFC 7252 §3 and §12.1) and request methods (RFC 7252 §5.8, RFC 8132).
//!
//! A [`Code`] is the raw `class.detail` byte so that unassigned codes round-trip instead of
//! failing; [`Method`] is the closed set of request methods the endpoint dispatches on.

use std::fmt;

/// A CoAP code byte: `class << 5 | detail`, printed as `c.dd` (e.g. `2.05`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

const fn code(class: u8, detail: u8) -> Code {
    Code(class << 5 | detail)
}

impl Code {
    pub const EMPTY: Code = code(0, 0);
    pub const GET: Code = code(0, 1);
    pub const POST: Code = code(0, 2);
    pub const PUT: Code = code(0, 3);
    pub const DELETE: Code = code(0, 4);
    pub const FETCH: Code = code(0, 5);
    pub const PATCH: Code = code(0, 6);
    pub const IPATCH: Code = code(0, 7);

    pub const CREATED: Code = code(2, 1);
    pub const DELETED: Code = code(2, 2);
    pub const VALID: Code = code(2, 3);
    pub const CHANGED: Code = code(2, 4);
    pub const CONTENT: Code = code(2, 5);
    /// 2.31, RFC 7959 §2.9.1.
    pub const CONTINUE: Code = code(2, 31);

    pub const BAD_REQUEST: Code = code(4, 0);
    pub const UNAUTHORIZED: Code = code(4, 1);
    pub const BAD_OPTION: Code = code(4, 2);
    pub const FORBIDDEN: Code = code(4, 3);
    pub const NOT_FOUND: Code = code(4, 4);
    pub const METHOD_NOT_ALLOWED: Code = code(4, 5);
    pub const NOT_ACCEPTABLE: Code = code(4, 6);
    /// 4.08, RFC 7959 §2.9.2.
    pub const REQUEST_ENTITY_INCOMPLETE: Code = code(4, 8);
    /// 4.09, RFC 8132 §2.3.3.
    pub const CONFLICT: Code = code(4, 9);
    pub const PRECONDITION_FAILED: Code = code(4, 12);
    pub const REQUEST_ENTITY_TOO_LARGE: Code = code(4, 13);
    pub const UNSUPPORTED_CONTENT_FORMAT: Code = code(4, 15);
    /// 4.29, RFC 8516.
    pub const TOO_MANY_REQUESTS: Code = code(4, 29);

    pub const INTERNAL_SERVER_ERROR: Code = code(5, 0);
    pub const NOT_IMPLEMENTED: Code = code(5, 1);
    pub const BAD_GATEWAY: Code = code(5, 2);
    pub const SERVICE_UNAVAILABLE: Code = code(5, 3);
    pub const GATEWAY_TIMEOUT: Code = code(5, 4);

    pub fn class(self) -> u8 {
        self.0 >> 5
    }
    pub fn detail(self) -> u8 {
        self.0 & 0x1f
    }
    /// 2.xx.
    pub fn is_success(self) -> bool {
        self.class() == 2
    }
    pub fn is_request(self) -> bool {
        self.class() == 0 && self.0 != 0
    }
    pub fn is_response(self) -> bool {
        matches!(self.class(), 2 | 4 | 5)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({self})")
    }
}

/// Request methods: RFC 7252 §5.8 plus FETCH/PATCH/iPATCH (RFC 8132).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Fetch,
    Patch,
    IPatch,
}

impl Method {
    pub fn code(self) -> Code {
        match self {
            Method::Get => Code::GET,
            Method::Post => Code::POST,
            Method::Put => Code::PUT,
            Method::Delete => Code::DELETE,
            Method::Fetch => Code::FETCH,
            Method::Patch => Code::PATCH,
            Method::IPatch => Code::IPATCH,
        }
    }

    /// `None` for codes that are not (known) methods.
    pub fn from_code(code: Code) -> Option<Method> {
        Some(match code {
            Code::GET => Method::Get,
            Code::POST => Method::Post,
            Code::PUT => Method::Put,
            Code::DELETE => Method::Delete,
            Code::FETCH => Method::Fetch,
            Code::PATCH => Method::Patch,
            Code::IPATCH => Method::IPatch,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_as_class_dot_detail() {
        assert_eq!(Code::CONTENT.to_string(), "2.05");
        assert_eq!(Code::CONTINUE.to_string(), "2.31");
        assert_eq!(Code::TOO_MANY_REQUESTS.to_string(), "4.29");
        assert_eq!(Code::GATEWAY_TIMEOUT.to_string(), "5.04");
        assert_eq!(Code::CONTENT.0, 0x45);
        assert_eq!(Code::TOO_MANY_REQUESTS.0, 0x9d);
    }

    #[test]
    fn classes_and_methods() {
        assert!(Code::CHANGED.is_success());
        assert!(!Code::NOT_FOUND.is_success());
        assert_eq!(Code::NOT_FOUND.class(), 4);
        assert_eq!(Code::NOT_FOUND.detail(), 4);
        for m in [
            Method::Get,
            Method::Post,
            Method::Put,
            Method::Delete,
            Method::Fetch,
            Method::Patch,
            Method::IPatch,
        ] {
            assert_eq!(Method::from_code(m.code()), Some(m));
        }
        assert_eq!(Method::from_code(Code(0x08)), None);
    }
}
