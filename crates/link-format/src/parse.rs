//! RFC 6690 §2 parser: a single-pass lexer over the document's bytes.
//!
//! For registration payloads and `/.well-known/core` replies, i.e. input from the network.
//! Grammar accepted (RFC 6690 §2, RFC 5987 `parmname`, RFC 2616 `quoted-string`):
//!
//! ```text
//! document   = OWS [ link *( OWS "," OWS link ) ] OWS
//! link       = "<" target ">" *( OWS ";" OWS param )
//! param      = parmname [ "*" ] [ "=" ( ptoken / quoted-string ) ]
//! OWS        = *( SP / HTAB / CR / LF )
//! ```
//!
//! Leniency is limited to that optional whitespace (devices put newlines after commas). The target
//! is not validated as a URI-Reference beyond rejecting `<`, whitespace and control characters;
//! Limited Link Format checks (RFC 9176 App. C) belong to the Resource Directory using this.
//!
//! Every delimiter is ASCII, so the lexer walks bytes and only stops on an ASCII byte or on the
//! lead byte of a multi-byte character; each slice it takes therefore starts and ends on a char
//! boundary. Each byte is looked at a bounded number of times: linear time.

use compact_str::CompactString;

use crate::{Link, LinkFormatError, Param};

/// Parses a whole `application/link-format` document.
///
/// Parameter names are lower-cased; values are unquoted and unescaped but otherwise kept as the
/// sender wrote them (`ct=40` stays the string `"40"`, `rel="a b"` stays one string).
/// An empty or whitespace-only document is zero links.
pub fn parse(input: &str) -> Result<Vec<Link>, LinkFormatError> {
    Lexer { input, pos: 0 }.document()
}

