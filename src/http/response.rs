//! HTTP/1.1 response heads, without I/O. A live FLV body never ends on its own,
//! so those responses close the connection (`Connection: close`), as do errors;
//! responses with a length (HLS, the page, the API) may keep it alive
//! ([`Options`]), since HLS players poll several times a second. Every response allows any origin (CORS), so browser
//! players and dashboards on other sites can use the server.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::utc::UtcTime;

/// The reason phrase of the statuses rtmpd sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `Content-Length: n` (also sent for HEAD, with no body following).
    Length(usize),
    /// `Transfer-Encoding: chunked`: a live stream to an HTTP/1.1 client.
    Chunked,
    /// No length: the body ends when the connection closes (HTTP/1.0 clients).
    UntilClose,
    /// No body at all (101, 204).
    None,
}

/// What a response says about the connection and caching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options<'a> {
    /// `Connection: keep-alive` (another request may follow) instead of `close`.
    pub keep_alive: bool,
    pub cache_control: &'a str,
}

impl Options<'_> {
    /// Close after the response; nothing cached.
    pub const CLOSE: Options<'static> = Options {
        keep_alive: false,
        cache_control: "no-cache, no-store",
    };
}

/// The status line and headers, ending with the blank line. `extra` headers come
/// after the standard ones. The connection closes after the response.
pub fn head(
    status: u16,
    content_type: Option<&str>,
    body: Body,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    head_with(status, content_type, body, extra, Options::CLOSE)
}

/// [`head`] with a say on keep-alive and caching.
pub fn head_with(
    status: u16,
    content_type: Option<&str>,
    body: Body,
    extra: &[(&str, &str)],
    options: Options,
) -> Vec<u8> {
    let mut h = String::with_capacity(256);
    let _ = write!(h, "HTTP/1.1 {status} {}\r\n", reason(status));
    let _ = write!(h, "Server: rtmpd/{}\r\n", env!("CARGO_PKG_VERSION"));
    let _ = write!(h, "Date: {}\r\n", http_date(SystemTime::now()));
    if status != 101 {
        h.push_str(if options.keep_alive {
            "Connection: keep-alive\r\n"
        } else {
            "Connection: close\r\n"
        });
        let _ = write!(h, "Cache-Control: {}\r\n", options.cache_control);
        h.push_str("Access-Control-Allow-Origin: *\r\n");
    }
    if let Some(ct) = content_type {
        let _ = write!(h, "Content-Type: {ct}\r\n");
    }
    match body {
        Body::Length(n) => {
            let _ = write!(h, "Content-Length: {n}\r\n");
        }
        Body::Chunked => h.push_str("Transfer-Encoding: chunked\r\n"),
        Body::UntilClose | Body::None => {}
    }
    for (name, value) in extra {
        let _ = write!(h, "{name}: {value}\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// A complete response with a short plain-text body saying what went wrong.
pub fn text(status: u16, message: &str, with_body: bool, extra: &[(&str, &str)]) -> Vec<u8> {
    text_with(status, message, with_body, extra, Options::CLOSE)
}

/// [`text`] with a say on keep-alive and caching.
pub fn text_with(
    status: u16,
    message: &str,
    with_body: bool,
    extra: &[(&str, &str)],
    options: Options,
) -> Vec<u8> {
    let body = format!("{status} {}: {message}\n", reason(status));
    let mut out = head_with(
        status,
        Some("text/plain; charset=utf-8"),
        Body::Length(body.len()),
        extra,
        options,
    );
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The prefix of one chunk of a chunked body; the chunk ends with `\r\n`.
pub fn chunk_prefix(len: usize) -> String {
    format!("{len:x}\r\n")
}

/// The last chunk of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// An IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    let t = UtcTime::from_system(t);
    let weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][t.weekday as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(t.month - 1) as usize];
    format!(
        "{weekday}, {:02} {month} {} {:02}:{:02}:{:02} GMT",
        t.day, t.year, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates() {
        let at = |secs| http_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
    }

    #[test]
    fn error_response_has_length_and_body() {
        let out = String::from_utf8(text(404, "no stream live/x", true, &[])).unwrap();
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
        assert!(out.contains("\r\nContent-Length: 32\r\n"), "{out}");
        assert!(out.contains("\r\nAccess-Control-Allow-Origin: *\r\n"));
        assert!(
            out.ends_with("\r\n\r\n404 Not Found: no stream live/x\n"),
            "{out}"
        );
        let head_only = String::from_utf8(text(404, "no stream live/x", false, &[])).unwrap();
        assert!(
            head_only.ends_with("Content-Length: 32\r\n\r\n"),
            "{head_only}"
        );
    }

    #[test]
    fn stream_heads() {
        let out = String::from_utf8(head(200, Some("video/x-flv"), Body::Chunked, &[])).unwrap();
        assert!(out.contains("Transfer-Encoding: chunked\r\n"));
        assert!(!out.contains("Content-Length"));
        let ws =
            String::from_utf8(head(101, None, Body::None, &[("Upgrade", "websocket")])).unwrap();
        assert!(ws.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(!ws.contains("Connection: close"));
        assert!(ws.ends_with("Upgrade: websocket\r\n\r\n"));
        assert_eq!(chunk_prefix(0x1a2b), "1a2b\r\n");
    }
}
