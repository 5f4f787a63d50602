//! Stream keys: the app and stream name a client publishes or plays, the rules a
//! name must follow (it becomes a file name once recording exists) and the split of
//! `name?query`. RTMP's session, the HTTP routes and the registry all name streams
//! this way, so the rules live here, below all three.

use std::fmt;

/// Longest app or stream name accepted by default; names become file names once
/// recording exists.
pub const MAX_NAME_LEN: usize = 256;

/// app + stream name, without the query string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub app: String,
    pub name: String,
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName {
    pub name: String,
    pub reason: &'static str,
}

impl fmt::Display for BadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "name {:?} refused: {}", self.name, self.reason)
    }
}

impl std::error::Error for BadName {}

/// Splits `name?query` and returns both halves; the query is kept for later use
/// (authentication tokens) but never becomes part of the key.
pub fn split_query(name: &str) -> (&str, Option<&str>) {
    match name.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (name, None),
    }
}

fn check_name(name: &str, max_len: usize) -> Result<(), BadName> {
    let refuse = |reason| {
        Err(BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("empty");
    }
    if name.len() > max_len {
        return refuse("too long");
    }
    if name.contains('/') || name.contains('\\') {
        return refuse("contains a slash");
    }
    if name == "." || name.contains("..") {
        return refuse("contains '..'");
    }
    if name.chars().any(char::is_control) {
        return refuse("contains control characters");
    }
    Ok(())
}

impl StreamKey {
    /// Validates both parts; query strings must already be stripped.
    pub fn new(app: &str, name: &str) -> Result<StreamKey, BadName> {
        StreamKey::with_max_len(app, name, MAX_NAME_LEN)
    }

    pub fn with_max_len(app: &str, name: &str, max_len: usize) -> Result<StreamKey, BadName> {
        check_name(app, max_len)?;
        check_name(name, max_len)?;
        Ok(StreamKey {
            app: app.to_owned(),
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(StreamKey::new("live", "cam1").is_ok());
        for bad in [
            "",
            "a/b",
            "..",
            "a..b",
            "x\0y",
            "tab\there",
            &"n".repeat(300),
        ] {
            assert!(
                StreamKey::new("live", bad).is_err(),
                "{bad:?} must be refused"
            );
        }
        assert!(StreamKey::new("", "x").is_err());
    }

    #[test]
    fn query_is_split_off() {
        assert_eq!(split_query("key?token=1&x=2"), ("key", Some("token=1&x=2")));
        assert_eq!(split_query("key"), ("key", None));
    }
}
