//! The device identities file (`dtls.identities_file`): who may open a DTLS session with the
//! RD, with which pre-shared key, and which endpoint names and sectors each may register.
//!
//! ```yaml
//! identities:
//!   - identity: node1                  # the PSK identity, or a client certificate's subject CN
//!     psk_hex: "7365637265742d6e6f646531"  # or psk_base64, or psk_file; none: certificate only
//!     endpoints: ["node1", "node1-*"]  # absent: exactly its identity; []: lookups only
//!     sector: "plant*"                 # absent: any sector, or none
//! ```
//!
//! The file is read whole and checked whole: one bad entry refuses the file (and a reload keeps
//! the previous set), and every error names the entry (its 1-based position and its identity)
//! and the problem, never a key. To that end the YAML is read into a generic tree first and
//! each entry checked by hand: a serde error would quote the offending value, which may be key
//! material (`psk_hex: 1234` is a number, not a string).
//!
//! `psk_file` holds the raw key bytes (a 16-byte key is a 16-byte file: write it with
//! `printf`, or `head -c 16 /dev/urandom`; a trailing newline would be part of the key), and a
//! relative path is relative to the identities file's directory.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use super::glob::Glob;

/// Longest identity, in bytes: what DTLS 1.2 PSK identities are in practice (RFC 4279 allows
/// 2^16 - 1, but every stack we interoperate with stays far below; libcoap caps at 128).
pub(crate) const MAX_IDENTITY_BYTES: usize = 128;
/// Longest pre-shared key, in bytes (RFC 4279 §5.3 asks for at least 64 to be supported).
pub(crate) const MAX_PSK_BYTES: usize = 64;
/// Longest `endpoints` or `sector` pattern, in bytes: an endpoint name and a sector are at most
/// 63 bytes (RFC 9176 §5), so a longer pattern could only be a mistake.
const MAX_PATTERN_BYTES: usize = 255;

/// The keys an entry may have, in the order the error message lists them.
const ENTRY_KEYS: [&str; 6] = [
    "identity",
    "psk_hex",
    "psk_base64",
    "psk_file",
    "endpoints",
    "sector",
];

/// Why an identities file was refused. Never holds key material: a problem with a key says
/// which key field and what is wrong with it, not what it holds.
#[derive(Debug, Error)]
pub(crate) enum IdentitiesError {
    #[error("cannot read identities file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML; the message is the parser's, without the source snippet it would otherwise
    /// quote (the line could hold a key).
    #[error("not valid YAML: {message}")]
    Syntax { message: String },
    /// The document is not a mapping with an `identities:` list.
    #[error("{problem}")]
    Shape { problem: String },
    /// One entry is wrong.
    #[error("identities entry {number} ({}): {problem}", describe(identity.as_deref()))]
    Entry {
        /// 1-based position in the `identities:` list.
        number: usize,
        /// Its `identity`, when it has a readable one.
        identity: Option<String>,
        problem: String,
    },
    /// An error in the file at `path` (what [`Identities::load`] adds to the others).
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<IdentitiesError>,
    },
}

fn describe(identity: Option<&str>) -> String {
    match identity {
        Some(identity) => format!("identity {identity:?}"),
        None => "no identity".to_string(),
    }
}

/// Why a registration over DTLS is refused (4.03 Forbidden, or 4.01 for an unknown identity);
/// the message is meant as the response's diagnostic payload: it names what the client sent,
/// never anything of the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum IdentityRefusal {
    /// The session's identity is not (or no longer) in the file.
    #[error("identity not known to this resource directory")]
    UnknownIdentity,
    #[error("endpoint name {ep:?} not allowed for this identity")]
    EndpointNotAllowed { ep: String },
    /// `d` is empty when the registration had none.
    #[error("{}", sector_refusal(d))]
    SectorNotAllowed { d: String },
}

fn sector_refusal(d: &str) -> String {
    if d.is_empty() {
        "this identity must register with a sector (d)".to_string()
    } else {
        format!("sector {d:?} not allowed for this identity")
    }
}

