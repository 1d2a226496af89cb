//! Inputs at the edges of the grammar that a splitter gets wrong: delimiters and escapes inside
//! quoted strings, an unterminated `<`, empty input, and bytes that are not UTF-8.

use super::{param, parse_ok};
use crate::{parse, parse_bytes, Link, LinkFormatError as E};

#[test]
fn a_quoted_value_may_look_like_more_links() {
    // A splitter on `,` and `;` would see three links here.
    let links = parse_ok("</a>;title=\"x,</b>;rt=y,<c>\";ct=0");
    assert_eq!(
        links,
        vec![Link::new("/a")
            .with("title", Some("x,</b>;rt=y,<c>"))
            .with("ct", Some("0"))]
    );
}

#[test]
fn escaped_delimiters_inside_quotes_are_the_delimiters_themselves() {
    let links = parse_ok(r#"</a>;title="a\,b\;c\=d\<e\>",</b>"#);
    assert_eq!(links.len(), 2);
    assert_eq!(links[0].value("title"), Some("a,b;c=d<e>"));
}

#[test]
fn an_escaped_backslash_does_not_escape_the_closing_quote() {
    let links = parse_ok(r#"</a>;title="x\\",</b>"#);
    assert_eq!(links[0].params, vec![param("title", Some("x\\"))]);
    assert_eq!(links[1], Link::new("/b"));
}

#[test]
fn an_escaped_quote_then_a_comma_stays_in_the_value() {
    let links = parse_ok(r#"</a>;title="say \",</b>\" ok""#);
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].value("title"), Some("say \",</b>\" ok"));
}

#[test]
fn unterminated_target_anywhere_points_at_its_opening() {
    assert_eq!(parse("</a"), Err(E::UnterminatedTarget { at: 0 }));
    assert_eq!(parse("<é温🙂"), Err(E::UnterminatedTarget { at: 0 }));
    assert_eq!(parse("</a>;rt=x,<"), Err(E::UnterminatedTarget { at: 10 }));
    // A `>` inside a quoted value of an earlier link does not close a later target.
    assert_eq!(
        parse("</a>;t=\">\",</b"),
        Err(E::UnterminatedTarget { at: 11 })
    );
}

#[test]
fn empty_input_is_zero_links_as_text_and_as_bytes() {
    assert_eq!(parse(""), Ok(Vec::new()));
    assert_eq!(parse_bytes(b""), Ok(Vec::new()));
    assert_eq!(parse_bytes(b" \r\n"), Ok(Vec::new()));
    // But a separator promises a link or a parameter.
    assert_eq!(parse(","), Err(E::ExpectedTarget { at: 0 }));
    assert_eq!(parse("</a>,"), Err(E::UnexpectedEnd { at: 5 }));
    assert_eq!(parse("</a>;"), Err(E::UnexpectedEnd { at: 5 }));
}

#[test]
fn non_utf8_bytes_point_at_the_first_invalid_byte() {
    // A lone continuation byte, an invalid lead byte, an overlong `/`, a UTF-16 surrogate.
    assert_eq!(parse_bytes(b"</a\x80>"), Err(E::NotUtf8 { at: 3 }));
    assert_eq!(parse_bytes(b"\xff</a>"), Err(E::NotUtf8 { at: 0 }));
    assert_eq!(parse_bytes(b"<\xc0\xaf>"), Err(E::NotUtf8 { at: 1 }));
    assert_eq!(parse_bytes(b"</\xed\xa0\x80>"), Err(E::NotUtf8 { at: 2 }));
    // Inside a quoted string, and a multi-byte character cut short at the end.
    assert_eq!(
        parse_bytes(b"</a>;title=\"caf\xc3\""),
        Err(E::NotUtf8 { at: 15 })
    );
    assert_eq!(parse_bytes(b"</a>;t=\"\xe6\xb8"), Err(E::NotUtf8 { at: 8 }));
    assert_eq!(
        E::NotUtf8 { at: 15 }.to_string(),
        "invalid UTF-8 at byte 15"
    );
}

#[test]
fn utf8_is_checked_before_the_grammar() {
    // Both broken: the encoding is reported, whichever comes first in the input.
    assert_eq!(parse_bytes(b"x\xff"), Err(E::NotUtf8 { at: 1 }));
}

#[test]
fn valid_utf8_bytes_parse_as_the_same_text() {
    let text = "</sensors/temp>;rt=\"température\";title=\"温度 🙂\";obs";
    assert_eq!(parse_bytes(text.as_bytes()), parse(text));
    assert_eq!(parse_bytes(b"</a>;;"), parse("</a>;;"));
}
