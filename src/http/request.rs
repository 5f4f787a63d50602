//! HTTP/1.x requests, without I/O: finding the end of the header block in the bytes
//! read so far, parsing the request line and headers within fixed bounds, and
//! mapping a request to what the server does with it (`route`). Everything here
//! takes untrusted bytes and answers with a `RequestError` or a `Route::Error`, never
//! a panic; the connection code turns those into 4xx responses.

use std::fmt;

/// Longest header block (request line + headers + blank line) accepted. Players and
/// browsers send well under 2 KiB; anything longer is refused with 431.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    /// Any other token; answered with 405.
    Other(String),
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Other(m) => m,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path as sent (still percent-encoded), without the query.
    pub path: String,
    /// What followed `?`, if anything; kept for later use (tokens), never routed on.
    pub query: Option<String>,
    pub version: Version,
    /// Names as sent; compare case-insensitively (use `header`).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether any `name` header lists `token` in its comma-separated value
    /// (case-insensitive), as `Connection: keep-alive, Upgrade` does.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// A WebSocket upgrade request (RFC 6455 §4.2.1), whatever its other merits.
    pub fn wants_websocket(&self) -> bool {
        self.header_has_token("upgrade", "websocket")
    }
}

/// Why the bytes are not an acceptable request. `Display` says what was wrong, for
/// the log and the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The header block is longer than [`MAX_HEADER_BYTES`].
    HeaderTooLarge {
        limit: usize,
    },
    TooManyHeaders {
        limit: usize,
    },
    /// The request line is not `METHOD SP TARGET SP HTTP/x.y`.
    BadRequestLine(String),
    /// `HTTP/2.0` and friends.
    UnsupportedVersion(String),
    /// Header line `line` (1 = the first after the request line) is malformed.
    BadHeader {
        line: usize,
        reason: &'static str,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::HeaderTooLarge { limit } => {
                write!(f, "request headers longer than {limit} bytes")
            }
            RequestError::TooManyHeaders { limit } => {
                write!(f, "more than {limit} request headers")
            }
            RequestError::BadRequestLine(line) => {
                write!(f, "malformed request line {line:?}")
            }
            RequestError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "HTTP version {v:?} is not supported (HTTP/1.0 and 1.1 are)"
                )
            }
            RequestError::BadHeader { line, reason } => {
                write!(f, "malformed header line {line}: {reason}")
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// Parses a request from the start of `buf`. `Ok(None)`: the header block is not
/// complete yet, read more. `Ok(Some((request, n)))`: the first `n` bytes were the
/// header block; anything after belongs to the connection (a WebSocket client may
/// send its first frame right behind the request).
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, RequestError> {
    let too_large = RequestError::HeaderTooLarge {
        limit: MAX_HEADER_BYTES,
    };
    let Some(end) = header_end(&buf[..buf.len().min(MAX_HEADER_BYTES)]) else {
        return if buf.len() >= MAX_HEADER_BYTES {
            Err(too_large)
        } else {
            Ok(None)
        };
    };
    let block = &buf[..end];
    let mut lines = block
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    // Tolerate blank lines before the request line (RFC 9112 §2.2).
    let request_line = lines.by_ref().find(|l| !l.is_empty()).unwrap_or_default();
    let (method, target, version) = parse_request_line(request_line)?;
    let (path, query) =
        split_target(&target).ok_or_else(|| RequestError::BadRequestLine(shown(request_line)))?;
    let mut headers = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(RequestError::TooManyHeaders { limit: MAX_HEADERS });
        }
        headers.push(parse_header(line, i + 1)?);
    }
    Ok(Some((
        Request {
            method,
            path,
            query,
            version,
            headers,
        },
        end,
    )))
}

/// The length of the header block including its blank line, if it is complete.
/// Lines may end in CRLF or, leniently, LF alone.
fn header_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    let mut seen_content = false;
    for (i, &b) in buf.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = &buf[line_start..i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() && seen_content {
            return Some(i + 1);
        }
        seen_content |= !line.is_empty();
        line_start = i + 1;
    }
    None
}