/// [`parse`] for a payload as it arrives (a CoAP body): bytes that are not UTF-8 are
/// [`LinkFormatError::NotUtf8`], pointing at the first invalid byte, before any lexing.
pub fn parse_bytes(input: &[u8]) -> Result<Vec<Link>, LinkFormatError> {
    let text = std::str::from_utf8(input).map_err(|error| LinkFormatError::NotUtf8 {
        at: error.valid_up_to(),
    })?;
    parse(text)
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn document(mut self) -> Result<Vec<Link>, LinkFormatError> {
        let mut links = Vec::new();
        self.skip_whitespace();
        if self.peek().is_none() {
            return Ok(links);
        }
        loop {
            links.push(self.link()?);
            // `link` returns only at the end of input or on a `,`.
            if self.peek().is_none() {
                return Ok(links);
            }
            self.pos += 1;
            self.skip_whitespace();
            if self.peek().is_none() {
                return Err(LinkFormatError::UnexpectedEnd { at: self.pos });
            }
        }
    }

    /// One link; stops before the `,` that ends it or at the end of input.
    fn link(&mut self) -> Result<Link, LinkFormatError> {
        let mut link = Link::new(self.target()?);
        loop {
            self.skip_whitespace();
            match self.peek() {
                None | Some(b',') => return Ok(link),
                Some(b';') => {
                    self.pos += 1;
                    self.skip_whitespace();
                    link.params.push(self.param()?);
                }
                Some(_) => {
                    return Err(LinkFormatError::UnexpectedChar {
                        at: self.pos,
                        found: self.char_here(),
                    })
                }
            }
        }
    }

    fn target(&mut self) -> Result<&'a str, LinkFormatError> {
        let open = self.pos;
        if self.peek() != Some(b'<') {
            return Err(LinkFormatError::ExpectedTarget { at: open });
        }
        self.pos += 1;
        loop {
            let Some(byte) = self.peek() else {
                return Err(LinkFormatError::UnterminatedTarget { at: open });
            };
            match byte {
                b'>' => {
                    let target = &self.input[open + 1..self.pos];
                    self.pos += 1;
                    return Ok(target);
                }
                b'<' | b' ' | 0x00..=0x1f | 0x7f => return Err(self.invalid_target_char()),
                0x80.. => {
                    let found = self.char_here();
                    // Unicode spaces and C1 controls would make the target ambiguous to read.
                    if found.is_whitespace() || found.is_control() {
                        return Err(self.invalid_target_char());
                    }
                    self.pos += found.len_utf8();
                }
                _ => self.pos += 1,
            }
        }
    }

    fn param(&mut self) -> Result<Param, LinkFormatError> {
        let start = self.pos;
        match self.peek() {
            None => return Err(LinkFormatError::UnexpectedEnd { at: start }),
            Some(byte) if is_attr_char(byte) => {}
            Some(_) => return Err(LinkFormatError::ExpectedParamName { at: start }),
        }
        while self.peek().is_some_and(is_attr_char) {
            self.pos += 1;
        }
        // RFC 6690 `ext-name-star`: one `*` may end the name (`title*`).
        if self.peek() == Some(b'*') {
            self.pos += 1;
        }
        let name = CompactString::from(self.input[start..self.pos].to_ascii_lowercase());
        match self.peek() {
            Some(b'=') => {
                self.pos += 1;
                let value = self.value()?;
                Ok(Param {
                    name,
                    value: Some(value.into()),
                })
            }
            None => Ok(Param { name, value: None }),
            Some(byte) if ends_item(byte) => Ok(Param { name, value: None }),
            Some(_) => Err(LinkFormatError::InvalidParamNameChar {
                at: self.pos,
                found: self.char_here(),
            }),
        }
    }

    fn value(&mut self) -> Result<String, LinkFormatError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => self.quoted_string(),
            Some(byte) if is_ptoken_char(byte) => {
                while self.peek().is_some_and(is_ptoken_char) {
                    self.pos += 1;
                }
                match self.peek() {
                    Some(byte) if !ends_item(byte) => Err(self.invalid_value_char()),
                    _ => Ok(self.input[start..self.pos].to_owned()),
                }
            }
            Some(byte) if !ends_item(byte) => Err(self.invalid_value_char()),
            _ => Err(LinkFormatError::EmptyValue { at: start }),
        }
    }

    /// RFC 2616 `quoted-string`; `quoted-pair` (`\` + any non-control char) yields that char.
    fn quoted_string(&mut self) -> Result<String, LinkFormatError> {
        let open = self.pos;
        self.pos += 1;
        let mut value = String::new();
        let mut segment_start = self.pos;
        loop {
            let Some(byte) = self.peek() else {
                return Err(LinkFormatError::UnterminatedQuote { at: open });
            };
            match byte {
                b'"' => {
                    value.push_str(&self.input[segment_start..self.pos]);
                    self.pos += 1;
                    return Ok(value);
                }
                b'\\' => {
                    value.push_str(&self.input[segment_start..self.pos]);
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(LinkFormatError::UnterminatedQuote { at: open }),
                        Some(escaped) if is_forbidden_control(escaped) => {
                            return Err(self.invalid_value_char())
                        }
                        // The escaped char starts the next segment; a multi-byte one has its
                        // continuation bytes consumed by the `0x80..` arm below.
                        Some(_) => {
                            segment_start = self.pos;
                            self.pos += 1;
                        }
                    }
                }
                _ if is_forbidden_control(byte) => return Err(self.invalid_value_char()),
                _ => self.pos += 1,
            }
        }
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(is_whitespace) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    /// The character at `pos`, for error reports. Callers only ask when `pos` is inside the
    /// input and on a char boundary (see the module doc); U+FFFD is a fallback, not a path.
    fn char_here(&self) -> char {
        self.input
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    fn invalid_target_char(&self) -> LinkFormatError {
        LinkFormatError::InvalidTargetChar {
            at: self.pos,
            found: self.char_here(),
        }
    }

    fn invalid_value_char(&self) -> LinkFormatError {
        LinkFormatError::InvalidValueChar {
            at: self.pos,
            found: self.char_here(),
        }
    }
}

/// The optional whitespace accepted around `,` and `;` and at both ends of the document.
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// What may follow a parameter name or value: whitespace, the next parameter or link, or the end.
fn ends_item(byte: u8) -> bool {
    is_whitespace(byte) || byte == b';' || byte == b','
}

/// Whether link-format can carry `name` as a parameter name: an RFC 6690 `parmname`,
/// optionally ending in `*` (`ext-name-star`). Other names cannot be escaped, so a serializer
/// given one writes a document that does not parse.
pub fn is_param_name(name: &str) -> bool {
    let bare = name.strip_suffix('*').unwrap_or(name);
    !bare.is_empty() && bare.bytes().all(is_attr_char)
}

/// Whether `value` can be written as a quoted-string: no control character other than HTAB.
pub fn is_param_value(value: &str) -> bool {
    !value.bytes().any(is_forbidden_control)
}

/// RFC 5987 `attr-char`, the characters of RFC 6690 `parmname`.
fn is_attr_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// RFC 6690 `ptokenchar`: every visible ASCII character except `"` `,` `;` `\`.
fn is_ptoken_char(byte: u8) -> bool {
    byte.is_ascii_graphic() && !matches!(byte, b'"' | b',' | b';' | b'\\')
}

/// Control characters a quoted-string may not hold (RFC 7230 `qdtext` allows HTAB only).
fn is_forbidden_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}
