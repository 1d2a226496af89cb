//! Link-format parse errors, each with the byte offset where parsing stopped.
//!
//! Returned by [`crate::parse`] and [`crate::parse_bytes`]; a CoRE Resource Directory answers
//! every variant with 4.00 Bad Request (RFC 9176 §5). `at` is a byte offset into the input; for
//! `parse` it always falls on a char boundary of the `&str`.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkFormatError {
    /// A link must start with `<`: at the start of the document and after every `,`.
    #[error("expected `<` to open a link at byte {at}")]
    ExpectedTarget { at: usize },
    /// `at` is the offset of the opening `<`.
    #[error("unterminated `<` target opened at byte {at}")]
    UnterminatedTarget { at: usize },
    /// `<`, whitespace or a control character inside `<…>`.
    #[error("invalid character {found:?} in a link target at byte {at}")]
    InvalidTargetChar { at: usize, found: char },
    /// After `;` the next character cannot start a parameter name (e.g. `;=x`, `;;`).
    #[error("expected a parameter name at byte {at}")]
    ExpectedParamName { at: usize },
    /// A parameter name continued with a character outside RFC 5987 `attr-char`.
    #[error("invalid character {found:?} in a parameter name at byte {at}")]
    InvalidParamNameChar { at: usize, found: char },
    /// After a link's target or a parameter, only `;`, `,` or the end may follow.
    #[error("expected `;`, `,` or end of input but found {found:?} at byte {at}")]
    UnexpectedChar { at: usize, found: char },
    /// `at` is the offset of the opening `"`.
    #[error("unterminated quoted string opened at byte {at}")]
    UnterminatedQuote { at: usize },
    /// A character that neither a ptoken nor a quoted-string may hold.
    #[error("invalid character {found:?} in a parameter value at byte {at}")]
    InvalidValueChar { at: usize, found: char },
    /// `;rt=` with nothing after the `=` (an empty value must be written `""`).
    #[error("empty parameter value at byte {at}")]
    EmptyValue { at: usize },
    /// The input ended after `,` or `;`, where a link or a parameter must follow.
    #[error("unexpected end of input at byte {at}")]
    UnexpectedEnd { at: usize },
    /// [`crate::parse_bytes`] only: link-format is UTF-8 (RFC 6690 §2) and the bytes from `at`
    /// on are not; everything before `at` is valid UTF-8.
    #[error("invalid UTF-8 at byte {at}")]
    NotUtf8 { at: usize },
}

impl LinkFormatError {
    /// The byte offset the error points at, whichever the variant.
    pub fn at(&self) -> usize {
        match *self {
            LinkFormatError::ExpectedTarget { at }
            | LinkFormatError::UnterminatedTarget { at }
            | LinkFormatError::InvalidTargetChar { at, .. }
            | LinkFormatError::ExpectedParamName { at }
            | LinkFormatError::InvalidParamNameChar { at, .. }
            | LinkFormatError::UnexpectedChar { at, .. }
            | LinkFormatError::UnterminatedQuote { at }
            | LinkFormatError::InvalidValueChar { at, .. }
            | LinkFormatError::EmptyValue { at }
            | LinkFormatError::UnexpectedEnd { at }
            | LinkFormatError::NotUtf8 { at } => at,
        }
    }
}