/// A refused request line as the log and the client are shown it: without its
/// query, which may hold a secret or a token (up to the ` HTTP/` that ends the
/// line, if it does).
fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let Some(q) = text.find('?') else {
        return text.into_owned();
    };
    let rest = text[q..].rfind(" HTTP/").map_or("", |v| &text[q + v..]);
    format!("{}?(query not shown){rest}", &text[..q])
}

fn parse_request_line(line: &[u8]) -> Result<(Method, String, Version), RequestError> {
    let bad = || RequestError::BadRequestLine(shown(line));
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(bad());
    }
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad());
    }
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        v if v.starts_with("HTTP/") => return Err(RequestError::UnsupportedVersion(v.into())),
        _ => return Err(bad()),
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.into()),
    };
    Ok((method, target.into(), version))
}

/// Splits origin-form (`/a/b?q`), absolute-form (`http://host/a/b?q`) and `*`
/// into path and query.
fn split_target(target: &str) -> Option<(String, Option<String>)> {
    let rest = if target == "*" {
        return Some(("*".into(), None));
    } else if target.starts_with('/') {
        target
    } else {
        let after_scheme = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))?;
        match after_scheme.find('/') {
            Some(slash) => &after_scheme[slash..],
            None => "/",
        }
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (rest, None),
    };
    Some((path.to_owned(), query))
}

fn parse_header(line: &[u8], number: usize) -> Result<(String, String), RequestError> {
    let bad = |reason| RequestError::BadHeader {
        line: number,
        reason,
    };
    if line[0] == b' ' || line[0] == b'\t' {
        return Err(bad("folded (obsolete line folding is not accepted)"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad("no colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().copied().all(is_tchar) {
        return Err(bad("invalid header name"));
    }
    let value = line[colon + 1..].trim_ascii();
    if value.iter().any(|&b| b == 0 || b == b'\r') {
        return Err(bad("control character in the value"));
    }
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        // Values are ASCII in practice; anything else is kept, lossily.
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------------------------
// Routing

/// What the server does with a request. `app` and `key` are as the path has them,
/// still percent-encoded (`.flv` removed): `StreamKey::from_request` decodes them
/// as it decodes RTMP names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET|HEAD /{app}/{key}.flv`.
    Flv {
        app: String,
        key: String,
        head: bool,
    },
    /// `GET /{app}/{key}.flv` with `Upgrade: websocket`; `accept_key` is the client's
    /// `Sec-WebSocket-Key`.
    WebSocketFlv {
        app: String,
        key: String,
        accept_key: String,
    },
    /// `GET /api/streams`.
    Streams { head: bool },
    /// `GET /api/streams/{app}/{key}`.
    Stream {
        app: String,
        key: String,
        head: bool,
    },
    /// `GET /api/server`.
    ServerInfo { head: bool },
    /// `GET /api/recordings`.
    Recordings { head: bool },
    /// `GET /api/relays`: every push and pull.
    Relays { head: bool },
    /// `GET /metrics`.
    Metrics { head: bool },
    /// `GET /` (or `/index.html`): the web page.
    Page { head: bool },
    /// `GET /{app}/{key}/[s-{session}/]{file}`: HLS.
    Hls {
        app: String,
        key: String,
        session: Option<String>,
        file: HlsFile,
        head: bool,
    },
    /// `OPTIONS` anything: a CORS preflight.
    Preflight,
    /// Answer with this status and message.
    Error { status: u16, message: String },
}

/// For a debug line: what the request was taken for.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Flv { head: true, .. } => f.write_str("HTTP-FLV (HEAD)"),
            Route::Flv { .. } => f.write_str("HTTP-FLV"),
            Route::WebSocketFlv { .. } => f.write_str("WebSocket-FLV"),
            Route::Streams { .. } | Route::Stream { .. } => f.write_str("stream stats"),
            Route::ServerInfo { .. } => f.write_str("server stats"),
            Route::Recordings { .. } => f.write_str("recordings"),
            Route::Relays { .. } => f.write_str("relay stats"),
            Route::Metrics { .. } => f.write_str("metrics"),
            Route::Page { .. } => f.write_str("the web page"),
            Route::Hls { file, .. } => write!(f, "HLS {file:?}"),
            Route::Preflight => f.write_str("CORS preflight"),
            Route::Error { status, .. } => write!(f, "status {status}"),
        }
    }
}

