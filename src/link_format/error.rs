//! Link-format parse errors, each with the byte offset where parsing stopped.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkFormatError {
    #[error("expected `<` to open a link at byte {at}")]
    ExpectedTarget { at: usize },
    #[error("unterminated `<` target opened at byte {at}")]
    UnterminatedTarget { at: usize },
    #[error("invalid character {found:?} in a link target at byte {at}")]
    InvalidTargetChar { at: usize, found: char },
    #[error("expected a parameter name at byte {at}")]
    ExpectedParamName { at: usize },
    #[error("invalid character {found:?} at byte {at}")]
    UnexpectedChar { at: usize, found: char },
    #[error("unterminated quoted string opened at byte {at}")]
    UnterminatedQuote { at: usize },
    #[error("empty parameter value at byte {at}")]
    EmptyValue { at: usize },
    #[error("unexpected end of input at byte {at}")]
    UnexpectedEnd { at: usize },
}
