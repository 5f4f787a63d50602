//! Stream keys: the app and stream name a client publishes or plays, the one rule
//! by which every protocol turns what the client sent into a key, and the split of
//! `name?query`. RTMP's session, the HTTP routes and the registry all name streams
//! this way, so the rules live here, below all three.
//!
//! The rule ([`StreamKey::from_request`]): the query (from the first `?`) is split
//! off first and kept as sent; the app and the name are then percent-decoded
//! (`%20` is a space, `+` stays a plus) and the decoded names must be UTF-8 and
//! pass the name rules (not empty, not longer than `--max-name-length`, no `/`, `\`,
//! `..` or control characters: names become file names when a stream is recorded). So
//! `rtmp://HOST/live/my%20stream`, `rtmp://HOST/live/my stream` (OBS's key field)
//! and `http://HOST:8080/live/my%20stream.flv` all name the stream `live/my stream`.

use std::fmt;

/// Longest app or stream name accepted by default; names become file names when
/// a stream is recorded.
pub const MAX_NAME_LEN: usize = 256;

/// app + stream name, decoded, without the query string.
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

/// Which half of a key a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePart {
    App,
    Stream,
}

/// What is wrong with a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    /// Longer than the limit (`--max-name-length`), in bytes once decoded.
    TooLong {
        len: usize,
        max: usize,
    },
    Slash,
    DotDot,
    ControlCharacter,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

/// A name refused by the rules. `Display` says what is wrong without repeating
/// the name (the client knows it; a log line shows it once, with [`LogName`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName {
    pub part: NamePart,
    pub problem: NameProblem,
}

impl fmt::Display for BadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = match self.part {
            NamePart::App => "app name",
            NamePart::Stream => "stream name",
        };
        match &self.problem {
            NameProblem::Empty => write!(f, "{part} is empty"),
            NameProblem::TooLong { len, max } => {
                write!(
                    f,
                    "{part} is {len} bytes, longer than --max-name-length {max}"
                )
            }
            NameProblem::Slash => write!(f, "{part} contains '/' or '\\'"),
            NameProblem::DotDot => write!(f, "{part} is '.' or contains '..'"),
            NameProblem::ControlCharacter => write!(f, "{part} contains a control character"),
            NameProblem::BadEscape => write!(
                f,
                "{part} has a '%' that does not start an escape like %20 (write a '%' as %25)"
            ),
            NameProblem::NotUtf8 => write!(f, "{part} is not UTF-8 once its %-escapes are decoded"),
        }
    }
}

impl std::error::Error for BadName {}

/// Splits `name?query` at the first `?` and returns both halves, the query as
/// sent. The query is kept for later use (access control) but never becomes part
/// of the key.
pub fn split_query(name: &str) -> (&str, Option<&str>) {
    match name.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (name, None),
    }
}

/// Decodes `%XX` escapes; `Err` for a bad escape or a result that is not UTF-8.
/// Only `%` is special: `+` is a plus, as in a URL path.
pub fn percent_decode(text: &str) -> Result<String, NameProblem> {
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| Some((hex_digit(h[0])?, hex_digit(h[1])?)))
                .ok_or(NameProblem::BadEscape)?;
            out.push(hex.0 << 4 | hex.1);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| NameProblem::NotUtf8)
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn check_name(name: &str, max_len: usize) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > max_len {
        return Err(NameProblem::TooLong {
            len: name.len(),
            max: max_len,
        });
    }
    if name.contains('/') || name.contains('\\') {
        return Err(NameProblem::Slash);
    }
    if name == "." || name.contains("..") {
        return Err(NameProblem::DotDot);
    }
    if name.chars().any(char::is_control) {
        return Err(NameProblem::ControlCharacter);
    }
    Ok(())
}

