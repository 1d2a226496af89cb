//! RFC 6690 §2 serializer: links back to `application/link-format` text.
//!
//! For lookup results and `/.well-known/core` replies. Output has no whitespace:
//! `<target>;name;name=value` with links joined by `,`.
//!
//! Quoting policy, chosen for interoperability rather than brevity:
//! - `anchor`, `title`, `rt`, `if`, `rel`, `rev` are always quoted. RFC 6690 requires it for
//!   `anchor` and `title`; for the relation-type lists it is valid in every case, is how the
//!   RFC 6690 and RFC 9176 examples write them, and spares checking the `relation-type` syntax.
//! - Any other value is bare only when it is a non-empty RFC 7230 `token` (ALPHA, DIGIT and
//!   ``!#$%&'*+-.^_`|~``), a subset of RFC 6690 `ptoken`. Parsers built on HTTP Link-header
//!   code (aiocoap's `link_header`, for one) reject bare values with `:` `/` `[` `?` `=` …, so
//!   `base="coap://[::1]"` and `ct="40 41"` are quoted while `ct=40`, `ep=node1`, `sz=512`,
//!   `hreflang=en` (which must be bare) and `title*=UTF-8'de'%c3%a4` stay bare.
//! - A quoted value escapes `"` and `\` with a backslash and nothing else.
//!
//! The target and parameter names are written as they are: they cannot be escaped in
//! link-format. Links returned by [`crate::parse`] always serialize to text that parses back to
//! the same links; a hand-built link whose target holds `>` or whitespace, whose name is not a
//! `parmname`, or whose value holds a control character other than HTAB does not.

use crate::Link;

/// Parameters written as a quoted-string whatever their value.
const ALWAYS_QUOTED: [&str; 6] = ["anchor", "title", "rt", "if", "rel", "rev"];

/// Serializes links as one link-format document (empty string for no links).
pub fn serialize(links: &[Link]) -> String {
    let mut out = String::new();
    for (index, link) in links.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_link(&mut out, link);
    }
    out
}

/// Appends one link (no separator) to `out`, for callers that build documents incrementally.
pub fn write_link(out: &mut String, link: &Link) {
    out.push('<');
    out.push_str(&link.target);
    out.push('>');
    for param in &link.params {
        write_param(out, &param.name, param.value.as_deref());
    }
}

/// Appends one `;name` or `;name=value` with this module's quoting policy. A caller writing links
/// from borrowed strings (the gateway's RD lookups) goes through this, so every document is quoted
/// the same way.
pub fn write_param(out: &mut String, name: &str, value: Option<&str>) {
    out.push(';');
    out.push_str(name);
    if let Some(value) = value {
        out.push('=');
        if must_quote(name, value) {
            write_quoted(out, value);
        } else {
            out.push_str(value);
        }
    }
}

fn must_quote(name: &str, value: &str) -> bool {
    ALWAYS_QUOTED
        .iter()
        .any(|quoted| quoted.eq_ignore_ascii_case(name))
        || value.is_empty()
        || !value.bytes().all(is_tchar)
}

fn write_quoted(out: &mut String, value: &str) {
    out.reserve(value.len() + 2);
    out.push('"');
    for character in value.chars() {
        if matches!(character, '"' | '\\') {
            out.push('\\');
        }
        out.push(character);
    }
    out.push('"');
}

/// RFC 7230 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}
