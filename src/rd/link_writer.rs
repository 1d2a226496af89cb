//! A minimal link-format writer for the RD's own output (lookups, `/.well-known/core`).
//!
//! It writes straight from borrowed strings so a lookup over many registrations builds no
//! intermediate `Link` values. Parameters go through `link_format::write_param`, so the RD's
//! documents follow the serializer's one quoting policy.

use link_format::write_param;

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
    write_param(out, name, value);
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
