//! Malformed documents: each error variant, and the byte offset it points at.

use crate::{parse, LinkFormatError as E};

fn err(input: &str) -> E {
    match parse(input) {
        Ok(links) => panic!("{input:?} should be rejected, parsed as {links:?}"),
        Err(error) => error,
    }
}

#[test]
fn expected_target() {
    assert_eq!(err("a"), E::ExpectedTarget { at: 0 });
    assert_eq!(err("  /a>"), E::ExpectedTarget { at: 2 });
    assert_eq!(err(",</a>"), E::ExpectedTarget { at: 0 });
    assert_eq!(err(";rt=x"), E::ExpectedTarget { at: 0 });
    // An empty list element is not a link.
    assert_eq!(err("</a>,,</b>"), E::ExpectedTarget { at: 5 });
    assert_eq!(err("</a>, x"), E::ExpectedTarget { at: 6 });
}

#[test]
fn unterminated_target_points_at_its_opening() {
    assert_eq!(err("<"), E::UnterminatedTarget { at: 0 });
    assert_eq!(err("</a>,</b;rt=x"), E::UnterminatedTarget { at: 5 });
}

#[test]
fn invalid_target_chars() {
    assert_eq!(err("</a<b>"), E::InvalidTargetChar { at: 3, found: '<' });
    assert_eq!(err("</a b>"), E::InvalidTargetChar { at: 3, found: ' ' });
    assert_eq!(err("</a\tb>"), E::InvalidTargetChar { at: 3, found: '\t' });
    assert_eq!(err("</a\nb>"), E::InvalidTargetChar { at: 3, found: '\n' });
    assert_eq!(
        err("</a\u{0}>"),
        E::InvalidTargetChar { at: 3, found: '\0' }
    );
    assert_eq!(
        err("</a\u{7f}>"),
        E::InvalidTargetChar {
            at: 3,
            found: '\u{7f}'
        }
    );
    // Offsets count bytes: `é` is two.
    assert_eq!(
        err("</é\u{a0}>"),
        E::InvalidTargetChar {
            at: 4,
            found: '\u{a0}'
        }
    );
    assert_eq!(
        err("</\u{85}>"),
        E::InvalidTargetChar {
            at: 2,
            found: '\u{85}'
        }
    );
}

#[test]
fn expected_param_name() {
    assert_eq!(err("</a>;=x"), E::ExpectedParamName { at: 5 });
    assert_eq!(err("</a>;;rt=x"), E::ExpectedParamName { at: 5 });
    assert_eq!(err("</a>; ,</b>"), E::ExpectedParamName { at: 6 });
    assert_eq!(err("</a>;\"rt\"=x"), E::ExpectedParamName { at: 5 });
    assert_eq!(err("</a>;*=x"), E::ExpectedParamName { at: 5 });
    assert_eq!(err("</a>;é=x"), E::ExpectedParamName { at: 5 });
}

#[test]
fn invalid_param_name_chars() {
    assert_eq!(
        err("</a>;r\"t=x"),
        E::InvalidParamNameChar { at: 6, found: '"' }
    );
    assert_eq!(
        err("</a>;rté=x"),
        E::InvalidParamNameChar { at: 7, found: 'é' }
    );
    assert_eq!(
        err("</a>;r/t=x"),
        E::InvalidParamNameChar { at: 6, found: '/' }
    );
    // `*` may only end a name.
    assert_eq!(
        err("</a>;ti*tle=x"),
        E::InvalidParamNameChar { at: 8, found: 't' }
    );
    assert_eq!(
        err("</a>;t**=x"),
        E::InvalidParamNameChar { at: 7, found: '*' }
    );
}

#[test]
fn unexpected_char_after_target_or_param() {
    assert_eq!(err("<a>b"), E::UnexpectedChar { at: 3, found: 'b' });
    assert_eq!(err("</a> </b>"), E::UnexpectedChar { at: 5, found: '<' });
    assert_eq!(
        err("</a>;rt=\"x\"y"),
        E::UnexpectedChar { at: 11, found: 'y' }
    );
    assert_eq!(
        err("</a>;rt=\"x\"\"y\""),
        E::UnexpectedChar { at: 11, found: '"' }
    );
    // Whitespace is allowed around `;` and `,`, not around `=`.
    assert_eq!(err("</a>;rt =x"), E::UnexpectedChar { at: 8, found: '=' });
    assert_eq!(err("</a>;obs x"), E::UnexpectedChar { at: 9, found: 'x' });
    assert_eq!(err("</a>>"), E::UnexpectedChar { at: 4, found: '>' });
}

