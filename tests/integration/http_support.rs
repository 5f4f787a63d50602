//! Helpers of the HTTP tests: a raw HTTP/1.x client on a std `TcpStream` (so the
//! tests see exactly what went over the wire: status line, headers, chunking), a
//! chunked-body decoder, a WebSocket client, and a publisher that loops a fixture for
//! as long as a test needs a live stream.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rtmpd::media::flv::{self, FlvTag};
use tungstenite::WebSocket;

/// A response as received: the body is de-chunked when it was chunked.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// For a chunked body: whether the last (zero-length) chunk arrived.
    pub complete: bool,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// Sends `request` as is and reads until the server closes the connection; panics
/// after `timeout`.
pub fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connecting to the HTTP listener");
    stream.write_all(request).expect("sending the request");
    let raw = read_to_close(&mut stream, timeout);
    parse_response(&raw)
}

/// Reads until EOF; panics if that takes longer than `timeout`.
pub fn read_to_close(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the server did not close the connection within {timeout:?} ({} bytes read)",
            raw.len()
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset after the server's last bytes still leaves what was read.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return raw,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
}

/// Reads one response whose body has a Content-Length from a connection that may
/// stay open (keep-alive), leaving the connection at the next response.
pub fn read_length_delimited(stream: &mut TcpStream, timeout: Duration) -> HttpResponse {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            other => panic!(
                "reading a response head: {other:?} after {} bytes",
                raw.len()
            ),
        }
    }
    let mut resp = parse_response(&raw);
    let len: usize = resp
        .header("content-length")
        .expect("a Content-Length")
        .parse()
        .unwrap();
    resp.body = vec![0u8; len];
    stream.read_exact(&mut resp.body).unwrap();
    resp
}

/// `GET path` with HTTP/1.1 and `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    request(addr, "GET", path)
}

pub fn request(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    // A bound on a hang, generous for a busy machine.
    exchange(addr, req.as_bytes(), Duration::from_secs(30))
}

/// `GET path`, expecting JSON; returns the status and the document.
pub fn get_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let resp = get(addr, path);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "GET {path}"
    );
    (resp.status, resp.json())
}

/// Splits the head off and de-chunks the body if needed.
pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no complete response head in {} bytes: {:?}",
                raw.len(),
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            )
        });
    let head = std::str::from_utf8(&raw[..end]).expect("the response head is text");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(
        parts.next(),
        Some("HTTP/1.1"),
        "status line {status_line:?}"
    );
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?}"));
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
    let (body, complete) = if chunked {
        dechunk(rest)
    } else {
        (rest.to_vec(), true)
    };
    HttpResponse {
        status,
        headers,
        body,
        complete,
    }
}

/// Decodes a chunked body; stops at the last chunk or at the first incomplete one.
pub fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = std::str::from_utf8(&data[..eol]).expect("chunk size is text");
        let size = usize::from_str_radix(size_text.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
        data = &data[eol + 2..];
        if size == 0 {
            assert_eq!(data, b"\r\n", "the last chunk ends the body");
            return (body, true);
        }
        if data.len() < size + 2 {
            return (body, false);
        }
        body.extend_from_slice(&data[..size]);
        assert_eq!(&data[size..size + 2], b"\r\n", "chunk data ends with CRLF");
        data = &data[size + 2..];
    }
}

/// An HTTP-FLV stream read tag by tag as it arrives (a chunked HTTP/1.1 response):
/// for tests that act on what a viewer has received so far. Nothing is read until
/// the first [`LiveFlv::next_tag`], so a viewer that has asked and reads nothing yet
/// is one of these too.
pub struct LiveFlv {
    socket: TcpStream,
    what: String,
    /// Bytes after the response head not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet parsed into tags.
    body: Vec<u8>,
    head_done: bool,
    flv_header_done: bool,
    /// The last (zero-length) chunk has arrived.
    ended: bool,
}

