//! The link-format data model: what the parser returns and the serializer writes.
//!
//! With the `serde` feature, the short field names (`t`, `p`, `n`, `v`) are the coap-gateway
//! registry's stored form; keep them as they are.

use compact_str::CompactString;

/// One target attribute (`rt="temperature"`, `ct=40`, or the valueless `obs`).
///
/// Names are stored lower-case (RFC 8288 §3: parameter names are case-insensitive); values are
/// stored unquoted and unescaped, exactly as the device meant them.
///
/// Names and values are [`CompactString`]s: a registry of 100,000 devices holds millions of
/// them, nearly all shorter than 24 bytes (`rt`, `temperature`), which it keeps inline instead of
/// in a heap block each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Param {
    #[cfg_attr(feature = "serde", serde(rename = "n"))]
    pub name: CompactString,
    #[cfg_attr(
        feature = "serde",
        serde(rename = "v", default, skip_serializing_if = "Option::is_none")
    )]
    pub value: Option<CompactString>,
}

impl Param {
    pub fn new(name: impl Into<CompactString>, value: Option<impl Into<CompactString>>) -> Self {
        Param {
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    /// Drop spare capacity (a parser's or a builder's) before the parameter is kept for long.
    pub fn shrink_to_fit(&mut self) {
        self.name.shrink_to_fit();
        if let Some(v) = &mut self.value {
            v.shrink_to_fit();
        }
    }
}

/// One link: `<target>` followed by its parameters, in the order the device sent them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Link {
    #[cfg_attr(feature = "serde", serde(rename = "t"))]
    pub target: CompactString,
    #[cfg_attr(
        feature = "serde",
        serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")
    )]
    pub params: Vec<Param>,
}

impl Link {
    pub fn new(target: impl Into<CompactString>) -> Self {
        Link {
            target: target.into(),
            params: Vec::new(),
        }
    }

    /// Drop spare capacity before the link is kept for long (see [`Param::shrink_to_fit`]).
    pub fn shrink_to_fit(&mut self) {
        self.target.shrink_to_fit();
        self.params.shrink_to_fit();
        self.params.iter_mut().for_each(Param::shrink_to_fit);
    }

    /// Builder-style: append a parameter.
    pub fn with(mut self, name: &str, value: Option<&str>) -> Self {
        self.params.push(Param::new(name, value));
        self
    }

    /// Whether a parameter of that name is present (valued or not), e.g. `obs`.
    pub fn has(&self, name: &str) -> bool {
        self.params.iter().any(|p| p.name == name)
    }

    /// The first value of the named parameter, if it has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.value.as_deref())
    }

    /// Every value of the named parameter (parameters may repeat).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |p| p.name == name)
            .filter_map(|p| p.value.as_deref())
    }

    /// The `anchor` parameter, if the link has one.
    pub fn anchor(&self) -> Option<&str> {
        self.value("anchor")
    }
}
