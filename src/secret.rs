//! `Secret`: a config value (the platform token) that never prints, so a logged or debugged
//! config cannot leak it.

use std::fmt;

use serde::Deserialize;

/// A secret that never prints: `Debug` and `Display` show only whether it is set.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that must send it (the Authorization header).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn secrets_do_not_print() {
        let c = Config::from_yaml("platform:\n  token: hunter2\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.platform.token.expose(), "hunter2");
    }
}
