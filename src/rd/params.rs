//! Query items of an RD request as an ordered multimap (RFC 9176 §5, §6.2; RFC 6570 form-style
//! queries).
//!
//! CoAP carries each query item in its own Uri-Query option, already decoded (RFC 7252 §6.4), so
//! items are taken as given: no percent-decoding here. Each item splits at its first `=`; an
//! item without `=` (`obs`) is valueless. Used by every request parser in `rd`.

use super::error::RdError;

/// One query item: `name=value` or a valueless `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryItem {
    pub name: String,
    pub value: Option<String>,
}

/// The query items in request order; names may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueryParams {
    items: Vec<QueryItem>,
}

/// Uri-Query option values as text. RFC 7252 §5.10 makes them UTF-8 strings; one that is not
/// UTF-8 is a bad request (4.00), as is an `ep` that cannot be stored as text.
pub(crate) fn decode_query<B: AsRef<[u8]>>(raw: &[B]) -> Result<Vec<String>, RdError> {
    raw.iter()
        .map(|b| {
            std::str::from_utf8(b.as_ref())
                .map(str::to_string)
                .map_err(|_| RdError::QueryNotUtf8)
        })
        .collect()
}

impl QueryParams {
    /// Splits each Uri-Query value at its first `=`. An empty name (`=x`, or an empty option) is
    /// refused with 4.00: it cannot be stored as an attribute nor used as a filter.
    pub(crate) fn parse<S: AsRef<str>>(query: &[S]) -> Result<QueryParams, RdError> {
        let mut items = Vec::with_capacity(query.len());
        for raw in query {
            let raw = raw.as_ref();
            let (name, value) = match raw.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (raw, None),
            };
            if name.is_empty() {
                return Err(RdError::EmptyParamName);
            }
            items.push(QueryItem {
                name: name.to_string(),
                value,
            });
        }
        Ok(QueryParams { items })
    }

    pub(crate) fn items(&self) -> &[QueryItem] {
        &self.items
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.items.iter().any(|i| i.name == name)
    }

    /// The value of a single-valued parameter (`ep`, `d`, `lt`, `base`, `page`, `count`):
    /// `None` when absent, 4.00 "Multiple values for X" when repeated, 4.00 when valueless.
    pub(crate) fn single(&self, name: &str) -> Result<Option<&str>, RdError> {
        let mut found = self.items.iter().filter(|i| i.name == name);
        let first = match found.next() {
            None => return Ok(None),
            Some(item) => item,
        };
        if found.next().is_some() {
            return Err(RdError::RepeatedParam(name.to_string()));
        }
        match &first.value {
            Some(v) => Ok(Some(v.as_str())),
            None => Err(RdError::ValuelessParam(name.to_string())),
        }
    }

    /// Every item whose name is not in `known`, in request order (the extra-attrs of RFC 9176 §5).
    pub(crate) fn others<'a>(
        &'a self,
        known: &'a [&str],
    ) -> impl Iterator<Item = &'a QueryItem> + 'a {
        self.items
            .iter()
            .filter(move |i| !known.contains(&i.name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(items: &[&str]) -> QueryParams {
        QueryParams::parse(items).unwrap()
    }

    #[test]
    fn splits_at_the_first_equals_and_keeps_order() {
        let p = q(&[
            "ep=node1",
            "base=coap://[::1]:5683",
            "obs",
            "x=a=b",
            "et=1",
            "et=2",
        ]);
        let names: Vec<_> = p.items().iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["ep", "base", "obs", "x", "et", "et"]);
        assert_eq!(p.items()[2].value, None);
        assert_eq!(p.items()[3].value.as_deref(), Some("a=b"));
        assert_eq!(p.single("base").unwrap(), Some("coap://[::1]:5683"));
    }

    #[test]
    fn query_options_must_be_utf8() {
        assert_eq!(
            decode_query(&[b"ep=node1".to_vec(), "d=ü".as_bytes().to_vec()]).unwrap(),
            ["ep=node1", "d=ü"]
        );
        let err = decode_query(&[b"ep=bad\xff\xfe".to_vec()]).unwrap_err();
        assert_eq!(err, RdError::QueryNotUtf8);
        assert_eq!(err.code(), (4, 0));
    }

    #[test]
    fn items_are_not_percent_decoded() {
        assert_eq!(q(&["ep=a%20b"]).single("ep").unwrap(), Some("a%20b"));
    }

    #[test]
    fn repeated_single_valued_param_is_4_00() {
        let err = q(&["ep=a", "ep=b"]).single("ep").unwrap_err();
        assert_eq!(err.code(), (4, 0));
        assert_eq!(err.to_string(), "Multiple values for ep");
    }

    #[test]
    fn valueless_single_valued_param_is_4_00() {
        assert_eq!(q(&["lt"]).single("lt").unwrap_err().code(), (4, 0));
        assert_eq!(q(&["lt=5"]).single("d").unwrap(), None);
    }

    #[test]
    fn empty_names_are_refused() {
        assert_eq!(
            QueryParams::parse(&["=x"]).unwrap_err(),
            RdError::EmptyParamName
        );
        assert_eq!(QueryParams::parse(&[""]).unwrap_err().code(), (4, 0));
    }

    #[test]
    fn others_skips_known_names() {
        let p = q(&["ep=a", "et=x", "lt=3", "foo"]);
        let rest: Vec<_> = p.others(&["ep", "lt"]).map(|i| i.name.as_str()).collect();
        assert_eq!(rest, ["et", "foo"]);
    }
}