/// A pre-shared key: never printed, zeroed when dropped (with the `zeroize` crate, which the
/// tree already has through rustls: its volatile writes and compiler fence are audited, and it
/// also zeroes a `Vec`'s spare capacity, which a hand-rolled loop would likely forget).
pub(crate) struct Psk(Vec<u8>);

impl Psk {
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Psk {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Compared in time independent of where the keys differ (only a reload compares keys, but a
/// key comparison that leaks timing is a bad thing to leave lying around).
impl PartialEq for Psk {
    fn eq(&self, other: &Psk) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// One entry of the file, checked.
#[derive(Debug, PartialEq)]
struct Identity {
    name: Box<str>,
    /// `None`: certificate only.
    psk: Option<Psk>,
    /// Endpoint names it may register; empty: none (lookups only).
    endpoints: Vec<Glob>,
    /// Sectors it may register in; `None`: any, or none.
    sector: Option<Glob>,
}

/// The identities of one reading of the file, in file order. Immutable: a reload builds a new
/// one (see `IdentityStore`).
#[derive(Default)]
pub(crate) struct Identities {
    entries: Vec<Identity>,
    by_name: HashMap<Box<str>, usize>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.entries).finish()
    }
}

impl Identities {
    /// Read and check the file at `path`; `psk_file`s are relative to its directory.
    pub(crate) fn load(path: &Path) -> Result<Identities, IdentitiesError> {
        let text = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|source| IdentitiesError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let base_dir = path.parent().unwrap_or(Path::new(""));
        Identities::from_yaml(&text, base_dir).map_err(|error| IdentitiesError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        })
    }

    /// Check the YAML `text`; relative `psk_file`s are read from `base_dir`.
    pub(crate) fn from_yaml(text: &str, base_dir: &Path) -> Result<Identities, IdentitiesError> {
        // YAML 1.1 booleans off: `identity: n` or `y` (a plausible name) stays a string.
        let options = serde_saphyr::options! { with_snippet: false, strict_booleans: true };
        let root: Node = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            IdentitiesError::Syntax {
                message: e.to_string(),
            }
        })?;
        let list = top_level_list(root)?;
        let mut identities = Identities::default();
        for (i, node) in list.into_iter().enumerate() {
            let number = i + 1;
            let identity = parse_entry(number, node, base_dir)?;
            if let Some(first) = identities.by_name.get(&identity.name) {
                return Err(IdentitiesError::Entry {
                    number,
                    identity: Some(identity.name.into()),
                    problem: format!("the same identity as entry {}", first + 1),
                });
            }
            identities
                .by_name
                .insert(identity.name.clone(), identities.entries.len());
            identities.entries.push(identity);
        }
        Ok(identities)
    }

    fn get(&self, identity: &str) -> Option<&Identity> {
        self.by_name.get(identity).map(|&i| &self.entries[i])
    }

    /// The pre-shared key of `identity` (as a DTLS handshake names it); `None` for an unknown
    /// identity, a certificate-only one, or one that is not UTF-8 (no file entry can be).
    pub(crate) fn psk(&self, identity: &[u8]) -> Option<&[u8]> {
        let identity = std::str::from_utf8(identity).ok()?;
        self.get(identity)?.psk.as_ref().map(Psk::expose)
    }

    /// Whether `identity` is in the file (with a key or certificate only).
    pub(crate) fn contains(&self, identity: &str) -> bool {
        self.by_name.contains_key(identity)
    }

    /// Whether `identity` may register endpoint `ep` in sector `d` (`None`: no `d` given).
    /// Without `sector` in its entry any sector, or none, is allowed; with one, a missing `d`
    /// is matched as the empty string, so only a pattern such as `*` or `""` allows it.
    pub(crate) fn authorize_registration(
        &self,
        identity: &str,
        ep: &str,
        d: Option<&str>,
    ) -> Result<(), IdentityRefusal> {
        let entry = self.get(identity).ok_or(IdentityRefusal::UnknownIdentity)?;
        if !entry.endpoints.iter().any(|glob| glob.matches(ep)) {
            return Err(IdentityRefusal::EndpointNotAllowed { ep: ep.to_string() });
        }
        let d = d.unwrap_or("");
        if let Some(sector) = &entry.sector {
            if !sector.matches(d) {
                return Err(IdentityRefusal::SectorNotAllowed { d: d.to_string() });
            }
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every identity, in file order.
    pub(crate) fn identities(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| &*entry.name)
    }

    /// Whether `identity` is in both sets with the same key and the same permissions; the
    /// keys are compared, never shown.
    pub(crate) fn same_entry(&self, other: &Identities, identity: &str) -> bool {
        match (self.get(identity), other.get(identity)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// The `identities:` list of the document.
fn top_level_list(root: Node) -> Result<Vec<Node>, IdentitiesError> {
    let shape = |problem: &str| IdentitiesError::Shape {
        problem: problem.to_string(),
    };
    let Node::Map(pairs) = root else {
        return Err(shape(
            "the file must be a mapping with an `identities:` list",
        ));
    };
    let mut list = None;
    for (key, value) in pairs {
        match key {
            Node::Str(key) if key.as_str() == "identities" => match value {
                Node::Seq(items) => list = Some(items),
                _ => return Err(shape("`identities:` must be a list (`[]` for none)")),
            },
            Node::Str(key) => {
                return Err(IdentitiesError::Shape {
                    problem: format!(
                        "unknown key {:?}: the file holds only an `identities:` list",
                        key.as_str()
                    ),
                })
            }
            _ => return Err(shape("the file's keys must be strings")),
        }
    }
    list.ok_or_else(|| shape("the file has no `identities:` list (write `identities: []`)"))
}

/// Check one entry; `number` is its 1-based position.
fn parse_entry(number: usize, node: Node, base_dir: &Path) -> Result<Identity, IdentitiesError> {
    let Node::Map(pairs) = node else {
        return Err(IdentitiesError::Entry {
            number,
            identity: None,
            problem: format!("must be a mapping with `identity:`, not {}", node.kind()),
        });
    };
    // Found first, so that every other error can name the entry by it.
    let name = pairs.iter().find_map(|(key, value)| match (key, value) {
        (Node::Str(key), Node::Str(value)) if key.as_str() == "identity" => {
            Some(value.as_str().to_string())
        }
        _ => None,
    });
    let fail = |problem: String| IdentitiesError::Entry {
        number,
        identity: name.clone(),
        problem,
    };

    let mut fields: HashMap<&'static str, Node> = HashMap::new();
    for (key, value) in pairs {
        let Node::Str(key) = key else {
            return Err(fail(format!("a key is {}, not a string", key.kind())));
        };
        let Some(known) = ENTRY_KEYS.iter().find(|k| **k == key.as_str()) else {
            return Err(fail(format!(
                "unknown key {:?} (expected one of {})",
                key.as_str(),
                ENTRY_KEYS.join(", ")
            )));
        };
        if fields.insert(known, value).is_some() {
            return Err(fail(format!("`{known}` is given twice")));
        }
    }

    let Some(name) = name.clone() else {
        return Err(fail(match fields.get("identity") {
            None => "has no `identity`".to_string(),
            Some(node) => format!(
                "`identity` must be a string, not {} (quote it)",
                node.kind()
            ),
        }));
    };
    check_identity(&name).map_err(|p| fail(p.to_string()))?;

    let key_fields: Vec<&str> = ["psk_hex", "psk_base64", "psk_file"]
        .into_iter()
        .filter(|k| fields.contains_key(k))
        .collect();
    if key_fields.len() > 1 {
        return Err(fail(format!(
            "has {}: give at most one key",
            key_fields.join(" and ")
        )));
    }
    let psk = match key_fields.first() {
        None => None,
        Some(&field) => {
            let text = match fields.remove(field) {
                Some(Node::Str(text)) => text,
                Some(other) => {
                    return Err(fail(format!(
                        "`{field}` must be a string, not {} (quote it)",
                        other.kind()
                    )))
                }
                None => return Err(fail(format!("`{field}` is missing"))),
            };
            let bytes = match field {
                "psk_hex" => decode_hex(text.trim()),
                "psk_base64" => decode_base64(text.trim()),
                _ => read_key_file(&base_dir.join(text.as_str())),
            }
            .map_err(|problem| fail(format!("`{field}`: {problem}")))?;
            if bytes.is_empty() || bytes.len() > MAX_PSK_BYTES {
                return Err(fail(format!(
                    "`{field}`: the key is {} bytes; a key is 1 to {MAX_PSK_BYTES}",
                    bytes.len()
                )));
            }
            Some(Psk(bytes.to_vec()))
        }
    };

    let endpoints = match fields.remove("endpoints") {
        None => vec![Glob::literal(&name)],
        Some(Node::Seq(items)) => items
            .into_iter()
            .map(|item| match item {
                Node::Str(pattern) => check_pattern(&pattern, false)
                    .map(|()| Glob::new(&pattern))
                    .map_err(|p| fail(format!("`endpoints` pattern {:?}: {p}", pattern.as_str()))),
                other => Err(fail(format!(
                    "`endpoints` holds {}, not a pattern string",
                    other.kind()
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(fail(format!(
                "`endpoints` must be a list of patterns (`[]` for none), not {}",
                other.kind()
            )))
        }
    };

    let sector = match fields.remove("sector") {
        None => None,
        Some(Node::Str(pattern)) => {
            check_pattern(&pattern, true)
                .map_err(|p| fail(format!("`sector` pattern {:?}: {p}", pattern.as_str())))?;
            Some(Glob::new(&pattern))
        }
        Some(other) => {
            return Err(fail(format!(
                "`sector` must be a pattern string, not {}",
                other.kind()
            )))
        }
    };

    Ok(Identity {
        name: name.into(),
        psk,
        endpoints,
        sector,
    })
}

/// An identity: 1 to [`MAX_IDENTITY_BYTES`] bytes, no control characters (it is logged).
fn check_identity(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("`identity` is empty".to_string());
    }
    if name.len() > MAX_IDENTITY_BYTES {
        return Err(format!(
            "`identity` is {} bytes; at most {MAX_IDENTITY_BYTES}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("`identity` holds a control character".to_string());
    }
    Ok(())
}

/// A pattern: at most [`MAX_PATTERN_BYTES`], no control characters; empty only for a sector
/// (where it means "no `d`").
fn check_pattern(pattern: &str, may_be_empty: bool) -> Result<(), String> {
    if pattern.is_empty() && !may_be_empty {
        return Err("is empty".to_string());
    }
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!("is longer than {MAX_PATTERN_BYTES} bytes"));
    }
    if pattern.chars().any(char::is_control) {
        return Err("holds a control character".to_string());
    }
    Ok(())
}

/// Hexadecimal digits, either case, two per byte. The error never says where it failed: the
/// position and the character would be part of the key.
fn decode_hex(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let not_hex = || "not hexadecimal (an even number of digits 0-9, a-f)".to_string();
    if text.len() % 2 != 0 {
        return Err(not_hex());
    }
    let digit = |c: u8| (c as char).to_digit(16);
    let mut bytes = Zeroizing::new(Vec::with_capacity(text.len() / 2));
    for pair in text.as_bytes().chunks_exact(2) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => bytes.push((hi * 16 + lo) as u8),
            _ => return Err(not_hex()),
        }
    }
    Ok(bytes)
}

/// Standard base64 with padding. The `base64` crate's errors name the offending byte and its
/// offset, so only that it failed is said.
fn decode_base64(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(text.len())]);
    let len = engine
        .decode_slice(text, bytes.as_mut_slice())
        .map_err(|_| "not standard base64 (A-Z a-z 0-9 + /, padded with =)".to_string())?;
    bytes.truncate(len);
    Ok(bytes)
}

/// The raw bytes of `path`; at most one byte more than a key may have is read, so a wrong path
/// (a large file) costs nothing and is refused by the length check.
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PSK_BYTES + 1));
    file.take(MAX_PSK_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(bytes)
}