#[test]
fn unterminated_quote_points_at_its_opening() {
    assert_eq!(err("</a>;rt=\"x"), E::UnterminatedQuote { at: 8 });
    assert_eq!(err("</a>;rt=\"x,</b>"), E::UnterminatedQuote { at: 8 });
    assert_eq!(err("</a>;rt=\"x\\\""), E::UnterminatedQuote { at: 8 });
    assert_eq!(err("</a>;rt=\"x\\"), E::UnterminatedQuote { at: 8 });
    assert_eq!(err("</a>;rt=\""), E::UnterminatedQuote { at: 8 });
}

#[test]
fn invalid_value_chars() {
    assert_eq!(
        err("</a>;rt=a\"b\""),
        E::InvalidValueChar { at: 9, found: '"' }
    );
    assert_eq!(
        err("</a>;rt=a\\b"),
        E::InvalidValueChar { at: 9, found: '\\' }
    );
    assert_eq!(err("</a>;rt=é"), E::InvalidValueChar { at: 8, found: 'é' });
    assert_eq!(
        err("</a>;rt=abé"),
        E::InvalidValueChar {
            at: 10, found: 'é'
        }
    );
    assert_eq!(
        err("</a>;rt=\u{1}"),
        E::InvalidValueChar {
            at: 8,
            found: '\u{1}'
        }
    );
    assert_eq!(
        err("</a>;rt=\\"),
        E::InvalidValueChar { at: 8, found: '\\' }
    );
    // Control characters other than HTAB are refused inside quotes, escaped or not.
    assert_eq!(
        err("</a>;t=\"a\nb\""),
        E::InvalidValueChar { at: 9, found: '\n' }
    );
    assert_eq!(
        err("</a>;t=\"a\\\rb\""),
        E::InvalidValueChar {
            at: 10,
            found: '\r'
        }
    );
    assert_eq!(
        err("</a>;t=\"\u{7f}\""),
        E::InvalidValueChar {
            at: 8,
            found: '\u{7f}'
        }
    );
}

#[test]
fn empty_unquoted_value() {
    assert_eq!(err("</a>;rt="), E::EmptyValue { at: 8 });
    assert_eq!(err("</a>;rt=;obs"), E::EmptyValue { at: 8 });
    assert_eq!(err("</a>;rt=,</b>"), E::EmptyValue { at: 8 });
    assert_eq!(err("</a>;rt= x"), E::EmptyValue { at: 8 });
}

#[test]
fn unexpected_end_after_separator() {
    assert_eq!(err("<a>;"), E::UnexpectedEnd { at: 4 });
    assert_eq!(err("</a>; \n"), E::UnexpectedEnd { at: 7 });
    assert_eq!(err("</a>,"), E::UnexpectedEnd { at: 5 });
    assert_eq!(err("</a>,\r\n"), E::UnexpectedEnd { at: 7 });
}

#[test]
fn error_offset_accessor_matches_the_variant() {
    assert_eq!(err("</a>;rt=\"x").at(), 8);
    assert_eq!(err("<a>b").at(), 3);
    assert_eq!(
        err("</a>;rt=\"x").to_string(),
        "unterminated quoted string opened at byte 8"
    );
}

#[test]
fn param_name_and_value_predicates_match_what_the_parser_accepts() {
    use crate::{is_param_name, is_param_value};
    for name in ["rt", "title*", "a!#$&+-.^_`|~z", "X1"] {
        assert!(is_param_name(name), "{name}");
        assert!(parse(&format!("<>;{name}=1")).is_ok(), "{name}");
    }
    for name in ["", "*", ",v", "a b", "a;b", "a=b", "ä", "a**"] {
        assert!(!is_param_name(name), "{name:?}");
    }
    assert!(is_param_value("a\tb ü \"q\""));
    assert!(!is_param_value("a\u{1}"));
    assert!(!is_param_value("a\u{7f}"));
}
