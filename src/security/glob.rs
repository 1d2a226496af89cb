//! The `*` patterns of the identities file (`endpoints`, `sector`): `*` stands for any run of
//! characters (none included); every other character stands for itself. There is no escape and
//! no `?`: endpoint names and sectors are chosen by the operator, and a pattern language any
//! richer would only be one more thing to get wrong in an authorization rule.
//!
//! Matching is linear in the name and the pattern, whatever the pattern: the parts between
//! stars are found left to right, each at its leftmost occurrence, which is enough when `*` is
//! the only wildcard (a later part can always use whatever an earlier, leftmost match left
//! over). No backtracking, so `*a*a*a*a*b` against a long run of `a` costs one pass, not an
//! exponential search.

use std::fmt;

/// A compiled pattern. Two patterns are equal when they match the same way (the same parts
/// between the same stars).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    /// The text between the stars; one part means no star (the name must equal it).
    parts: Vec<Box<str>>,
}

impl Glob {
    /// `pattern` with `*` as the wildcard.
    pub(crate) fn new(pattern: &str) -> Glob {
        Glob {
            parts: pattern.split('*').map(Box::from).collect(),
        }
    }

    /// Exactly `name`, a `*` in it included (an identity used as its own endpoint name).
    pub(crate) fn literal(name: &str) -> Glob {
        Glob {
            parts: vec![Box::from(name)],
        }
    }

    /// Whether `name` matches the whole pattern.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return name.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return name == &**first;
        };
        if name.len() < first.len() + last.len()
            || !name.starts_with(&**first)
            || !name.ends_with(&**last)
        {
            return false;
        }
        // Both ends are char boundaries: `starts_with`/`ends_with` matched whole strings there.
        let mut unmatched = &name[first.len()..name.len() - last.len()];
        for part in middle {
            match unmatched.find(&**part) {
                Some(at) => unmatched = &unmatched[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// The pattern as written (a literal containing `*` would print like a pattern: none is ever
/// printed where that matters, since only an identity's own name is a literal).
impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts.join("*"))
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).matches(name)
    }

    #[test]
    fn no_star_means_the_whole_name() {
        assert!(m("node1", "node1"));
        assert!(!m("node1", "node10"));
        assert!(!m("node1", "xnode1"));
        assert!(!m("node1", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn stars_match_any_run_including_none() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("**", ""));
        assert!(m("node-*", "node-"));
        assert!(m("node-*", "node-17"));
        assert!(!m("node-*", "node"));
        assert!(m("*-temp", "kitchen-temp"));
        assert!(!m("*-temp", "kitchen-temp2"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("plant*/line*", "plant3/line12"));
        assert!(!m("plant*/line*", "plant3-line12"));
    }

    #[test]
    fn prefix_and_suffix_may_not_overlap() {
        // "aba" starts with "ab" and ends with "ba", but only by sharing the "b".
        assert!(!m("ab*ba", "aba"));
        assert!(m("ab*ba", "abba"));
        assert!(!m("a*a", "a"));
        assert!(m("a*a", "aa"));
    }

    #[test]
    fn leftmost_middle_parts_never_need_backtracking() {
        assert!(m("*ab*abc*", "abababc"));
        assert!(m("*aa*a", "aaa"));
        assert!(!m("*aa*a", "aa"));
        assert!(m("x*yz*yz", "xyzyz"));
    }

    #[test]
    fn non_ascii_names_are_matched_on_char_boundaries() {
        assert!(m("capteur-*-é", "capteur-ü-é"));
        assert!(m("*é*", "é"));
        assert!(!m("é*é", "é"));
    }

    #[test]
    fn a_literal_treats_a_star_as_itself() {
        assert!(Glob::literal("node*").matches("node*"));
        assert!(!Glob::literal("node*").matches("node1"));
        assert_ne!(Glob::literal("node*"), Glob::new("node*"));
        assert_eq!(Glob::new("node*"), Glob::new("node*"));
        assert_eq!(Glob::new("a*b").to_string(), "a*b");
    }

    /// A backtracking matcher takes on the order of C(n, stars) steps here (never finishing);
    /// this one makes one pass per part. No clock is read: a regression shows as a test that
    /// does not finish.
    #[test]
    fn pathological_patterns_stay_linear() {
        let long_a = "a".repeat(1 << 20);
        assert!(!m("*a*a*a*a*b", &long_a));
        assert!(!m("*a*a*a*a*a*a*a*a*a*a*a*a*b*", &long_a));
        assert!(m("*a*a*a*a*a", &long_a));
        let mut almost = "ab".repeat(1 << 18);
        assert!(!m("*ab*ab*ab*abb*", &almost));
        almost.push('b');
        assert!(m("*ab*ab*ab*abb*", &almost));
        let pattern = format!("*{}b*", "a".repeat(1_000));
        assert!(!m(&pattern, &long_a));
    }
}
