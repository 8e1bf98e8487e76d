//! A string that must never be printed: DSNs carry passwords.
//!
//! `Debug` and `Display` print a placeholder, so a secret cannot leak through a log line, an error
//! chain or a `{:?}` of a model struct by accident. The only way to the text is [`Secret::expose`],
//! which is easy to grep for.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret text. Call only where it is handed to the database driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces every occurrence of `secret` (when non-empty) in `text` with `***`.
///
/// Used on error texts that come from outside (driver, server) before they reach a log or a response,
/// as a second line of defence behind [`Secret`].
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_text() {
        let s = Secret::new("postgresql://u:hunter2@h/db");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "postgresql://u:hunter2@h/db");
    }

    #[test]
    fn redact_replaces_every_occurrence() {
        assert_eq!(redact("a hunter2 b hunter2", "hunter2"), "a *** b ***");
        assert_eq!(redact("abc", ""), "abc");
    }
}
