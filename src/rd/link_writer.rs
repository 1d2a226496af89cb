//! A minimal link-format writer for the RD's own output (lookups, `/.well-known/core`).
//!
//! It writes straight from borrowed strings so a lookup over many registrations builds no
//! intermediate `Link` values. Values are quoted (RFC 6690 §2 `quoted-string`, with `"` and `\`
//! escaped) unless they are plain digits such as `ct=40`, which the RFC's own examples leave bare.

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
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
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
        assert_eq!(
            out,
            r#"</rd>;rt="core.rd";ct=40;obs,</x>;title="a \"b\" \\ c,d;e""#
        );
    }
}
