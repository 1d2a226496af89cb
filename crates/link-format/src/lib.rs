//! RFC 6690 CoRE Link Format: the data model, a strict parser and a serializer.
//!
//! Pure functions, no I/O, no limits of its own. The parser is a lexer (target `<…>`, parameter
//! name, token value, quoted string), not a splitter: quoted values may hold `,` and `;`,
//! parameters may be valueless (`obs`) and may repeat. Errors carry the byte offset where parsing
//! stopped. `serialize(parse(x))` parses back to the same links (round-trip).
//!
//! Strict except for optional whitespace (SP, HTAB, CR, LF) around `,` and `;` and at either end
//! of the document; an empty document is zero links. The serializer always quotes `anchor`,
//! `title`, `rt`, `if`, `rel`, `rev` and writes other values bare only when they are an HTTP
//! token (see `serialize.rs` for why).
//!
//! Time and memory are linear in the input and nothing recurses, so the caller bounds the cost
//! by bounding the input: a document of `n` bytes yields at most `n / 2 + 1` links (`<>` is the
//! shortest). Resource Directory rules on top of the grammar (RFC 9176 Limited Link Format,
//! link counts) belong to the caller.
//!
//! ```
//! let links = link_format::parse("</sensors/temp>;rt=\"temperature\";obs,</led>;ct=0")?;
//! assert_eq!(links[0].value("rt"), Some("temperature"));
//! assert!(links[0].has("obs"));
//! assert_eq!(
//!     link_format::serialize(&links),
//!     "</sensors/temp>;rt=\"temperature\";obs,</led>;ct=0"
//! );
//! # Ok::<(), link_format::LinkFormatError>(())
//! ```
//!
//! The `serde` feature derives `Serialize`/`Deserialize` for [`Link`] and [`Param`] in a compact
//! form (`{"t":"/a","p":[{"n":"rt","v":"x"}]}`) that the coap-gateway registry stores on disk:
//! renaming those fields is a storage format change.

mod error;
#[doc(hidden)]
pub mod fuzz_api;
mod model;
mod parse;
mod serialize;
#[cfg(test)]
mod tests;

// The README's example runs as a doctest, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use error::LinkFormatError;
pub use model::{Link, Param};
pub use parse::{is_param_name, is_param_value, parse, parse_bytes};
pub use serialize::{serialize, write_link, write_param};