/// The files of a stream's HLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsFile {
    /// `index.m3u8`.
    Multivariant,
    /// `media.m3u8`.
    Media,
    /// `init-{id}.mp4`.
    Init(u32),
    /// `seg-{msn}.m4s`.
    Segment(u64),
    /// `part-{msn}.{index}.m4s`.
    Part(u64, usize),
}

impl HlsFile {
    fn parse(name: &str) -> Option<HlsFile> {
        Some(match name {
            "index.m3u8" => HlsFile::Multivariant,
            "media.m3u8" => HlsFile::Media,
            _ => {
                if let Some(id) = name
                    .strip_prefix("init-")
                    .and_then(|n| n.strip_suffix(".mp4"))
                {
                    HlsFile::Init(number(id)?)
                } else if let Some(msn) = name
                    .strip_prefix("seg-")
                    .and_then(|n| n.strip_suffix(".m4s"))
                {
                    HlsFile::Segment(number(msn)?)
                } else {
                    let rest = name.strip_prefix("part-")?.strip_suffix(".m4s")?;
                    let (msn, part) = rest.split_once('.')?;
                    HlsFile::Part(number(msn)?, number(part)?)
                }
            }
        })
    }
}

/// A decimal number without sign or leading `+`.
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Route {
    /// The API and metrics: what `api_token` guards and `--api-listen` serves.
    pub fn is_api(&self) -> bool {
        matches!(
            self,
            Route::Streams { .. }
                | Route::Stream { .. }
                | Route::ServerInfo { .. }
                | Route::Recordings { .. }
                | Route::Relays { .. }
                | Route::Metrics { .. }
        )
    }

    /// A player's route (HTTP-FLV, WebSocket-FLV, HLS).
    pub fn is_player(&self) -> bool {
        matches!(
            self,
            Route::Flv { .. } | Route::WebSocketFlv { .. } | Route::Hls { .. }
        )
    }

    fn error(status: u16, message: impl Into<String>) -> Route {
        Route::Error {
            status,
            message: message.into(),
        }
    }
}