impl StreamKey {
    /// A key from names that are already decoded (the server's own, a test's):
    /// checked against the rules with the default length limit, not decoded.
    pub fn new(app: &str, name: &str) -> Result<StreamKey, BadName> {
        let part = |part| move |problem| BadName { part, problem };
        check_name(app, MAX_NAME_LEN).map_err(part(NamePart::App))?;
        check_name(name, MAX_NAME_LEN).map_err(part(NamePart::Stream))?;
        Ok(StreamKey {
            app: app.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The key a client names, whichever protocol it speaks: `app` and `name` as
    /// the client sent them, the query already split off with [`split_query`] (RTMP)
    /// or with the request target's query (HTTP, `.flv` removed). Both are
    /// percent-decoded, then checked against the name rules, each at most `max_len`
    /// bytes once decoded. See the module's documentation.
    pub fn from_request(app: &str, name: &str, max_len: usize) -> Result<StreamKey, BadName> {
        let decode = |text, part| {
            percent_decode(text)
                .and_then(|decoded| check_name(&decoded, max_len).map(|()| decoded))
                .map_err(|problem| BadName { part, problem })
        };
        Ok(StreamKey {
            app: decode(app, NamePart::App)?,
            name: decode(name, NamePart::Stream)?,
        })
    }
}

/// A name a client sent, for a log line: quoted and escaped like a Rust string
/// (so control characters cannot forge log lines), and cut to its first
/// [`LogName::SHOWN`] characters with its length when it is longer.
pub struct LogName<'a>(pub &'a str);

impl LogName<'_> {
    pub const SHOWN: usize = 64;
}

impl fmt::Display for LogName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(LogName::SHOWN) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: &str, name: &str) -> Result<StreamKey, BadName> {
        StreamKey::from_request(app, name, MAX_NAME_LEN)
    }

    #[test]
    fn names_are_validated() {
        assert!(StreamKey::new("live", "cam1").is_ok());
        for bad in [
            "",
            "a/b",
            "a\\b",
            ".",
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
            assert!(key("live", bad).is_err(), "{bad:?} must be refused");
        }
        assert!(StreamKey::new("", "x").is_err());
    }

    #[test]
    fn names_are_percent_decoded_before_the_rules() {
        let decoded = |name| key("live", name).map(|k| k.name);
        assert_eq!(decoded("my%20stream").unwrap(), "my stream");
        assert_eq!(decoded("my stream").unwrap(), "my stream");
        assert_eq!(decoded("a+b").unwrap(), "a+b");
        assert_eq!(decoded("%C3%A9t%C3%A9").unwrap(), "été");
        assert_eq!(decoded("100%25").unwrap(), "100%");
        assert_eq!(
            decoded("a%3Fb").unwrap(),
            "a?b",
            "the query was split off before"
        );
        let problem = |name| key("live", name).unwrap_err().problem;
        assert_eq!(problem("a%2Fb"), NameProblem::Slash);
        assert_eq!(problem("a%5cb"), NameProblem::Slash);
        assert_eq!(problem("%2e"), NameProblem::DotDot);
        assert_eq!(problem("%2e%2e"), NameProblem::DotDot);
        assert_eq!(problem("a%00b"), NameProblem::ControlCharacter);
        assert_eq!(problem("a%0Ab"), NameProblem::ControlCharacter);
        assert_eq!(problem("%ff"), NameProblem::NotUtf8);
        assert_eq!(problem("100%"), NameProblem::BadEscape);
        assert_eq!(problem("%g0"), NameProblem::BadEscape);
        assert_eq!(problem("%+f"), NameProblem::BadEscape);
        assert_eq!(problem("%4"), NameProblem::BadEscape);
        // The app follows the same rule.
        assert_eq!(key("my%20app", "x").unwrap().app, "my app");
        assert_eq!(
            key("a%2fb", "x").unwrap_err(),
            BadName {
                part: NamePart::App,
                problem: NameProblem::Slash
            }
        );
    }

    #[test]
    fn the_limit_counts_decoded_bytes() {
        let max = |name, max_len| StreamKey::from_request("a", name, max_len);
        assert!(max("%20%20%20", 3).is_ok(), "three bytes once decoded");
        assert_eq!(
            max("abcd", 3).unwrap_err().to_string(),
            "stream name is 4 bytes, longer than --max-name-length 3"
        );
    }

    #[test]
    fn refusals_say_what_is_wrong_without_the_name() {
        let long = "n".repeat(300);
        assert_eq!(
            key("live", &long).unwrap_err().to_string(),
            "stream name is 300 bytes, longer than --max-name-length 256"
        );
        assert_eq!(key("", "x").unwrap_err().to_string(), "app name is empty");
        assert_eq!(
            key("live", "a..b").unwrap_err().to_string(),
            "stream name is '.' or contains '..'"
        );
    }

    #[test]
    fn log_names_are_escaped_and_cut() {
        assert_eq!(LogName("cam 1").to_string(), "\"cam 1\"");
        assert_eq!(LogName("a\nb").to_string(), "\"a\\nb\"");
        let long = "é".repeat(100);
        assert_eq!(
            LogName(&long).to_string(),
            format!("\"{}\"... (200 bytes)", "é".repeat(64))
        );
    }

    #[test]
    fn query_is_split_off() {
        assert_eq!(split_query("key?token=1&x=2"), ("key", Some("token=1&x=2")));
        assert_eq!(split_query("key"), ("key", None));
        assert_eq!(split_query("a%3Fb?q"), ("a%3Fb", Some("q")));
    }
}