/// A YAML value as far as this file cares: strings (zeroed when dropped, since key text passes
/// through them), lists, mappings, and anything else only by kind, so that no error can quote
/// it.
enum Node {
    Str(Zeroizing<String>),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Other(&'static str),
}

impl Node {
    /// What this is, for an error message ("a number"), never what it holds.
    fn kind(&self) -> &'static str {
        match self {
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
            Node::Other(kind) => kind,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Other("a number"))
    }
    fn visit_char<E: de::Error>(self, c: char) -> Result<Node, E> {
        Ok(Node::Str(Zeroizing::new(c.to_string())))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Node, E> {
        Ok(Node::Str(Zeroizing::new(s.to_string())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Node, E> {
        Ok(Node::Str(Zeroizing::new(s)))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Other("binary data"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Other("empty (null)"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Other("empty (null)"))
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        // Bounded by the document, which serde-saphyr's default budget bounds.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut pairs = Vec::new();
        while let Some(pair) = map.next_entry()? {
            pairs.push(pair);
        }
        Ok(Node::Map(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key material used below; no error or Debug output may contain any of it, in any form.
    const SECRETS: [&str; 6] = [
        "7365637265742d6e6f646531",
        "secret-node1",
        "c2VjcmV0LW5vZGUy",
        "secret-node2",
        "raw-file-key",
        "736563",
    ];

    fn assert_no_secret(text: &str) {
        for secret in SECRETS {
            assert!(
                !text.to_lowercase().contains(&secret.to_lowercase()),
                "{secret:?} leaked in {text:?}"
            );
        }
    }

    fn parse(yaml: &str) -> Result<Identities, IdentitiesError> {
        Identities::from_yaml(yaml, Path::new("/nonexistent"))
    }

    fn err(yaml: &str) -> String {
        let error = parse(yaml).expect_err(yaml);
        let text = error.to_string();
        assert_no_secret(&text);
        assert_no_secret(&format!("{error:?}"));
        text
    }

    const EXAMPLE: &str = r#"
identities:
  - identity: node1
    psk_hex: "7365637265742d6e6f646531"
  - identity: node2
    psk_base64: "c2VjcmV0LW5vZGUy"
    endpoints: ["node2", "sensor-*"]
    sector: "plant*"
  - identity: file-key
    psk_file: keys/file-key.bin
    endpoints: []
  - identity: "CN-only.example"
    endpoints: ["*"]
    sector: ""
"#;

    fn example() -> (tempfile::TempDir, Identities) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/file-key.bin"), b"raw-file-key").unwrap();
        let path = dir.path().join("identities.yaml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let identities = Identities::load(&path).unwrap();
        (dir, identities)
    }

    #[test]
    fn every_key_form_loads() {
        let (_dir, ids) = example();
        assert_eq!(ids.len(), 4);
        assert!(!ids.is_empty());
        assert_eq!(
            ids.identities().collect::<Vec<_>>(),
            ["node1", "node2", "file-key", "CN-only.example"]
        );
        assert_eq!(ids.psk(b"node1"), Some(&b"secret-node1"[..]));
        assert_eq!(ids.psk(b"node2"), Some(&b"secret-node2"[..]));
        assert_eq!(ids.psk(b"file-key"), Some(&b"raw-file-key"[..]));
        // Certificate only: known, but no key.
        assert_eq!(ids.psk(b"CN-only.example"), None);
        assert!(ids.contains("CN-only.example"));
        assert_eq!(ids.psk(b"nobody"), None);
        assert_eq!(ids.psk(&[0xff, 0xfe]), None);
        assert!(!ids.contains("nobody"));
        assert!(Identities::default().is_empty());
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/node7.key"), [7u8; 16]).unwrap();
        let text = include_str!("../../docs/identities.example.yaml");
        let ids = Identities::from_yaml(text, dir.path()).unwrap();
        assert_eq!(ids.len(), 5);
        assert_eq!(ids.psk(b"node7"), Some(&[7u8; 16][..]));
        assert_eq!(ids.psk(b"gateway-hall-3"), Some(&b"secret-hall-3"[..]));
        assert_eq!(ids.psk(b"sensor-42.example"), None);
        let allowed =
            |id: &str, ep: &str, d: Option<&str>| ids.authorize_registration(id, ep, d).is_ok();
        assert!(allowed("gateway-hall-3", "hall3-door", Some("plant-a")));
        assert!(allowed(
            "gateway-hall-3",
            "east-hall3-temp",
            Some("plant-a")
        ));
        assert!(!allowed("gateway-hall-3", "hall3-door", None));
        assert!(allowed("sensor-42.example", "sensor-42-b", None));
        assert!(!allowed(
            "sensor-42.example",
            "sensor-42-b",
            Some("plant-a")
        ));
        assert!(!allowed("lookup-tool", "lookup-tool", None));
    }

    #[test]
    fn upper_case_hex_and_surrounding_blanks_are_accepted() {
        let ids = parse("identities:\n  - {identity: a, psk_hex: \" 0A0b \"}\n").unwrap();
        assert_eq!(ids.psk(b"a"), Some(&[0x0a, 0x0b][..]));
    }

    #[test]
    fn yaml_1_1_booleans_are_names() {
        let ids = parse("identities:\n  - {identity: n}\n  - {identity: yes, endpoints: [on]}\n")
            .unwrap();
        assert_eq!(ids.identities().collect::<Vec<_>>(), ["n", "yes"]);
        assert_eq!(ids.authorize_registration("yes", "on", None), Ok(()));
        let text = err("identities:\n  - {identity: true}\n");
        assert!(text.contains("not a boolean (quote it)"), "{text}");
    }

    #[test]
    fn endpoints_default_to_exactly_the_identity() {
        let ids = parse("identities:\n  - {identity: \"node*\", psk_hex: \"01\"}\n").unwrap();
        assert_eq!(ids.authorize_registration("node*", "node*", None), Ok(()));
        // The identity is a name, not a pattern.
        assert_eq!(
            ids.authorize_registration("node*", "node1", None),
            Err(IdentityRefusal::EndpointNotAllowed { ep: "node1".into() })
        );
    }

    #[test]
    fn registrations_are_checked_against_endpoints_and_sector() {
        let (_dir, ids) = example();
        // node1: its own name, any sector or none.
        assert_eq!(ids.authorize_registration("node1", "node1", None), Ok(()));
        assert_eq!(
            ids.authorize_registration("node1", "node1", Some("x")),
            Ok(())
        );
        assert_eq!(
            ids.authorize_registration("node1", "node2", None),
            Err(IdentityRefusal::EndpointNotAllowed { ep: "node2".into() })
        );
        // node2: globs, and a sector pattern that a missing d does not match.
        assert_eq!(
            ids.authorize_registration("node2", "sensor-7", Some("plant3")),
            Ok(())
        );
        assert_eq!(
            ids.authorize_registration("node2", "node2", Some("plant")),
            Ok(())
        );
        assert_eq!(
            ids.authorize_registration("node2", "sensor-7", Some("office")),
            Err(IdentityRefusal::SectorNotAllowed { d: "office".into() })
        );
        assert_eq!(
            ids.authorize_registration("node2", "sensor-7", None),
            Err(IdentityRefusal::SectorNotAllowed { d: String::new() })
        );
        assert_eq!(
            ids.authorize_registration("node2", "actuator-1", Some("plant3")),
            Err(IdentityRefusal::EndpointNotAllowed {
                ep: "actuator-1".into()
            })
        );
        // file-key: `endpoints: []` registers nothing.
        assert_eq!(
            ids.authorize_registration("file-key", "file-key", None),
            Err(IdentityRefusal::EndpointNotAllowed {
                ep: "file-key".into()
            })
        );
        // The certificate identity: any name, but only without a sector (`sector: ""`).
        assert_eq!(
            ids.authorize_registration("CN-only.example", "anything", None),
            Ok(())
        );
        assert!(matches!(
            ids.authorize_registration("CN-only.example", "anything", Some("p")),
            Err(IdentityRefusal::SectorNotAllowed { .. })
        ));
        assert_eq!(
            ids.authorize_registration("stranger", "node1", None),
            Err(IdentityRefusal::UnknownIdentity)
        );
    }

    #[test]
    fn refusals_read_as_diagnostic_payloads() {
        let messages = [
            IdentityRefusal::UnknownIdentity.to_string(),
            IdentityRefusal::EndpointNotAllowed { ep: "n1".into() }.to_string(),
            IdentityRefusal::SectorNotAllowed { d: "p".into() }.to_string(),
            IdentityRefusal::SectorNotAllowed { d: String::new() }.to_string(),
        ];
        assert_eq!(
            messages,
            [
                "identity not known to this resource directory",
                "endpoint name \"n1\" not allowed for this identity",
                "sector \"p\" not allowed for this identity",
                "this identity must register with a sector (d)",
            ]
        );
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let (_dir, ids) = example();
        let debug = format!("{ids:?}");
        assert_no_secret(&debug);
        // Nor the bytes as a list of numbers (what a derived Debug of a Vec<u8> prints).
        assert!(!debug.contains("115, 101, 99"), "{debug}");
        assert!(
            debug.contains("<redacted>") && debug.contains("node2"),
            "{debug}"
        );
    }

    #[test]
    fn file_level_errors() {
        assert!(err("identities: [").starts_with("not valid YAML"));
        assert!(err("- identity: a\n").contains("mapping with an `identities:` list"));
        assert!(err("other: 1\n").contains("unknown key \"other\""));
        assert!(err("{}\n").contains("no `identities:` list"));
        assert!(err("identities:\n").contains("must be a list"));
        assert!(err("identities: x\n").contains("must be a list"));
        assert!(err("").contains("identities"));
        assert!(parse("identities: []\n").unwrap().is_empty());
    }

    #[test]
    fn each_entry_error_names_the_entry_and_the_problem() {
        let ok = "  - {identity: ok, psk_hex: \"7365637265742d6e6f646531\"}\n";
        for (entry, problem) in [
            ("- just-a-name", "entry 2 (no identity): must be a mapping"),
            (
                "- {psk_hex: \"736563\"}",
                "entry 2 (no identity): has no `identity`",
            ),
            (
                "- {identity: 7, psk_hex: \"736563\"}",
                "entry 2 (no identity): `identity` must be a string, not a number",
            ),
            ("- {identity: \"\"}", "(identity \"\"): `identity` is empty"),
            (
                "- {identity: \"a\\tb\"}",
                "`identity` holds a control character",
            ),
            (
                "- {identity: ok}",
                "entry 2 (identity \"ok\"): the same identity as entry 1",
            ),
            (
                "- {identity: n, psk: \"736563\"}",
                "entry 2 (identity \"n\"): unknown key \"psk\" (expected one of identity, psk_hex",
            ),
            (
                "- {identity: n, psk_hex: \"736563\", psk_base64: \"c2VjcmV0LW5vZGUy\"}",
                "entry 2 (identity \"n\"): has psk_hex and psk_base64: give at most one key",
            ),
            (
                "- {identity: n, psk_hex: \"secret-node1\"}",
                "(identity \"n\"): `psk_hex`: not hexadecimal",
            ),
            (
                "- {identity: n, psk_hex: \"736\"}",
                "`psk_hex`: not hexadecimal",
            ),
            (
                "- {identity: n, psk_hex: 736563}",
                "`psk_hex` must be a string, not a number (quote it)",
            ),
            (
                "- {identity: n, psk_hex: \"\"}",
                "`psk_hex`: the key is 0 bytes; a key is 1 to 64",
            ),
            (
                "- {identity: n, psk_base64: \"secret-node2\"}",
                "`psk_base64`: not standard base64",
            ),
            (
                "- {identity: n, psk_file: nope.bin}",
                "(identity \"n\"): `psk_file`: cannot read /nonexistent/nope.bin",
            ),
            (
                "- {identity: n, endpoints: x}",
                "`endpoints` must be a list of patterns (`[]` for none), not a string",
            ),
            (
                "- {identity: n, endpoints: }",
                "`endpoints` must be a list of patterns (`[]` for none), not empty (null)",
            ),
            (
                "- {identity: n, endpoints: [\"\"]}",
                "`endpoints` pattern \"\": is empty",
            ),
            (
                "- {identity: n, endpoints: [1]}",
                "`endpoints` holds a number, not a pattern string",
            ),
            (
                "- {identity: n, sector: [a]}",
                "`sector` must be a pattern string, not a list",
            ),
        ] {
            let yaml = format!("identities:\n{ok}  {entry}\n");
            let text = err(&yaml);
            assert!(text.contains(problem), "{entry}: {text}");
        }
        let long = "x".repeat(MAX_IDENTITY_BYTES + 1);
        let text = err(&format!("identities:\n  - {{identity: {long}}}\n"));
        assert!(text.contains("is 129 bytes; at most 128"), "{text}");
        parse(&format!("identities:\n  - {{identity: {}}}\n", &long[1..])).unwrap();
        let long_key = "ab".repeat(MAX_PSK_BYTES + 1);
        let text = err(&format!(
            "identities:\n  - {{identity: n, psk_hex: \"{long_key}\"}}\n"
        ));
        assert!(text.contains("the key is 65 bytes"), "{text}");
        assert!(!text.contains(&long_key), "{text}");
        let long_pattern = "p".repeat(MAX_PATTERN_BYTES + 1);
        let text = err(&format!(
            "identities:\n  - {{identity: n, sector: {long_pattern}}}\n"
        ));
        assert!(text.contains("is longer than 255 bytes"), "{text}");
    }

    #[test]
    fn a_key_file_holds_raw_bytes_and_its_size_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "identities:\n  - {identity: f, psk_file: k.bin}\n";
        std::fs::write(dir.path().join("k.bin"), [0u8, 10, 255]).unwrap();
        let ids = Identities::from_yaml(yaml, dir.path()).unwrap();
        assert_eq!(ids.psk(b"f"), Some(&[0u8, 10, 255][..]));
        // A newline is part of the key: the file is not text.
        std::fs::write(dir.path().join("k.bin"), b"key\n").unwrap();
        let ids = Identities::from_yaml(yaml, dir.path()).unwrap();
        assert_eq!(ids.psk(b"f"), Some(&b"key\n"[..]));
        for (content, problem) in [
            (vec![], "the key is 0 bytes"),
            (vec![7u8; 10_000], "the key is 65 bytes"),
        ] {
            std::fs::write(dir.path().join("k.bin"), content).unwrap();
            let text = Identities::from_yaml(yaml, dir.path())
                .unwrap_err()
                .to_string();
            assert!(text.contains(problem), "{text}");
        }
        // An absolute path is used as it is.
        let absolute = dir.path().join("abs.bin");
        std::fs::write(&absolute, b"k").unwrap();
        let yaml = format!(
            "identities:\n  - {{identity: f, psk_file: {:?}}}\n",
            absolute.display().to_string()
        );
        let ids = Identities::from_yaml(&yaml, Path::new("/elsewhere")).unwrap();
        assert_eq!(ids.psk(b"f"), Some(&b"k"[..]));
    }

    #[test]
    fn syntax_errors_do_not_quote_the_file() {
        // A broken line holding a key: the parser's snippet would show it.
        let text = err(
            "identities:\n  - identity: n\n    psk_hex: \"7365637265742d6e6f646531\n  - x: [\n",
        );
        assert!(text.starts_with("not valid YAML"), "{text}");
        let text =
            err("identities:\n  - {identity: n, psk_hex: \"736563\", psk_hex: \"736563\"}\n");
        assert!(!text.is_empty());
    }

    #[test]
    fn load_names_the_file_and_a_missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.yaml");
        let e = Identities::load(&path).unwrap_err();
        assert!(matches!(e, IdentitiesError::Read { .. }), "{e:?}");
        assert!(e.to_string().contains("ids.yaml"), "{e}");
        std::fs::write(&path, "identities:\n  - {identity: n, psk_hex: \"zz\"}\n").unwrap();
        let e = Identities::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("ids.yaml: identities entry 1 (identity \"n\"): `psk_hex`"),
            "{e}"
        );
    }

    #[test]
    fn keys_compare_by_content_without_showing_it() {
        assert_eq!(Psk(b"abc".to_vec()), Psk(b"abc".to_vec()));
        assert_ne!(Psk(b"abc".to_vec()), Psk(b"abd".to_vec()));
        assert_ne!(Psk(b"abc".to_vec()), Psk(b"ab".to_vec()));
        assert_eq!(format!("{:?}", Psk(b"abc".to_vec())), "<redacted>");
    }
}