/// Maps a parsed request to a route; every refusal carries a message for the body.
pub fn route(req: &Request) -> Route {
    let head = match req.method {
        Method::Get => false,
        Method::Head => true,
        Method::Options => return Route::Preflight,
        Method::Other(ref m) => {
            return Route::error(
                405,
                format!("method {m} is not allowed; use GET, HEAD or OPTIONS"),
            )
        }
    };
    if req.path == "*" {
        return Route::error(400, "'*' is only meaningful with OPTIONS");
    }
    // Segments stay percent-encoded: the stream key rule decodes app and key
    // (`StreamKey::from_request`), the same way for RTMP names.
    let segments: Vec<&str> = req
        .path
        .strip_prefix('/')
        .unwrap_or(&req.path)
        .split('/')
        .collect();
    let not_found = || Route::error(404, format!("nothing at {}", req.path));
    let hls = |app: &str, key: &str, session: Option<&str>, file: &str| match (
        HlsFile::parse(file),
        app.is_empty() || key.is_empty(),
    ) {
        (Some(file), false) => Route::Hls {
            app: app.into(),
            key: key.into(),
            session: session.map(str::to_owned),
            file,
            head,
        },
        _ => not_found(),
    };
    let route = match segments.as_slice() {
        [""] | ["index.html"] => Route::Page { head },
        ["api", "streams"] => Route::Streams { head },
        ["api", "streams", app, key] => Route::Stream {
            app: (*app).into(),
            key: (*key).into(),
            head,
        },
        ["api", "server"] => Route::ServerInfo { head },
        ["api", "recordings"] => Route::Recordings { head },
        ["api", "relays"] => Route::Relays { head },
        ["metrics"] => Route::Metrics { head },
        [app, file] => match file.strip_suffix(".flv") {
            Some(key) if !key.is_empty() && !app.is_empty() => Route::Flv {
                app: (*app).into(),
                key: key.into(),
                head,
            },
            _ => not_found(),
        },
        [app, key, file] => hls(app, key, None, file),
        [app, key, session, file] => match session.strip_prefix("s-") {
            Some(token) => hls(app, key, Some(token), file),
            None => not_found(),
        },
        _ => not_found(),
    };
    if !req.wants_websocket() {
        return route;
    }
    // A WebSocket handshake: only the FLV path speaks it, with GET and version 13.
    let Route::Flv { app, key, head } = route else {
        return Route::error(404, format!("no WebSocket endpoint at {}", req.path));
    };
    if head {
        return Route::error(400, "a WebSocket upgrade must use GET");
    }
    if !req.header_has_token("connection", "upgrade") {
        return Route::error(400, "WebSocket request without Connection: Upgrade");
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Route::error(426, "WebSocket version 13 is required");
    }
    match req.header("sec-websocket-key").map(str::trim) {
        Some(k) if !k.is_empty() => Route::WebSocketFlv {
            app,
            key,
            accept_key: k.into(),
        },
        _ => Route::error(400, "WebSocket request without Sec-WebSocket-Key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query may carry a secret: a refused request line is shown without it.
    #[test]
    fn a_bad_request_line_is_shown_without_its_query() {
        let shown = |text: &str| match parse(text.as_bytes()) {
            Err(e) => e.to_string(),
            other => panic!("{text:?} should be refused, got {other:?}"),
        };
        let e = shown("GET /live/my cam.flv?secret=hunter2 x HTTP/1.1\r\n\r\n");
        assert_eq!(
            e,
            "malformed request line \"GET /live/my cam.flv?(query not shown) HTTP/1.1\""
        );
        let e = shown("GET /live/cam.flv?secret=hunter2\r\n\r\n");
        assert!(
            e.contains("/live/cam.flv?(query") && !e.contains("hunter2"),
            "{e}"
        );
        let e = shown("GET ftp://h/x?sig=abc HTTP/1.1\r\n\r\n");
        assert!(!e.contains("abc"), "{e}");
        assert!(shown("GET /a b HTTP/1.1\r\n\r\n").contains("/a b HTTP/1.1"));
    }

    fn req(text: &str) -> Request {
        match parse(text.as_bytes()) {
            Ok(Some((r, n))) => {
                assert_eq!(n, text.len(), "the whole block is the header");
                r
            }
            other => panic!("{text:?} should parse, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_player_request() {
        let r = req("GET /live/cam1.flv?token=abc HTTP/1.1\r\nHost: example\r\nUser-Agent: Lavf/61\r\nIcy-MetaData: 1\r\n\r\n");
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/live/cam1.flv");
        assert_eq!(r.query.as_deref(), Some("token=abc"));
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.header("host"), Some("example"));
        assert_eq!(r.header("USER-AGENT"), Some("Lavf/61"));
        assert_eq!(r.header("accept"), None);
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        for cut in [
            "",
            "GET",
            "GET / HTTP/1.1",
            "GET / HTTP/1.1\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n\r",
        ] {
            assert_eq!(parse(cut.as_bytes()), Ok(None), "{cut:?}");
        }
    }

    #[test]
    fn bytes_after_the_headers_are_left_alone() {
        let text = b"GET /a/b.flv HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x82\x85abcd";
        let (_, n) = parse(text).unwrap().unwrap();
        assert_eq!(&text[n..], b"\x82\x85abcd");
    }

    #[test]
    fn bare_lf_and_leading_blank_lines_are_tolerated() {
        let r = req("\r\nGET /metrics HTTP/1.0\nHost: x\n\n");
        assert_eq!((r.path.as_str(), r.version), ("/metrics", Version::Http10));
    }

    #[test]
    fn absolute_form_targets_are_reduced_to_the_path() {
        assert_eq!(
            req("GET http://h:8080/a/b.flv?x HTTP/1.1\r\n\r\n").path,
            "/a/b.flv"
        );
        assert_eq!(req("GET http://h HTTP/1.1\r\n\r\n").path, "/");
    }

    #[test]
    fn oversized_headers_are_refused() {
        let mut text = b"GET / HTTP/1.1\r\nX: ".to_vec();
        text.resize(MAX_HEADER_BYTES + 10, b'a');
        assert_eq!(
            parse(&text),
            Err(RequestError::HeaderTooLarge {
                limit: MAX_HEADER_BYTES
            })
        );
        // Even before the buffer exceeds the limit by much: exactly at it.
        assert!(parse(&text[..MAX_HEADER_BYTES]).is_err());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: 1\r\n")).collect();
        assert_eq!(
            parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Err(RequestError::TooManyHeaders { limit: MAX_HEADERS })
        );
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let err = |text: &[u8]| parse(text).expect_err("must be refused").to_string();
        assert_eq!(err(b"GET /\r\n\r\n"), "malformed request line \"GET /\"");
        assert!(err(b"GET / HTTP/2.0\r\n\r\n").contains("not supported"));
        assert!(err(b"GET / FTP/1.0\r\n\r\n").contains("malformed request line"));
        assert!(err(b"G(T / HTTP/1.1\r\n\r\n").contains("malformed request line"));
        assert!(err(b"GET  / HTTP/1.1\r\n\r\n").contains("malformed request line"));
        assert!(err(b"GET foo HTTP/1.1\r\n\r\n").contains("malformed request line"));
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost x\r\n\r\n"),
            "malformed header line 1: no colon"
        );
        assert!(err(b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n").contains("line 2: folded"));
        assert!(err(b"GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n").contains("invalid header name"));
        assert!(err(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n").contains("request line"));
    }

    #[test]
    fn garbage_never_panics() {
        // Every prefix of a few hostile inputs, plus bytes an RTMP client would send.
        let inputs: [&[u8]; 5] = [
            b"GET /%zz/%e9.flv HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"\x03\x00\x00\x00\x00\x00\x00\x00\x00\n\n\r\n",
            b":\r\n\r\n:\r\n\r\n",
            b"GET / HTTP/1.1\r\n:\r\n\r\n",
            b"\n\n\n\n",
        ];
        for input in inputs {
            for n in 0..=input.len() {
                if let Ok(Some((r, _))) = parse(&input[..n]) {
                    let _ = route(&r);
                }
            }
        }
        let mut rng = crate::rng::Rng::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len)
                .map(|_| *rng.pick(b"GET /a.flv HTTP/1.1\r\n:% \x00\xff"))
                .collect();
            if let Ok(Some((r, _))) = parse(&bytes) {
                let _ = route(&r);
            }
        }
    }

    #[test]
    fn routes() {
        let r = |text: &str| route(&req(text));
        assert_eq!(
            r("GET /live/cam%201.flv HTTP/1.1\r\n\r\n"),
            Route::Flv {
                app: "live".into(),
                key: "cam%201".into(),
                head: false
            }
        );
        assert_eq!(
            r("HEAD /live/x.flv HTTP/1.1\r\n\r\n"),
            Route::Flv {
                app: "live".into(),
                key: "x".into(),
                head: true
            }
        );
        assert_eq!(
            r("GET /api/streams HTTP/1.1\r\n\r\n"),
            Route::Streams { head: false }
        );
        assert_eq!(
            r("GET /api/streams/live/x HTTP/1.1\r\n\r\n"),
            Route::Stream {
                app: "live".into(),
                key: "x".into(),
                head: false
            }
        );
        assert_eq!(
            r("GET /api/server HTTP/1.1\r\n\r\n"),
            Route::ServerInfo { head: false }
        );
        assert_eq!(
            r("GET /api/relays HTTP/1.1\r\n\r\n"),
            Route::Relays { head: false }
        );
        assert_eq!(
            r("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head: true }
        );
        assert_eq!(
            r("GET /api/recordings HTTP/1.1\r\n\r\n"),
            Route::Recordings { head: false }
        );
        assert_eq!(r("OPTIONS * HTTP/1.1\r\n\r\n"), Route::Preflight);
        let status = |route| match route {
            Route::Error { status, .. } => status,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::Page { head: false });
        let hls = |path: &str| match r(&format!("GET {path} HTTP/1.1\r\n\r\n")) {
            Route::Hls { session, file, .. } => Some((session, file)),
            _ => None,
        };
        assert_eq!(
            hls("/live/x/index.m3u8"),
            Some((None, HlsFile::Multivariant))
        );
        assert_eq!(
            hls("/live/x/s-ab12/part-7.3.m4s"),
            Some((Some("ab12".into()), HlsFile::Part(7, 3)))
        );
        assert_eq!(
            hls("/live/x/seg-12.m4s"),
            Some((None, HlsFile::Segment(12)))
        );
        assert_eq!(hls("/live/x/init-0.mp4"), Some((None, HlsFile::Init(0))));
        assert_eq!(hls("/live/x/seg-+1.m4s"), None);
        assert_eq!(hls("/live/x/part-1.m4s"), None);
        assert_eq!(hls("/live/x/other.txt"), None);
        assert_eq!(hls("/live/x/y/media.m3u8"), None);
        assert_eq!(
            status(r(
                "GET /live/x/seg-99999999999999999999999.m4s HTTP/1.1\r\n\r\n"
            )),
            404
        );
        assert_eq!(status(r("GET /live/.flv HTTP/1.1\r\n\r\n")), 404);
        assert_eq!(status(r("GET /live/x.mp4 HTTP/1.1\r\n\r\n")), 404);
        assert_eq!(status(r("GET /a/b/c.flv HTTP/1.1\r\n\r\n")), 404);
        assert_eq!(status(r("POST /api/streams HTTP/1.1\r\n\r\n")), 405);
        assert_eq!(status(r("GET * HTTP/1.1\r\n\r\n")), 400);
    }

    #[test]
    fn websocket_upgrades() {
        let ws = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        assert_eq!(
            route(&req(&format!("GET /live/x.flv HTTP/1.1\r\n{ws}\r\n"))),
            Route::WebSocketFlv {
                app: "live".into(),
                key: "x".into(),
                accept_key: "dGhlIHNhbXBsZSBub25jZQ==".into()
            }
        );
        let status = |text: String| match route(&req(&text)) {
            Route::Error { status, .. } => status,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(
            status(format!("GET /api/streams HTTP/1.1\r\n{ws}\r\n")),
            404
        );
        assert_eq!(
            status(format!(
                "GET /live/x.flv HTTP/1.1\r\n{}\r\n",
                ws.replace("13", "8")
            )),
            426
        );
        assert_eq!(
            status(format!(
                "GET /live/x.flv HTTP/1.1\r\n{}\r\n",
                ws.replace("Sec-WebSocket-Key", "X-Key")
            )),
            400
        );
        assert_eq!(
            status(format!(
                "GET /live/x.flv HTTP/1.1\r\n{}\r\n",
                ws.replace("keep-alive, Upgrade", "close")
            )),
            400
        );
    }
}
