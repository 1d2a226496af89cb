//! RFC 6690 §2 parser (placeholder until the lexer lands).

use super::{Link, LinkFormatError};

pub fn parse(_input: &str) -> Result<Vec<Link>, LinkFormatError> {
    Err(LinkFormatError::ExpectedTarget { at: 0 })
}
