//! The inverted attribute indexes: (attribute name, value word) to the ids holding it, at
//! link level and at endpoint level, in `BTreeMap`s so that exact and prefix (`rt=temp*`)
//! filters are both range scans (RFC 9176 §7 lookup filters).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::Index;
use crate::registry::model::{EndpointName, Registration, RegistrationId};

/// Attribute names with an inverted index, at both levels: link parameters and endpoint
/// attributes (`d` and extra attributes; `ep` is served by `by_name`). Lookup cross-matching
/// (RFC 9176 §6.2) lets a filter match at either level, so the RD unions both indexes; an index
/// on one level only would silently drop matches. Values are indexed as their whitespace-
/// separated words (the list attributes `rt`, `if`, `rel`, `ct`; for the others a value holding
/// a space is rare), so an index hit is a superset of the exact matches for any filter value
/// without whitespace; the RD does not pre-select on values with whitespace.
const INDEXED_LINK_ATTRS: [&str; 7] = ["rt", "if", "rel", "ct", "et", "d", "ep"];

/// Endpoint attributes with an inverted index (`ep` through `by_name`).
const INDEXED_ENDPOINT_ATTRS: [&str; 7] = ["ep", "d", "et", "rt", "if", "rel", "ct"];

/// name → value → ids. Two levels so that every query and update borrows `&str` keys (no
/// allocation per lookup), and a prefix filter is a range over one name's values.
pub(super) type AttrIndex = BTreeMap<String, BTreeMap<String, BTreeSet<RegistrationId>>>;

impl Index {
    /// Ids of live registrations with a link whose attribute `name` has `value` (one of its
    /// space-separated values), or a value starting with `value` when `prefix`. `None` when
    /// `name` is not indexed: the caller must filter by scanning.
    pub fn ids_with_link_attr(
        &self,
        name: &str,
        value: &str,
        prefix: bool,
    ) -> Option<BTreeSet<RegistrationId>> {
        if !INDEXED_LINK_ATTRS.contains(&name) {
            return None;
        }
        Some(lookup(&self.link_attrs, name, value, prefix))
    }

    /// Like [`Self::ids_with_link_attr`] for the endpoint attributes `ep`, `d` and `et`.
    pub(crate) fn ids_with_endpoint_attr(
        &self,
        name: &str,
        value: &str,
        prefix: bool,
    ) -> Option<BTreeSet<RegistrationId>> {
        match name {
            "ep" if prefix => Some(self.ids_with_ep_prefix(value)),
            "ep" => Some(match EndpointName::new(value) {
                Ok(ep) => self.find_ep(&ep).map(|r| r.id).collect(),
                Err(_) => BTreeSet::new(),
            }),
            _ if INDEXED_ENDPOINT_ATTRS.contains(&name) => {
                Some(lookup(&self.endpoint_attrs, name, value, prefix))
            }
            _ => None,
        }
    }
}

pub(super) fn for_each_link_key(reg: &Registration, mut f: impl FnMut(&str, &str)) {
    for link in &reg.links {
        for param in &link.params {
            if !INDEXED_LINK_ATTRS.contains(&param.name.as_str()) {
                continue;
            }
            if let Some(value) = &param.value {
                for word in value.split_ascii_whitespace() {
                    f(&param.name, word);
                }
            }
        }
    }
}

/// `ep` is not listed here: `by_name` serves it without copying every name.
pub(super) fn for_each_endpoint_key(reg: &Registration, mut f: impl FnMut(&str, &str)) {
    if let Some(d) = &reg.d {
        for word in d.as_str().split_ascii_whitespace() {
            f("d", word);
        }
    }
    for attr in &reg.attrs {
        let name = attr.name.as_str();
        if name == "ep" || name == "d" || !INDEXED_ENDPOINT_ATTRS.contains(&name) {
            continue;
        }
        if let Some(value) = &attr.value {
            for word in value.split_ascii_whitespace() {
                f(name, word);
            }
        }
    }
}

pub(super) fn add(index: &mut AttrIndex, name: &str, value: &str, id: RegistrationId) {
    let values = match index.get_mut(name) {
        Some(values) => values,
        None => index.entry(name.to_owned()).or_default(),
    };
    match values.get_mut(value) {
        Some(ids) => {
            ids.insert(id);
        }
        None => {
            values.insert(value.to_owned(), BTreeSet::from([id]));
        }
    }
}

pub(super) fn drop_id(index: &mut AttrIndex, name: &str, value: &str, id: RegistrationId) {
    let Some(values) = index.get_mut(name) else {
        return;
    };
    if let Some(ids) = values.get_mut(value) {
        ids.remove(&id);
        if ids.is_empty() {
            values.remove(value);
        }
    }
    if values.is_empty() {
        index.remove(name);
    }
}

fn lookup(index: &AttrIndex, name: &str, value: &str, prefix: bool) -> BTreeSet<RegistrationId> {
    let Some(values) = index.get(name) else {
        return BTreeSet::new();
    };
    if !prefix {
        return values.get(value).cloned().unwrap_or_default();
    }
    let mut ids = BTreeSet::new();
    let from: (Bound<&str>, Bound<&str>) = (Bound::Included(value), Bound::Unbounded);
    for (v, set) in values.range::<str, _>(from) {
        if !v.starts_with(value) {
            break;
        }
        ids.extend(set.iter().copied());
    }
    ids
}