impl LiveFlv {
    /// Sends `GET path` (HTTP/1.1, so the body is chunked).
    pub fn get(addr: SocketAddr, path: &str) -> LiveFlv {
        let mut socket = TcpStream::connect(addr).expect("connecting to the HTTP listener");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        socket
            .write_all(req.as_bytes())
            .expect("sending the request");
        LiveFlv {
            socket,
            what: format!("GET {path}"),
            raw: Vec::new(),
            body: Vec::new(),
            head_done: false,
            flv_header_done: false,
            ended: false,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// The next whole tag, or `None` once the response has ended (after its last
    /// chunk, and with no bytes left over). Panics if nothing arrives for `timeout`.
    pub fn next_tag(&mut self, timeout: Duration) -> Option<FlvTag> {
        loop {
            if let Some(tag) = self.parse_tag() {
                return Some(tag);
            }
            if self.ended {
                assert!(
                    self.body.is_empty() && self.raw.is_empty(),
                    "{}: {} bytes of a cut tag, {} after the last chunk",
                    self.what,
                    self.body.len(),
                    self.raw.len()
                );
                return None;
            }
            self.receive(timeout);
            self.dechunk();
        }
    }

    fn receive(&mut self, timeout: Duration) {
        let mut buf = [0u8; 64 * 1024];
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let n = match self.socket.read(&mut buf) {
            Ok(0) => panic!("{}: the connection closed before the last chunk", self.what),
            Ok(n) => n,
            Err(e) => panic!("{}: nothing received within {timeout:?}: {e}", self.what),
        };
        self.raw.extend_from_slice(&buf[..n]);
        if !self.head_done {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head = parse_response(&self.raw[..end + 4]);
            assert_eq!(head.status, 200, "{}", self.what);
            assert_eq!(
                head.header("transfer-encoding"),
                Some("chunked"),
                "{}",
                self.what
            );
            self.raw.drain(..end + 4);
            self.head_done = true;
        }
    }

    /// Moves the data of every complete chunk from `raw` to `body`.
    fn dechunk(&mut self) {
        while self.head_done && !self.ended {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = std::str::from_utf8(&self.raw[..eol]).expect("chunk size is text");
            let size = usize::from_str_radix(size_text.trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            let data = eol + 2..eol + 2 + size;
            assert_eq!(
                &self.raw[data.end..data.end + 2],
                b"\r\n",
                "chunk data ends with CRLF"
            );
            self.body.extend_from_slice(&self.raw[data.clone()]);
            self.raw.drain(..data.end + 2);
            self.ended = size == 0;
        }
    }

    fn parse_tag(&mut self) -> Option<FlvTag> {
        if !self.flv_header_done {
            let header_len = flv::HEADER_LEN + 4;
            if self.body.len() < header_len {
                return None;
            }
            assert_eq!(&self.body[..3], b"FLV", "{}: no FLV header", self.what);
            self.body.drain(..header_len);
            self.flv_header_done = true;
        }
        let header = self.body.get(..flv::TAG_HEADER_LEN)?;
        let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        let whole = flv::TAG_HEADER_LEN + len + 4;
        if self.body.len() < whole {
            return None;
        }
        // Strictly, with its PreviousTagSize, behind a minimal FLV file header.
        const FILE_HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0];
        let one = [&FILE_HEADER[..], &self.body[..whole]].concat();
        let (_, mut tags) = flv::parse(&one).unwrap_or_else(|e| panic!("{}: {e}", self.what));
        self.body.drain(..whole);
        assert_eq!(tags.len(), 1, "{}: one tag", self.what);
        tags.pop()
    }
}

/// Publishes `input` in real time with ffmpeg, `loops` extra times over (so a test
/// has a live stream for as long as it needs; stop it with `support::stop`).
pub fn publish_looped(url: &str, input: &Path, loops: u32) -> Child {
    publish_looped_with(Path::new("ffmpeg"), url, input, loops)
}

/// Like [`publish_looped`] with another ffmpeg binary (e.g. a newer one that knows
/// more codecs).
pub fn publish_looped_with(ffmpeg: &Path, url: &str, input: &Path, loops: u32) -> Child {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-loglevel", "error", "-re"]);
    cmd.args(["-stream_loop", &loops.to_string()]);
    cmd.arg("-i").arg(input);
    cmd.args(["-c", "copy", "-f", "flv", url]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "starting {}: {e} (run scripts/test.sh to install it)",
            ffmpeg.display()
        )
    })
}

/// Opens `ws://ADDR/PATH` with tungstenite's client on a blocking std stream whose
/// reads time out after `timeout`; an HTTP refusal comes back as
/// `tungstenite::Error::Http`.
pub fn websocket(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    let url = format!("ws://{addr}/{}", path.trim_start_matches('/'));
    match tungstenite::client(url.as_str(), stream) {
        Ok((ws, response)) => {
            assert_eq!(response.status(), 101);
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => unreachable!("blocking stream"),
    }
}

#[test]
fn dechunk_handles_complete_and_cut_bodies() {
    assert_eq!(
        dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
        (b"abcde".to_vec(), true)
    );
    assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nd"), (b"abc".to_vec(), false));
    assert_eq!(dechunk(b""), (Vec::new(), false));
}
