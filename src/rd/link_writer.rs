//! A minimal link-format writer for the RD's own output (lookups, `/.well-known/core`).
//!
//! It writes straight from borrowed strings so a lookup over many registrations builds no
//! intermediate `Link` values. It follows the quoting policy of `link_format`'s serializer, so
//! the RD's documents look the same whichever writes them: `anchor`, `title`, `rt`, `if`, `rel`,
//! `rev` and any value that is not a non-empty RFC 7230 token are written as an RFC 6690
//! `quoted-string` (escaping `"` and `\`); other values stay bare (`ct=40`, `ep=node1`), which
//! parsers built on HTTP Link-header code (aiocoap) require for `:`-bearing values.

/// Appends `,` unless `out` is empty, then `<target>` and each parameter.
pub(crate) fn push_link<'a>(
    out: &mut String,
    target: &str,
    params: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push('<');
    out.push_str(target);
    out.push('>');
    for (name, value) in params {
        push_param(out, name, value);
    }
}

pub(crate) fn push_param(out: &mut String, name: &str, value: Option<&str>) {
    out.push(';');
    out.push_str(name);
    if let Some(v) = value {
        out.push('=');
        if !must_quote(name, v) {
            out.push_str(v);
        } else {
            out.push('"');
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
}

/// Parameters written as a quoted-string whatever their value.
const ALWAYS_QUOTED: [&str; 6] = ["anchor", "title", "rt", "if", "rel", "rev"];

fn must_quote(name: &str, value: &str) -> bool {
    ALWAYS_QUOTED.iter().any(|q| q.eq_ignore_ascii_case(name))
        || value.is_empty()
        || !value.bytes().all(is_tchar)
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_quoted_and_bare_values() {
        let mut out = String::new();
        push_link(
            &mut out,
            "/rd",
            [("rt", Some("core.rd")), ("ct", Some("40")), ("obs", None)],
        );
        push_link(&mut out, "/x", [("title", Some("a \"b\" \\ c,d;e"))]);
        push_link(
            &mut out,
            "/y",
            [
                ("ep", Some("node1")),
                ("base", Some("coap://[::1]")),
                ("ct", Some("40 41")),
                ("d", Some("")),
            ],
        );
        assert_eq!(
            out,
            r#"</rd>;rt="core.rd";ct=40;obs,</x>;title="a \"b\" \\ c,d;e",</y>;ep=node1;base="coap://[::1]";ct="40 41";d="""#
        );
    }
}
