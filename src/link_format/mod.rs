//! RFC 6690 CoRE Link Format: the data model, a strict parser and a serializer.
//!
//! Pure functions, no I/O. The parser is a lexer (target `<…>`, parameter name, token value,
//! quoted string), not a splitter: quoted values may hold `,` and `;`, parameters may be
//! valueless (`obs`) and may repeat. Errors carry the byte offset where parsing stopped.
//! `serialize(parse(x))` parses back to the same links (round-trip).
//!
//! Strict except for optional whitespace (SP, HTAB, CR, LF) around `,` and `;` and at either end
//! of the document; an empty document is zero links. The serializer always quotes `anchor`,
//! `title`, `rt`, `if`, `rel`, `rev` and writes other values bare only when they are an HTTP
//! token (see `serialize.rs` for why).
//!
//! Used by the RD (registration payloads, lookup results, `/.well-known/core`), by the CoAP
//! client side of discovery, and by the registry's stored model.

mod error;
mod model;
mod parse;
mod serialize;
#[cfg(test)]
mod tests;

pub use error::LinkFormatError;
pub use model::{Link, Param};
pub use parse::{is_param_name, is_param_value, parse};
pub use serialize::{serialize, write_link, write_param};
