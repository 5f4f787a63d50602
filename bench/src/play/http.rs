//! An HTTP-FLV player: one `GET /APP/NAME.flv HTTP/1.1` on a plain socket, the
//! response head parsed by `httparse`, then the body (chunked, or until the server
//! closes) de-chunked as it arrives and fed to an FLV reader. The socket stays
//! ours, so read timeouts leave every parser's state intact and a player can look
//! at the bench's phase between reads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use httparse::Status;
use rtmpd::media::flv::FlvReader;

use super::{drain_tags, failed, io_failure, short, PlayError};

/// Largest response head we wait for.
const MAX_HEAD: usize = 16 * 1024;
/// Largest chunk-size line (size, extensions, CRLF).
const MAX_SIZE_LINE: usize = 1024;
const READ_BUFFER: usize = 64 * 1024;

/// A connected HTTP-FLV player.
pub struct HttpFlvPlayer {
    socket: TcpStream,
    read_buf: Box<[u8]>,
    body: Body,
    flv: FlvReader,
}

impl HttpFlvPlayer {
    /// Sends the request and reads the response head; anything but `200` is an
    /// error naming the status and the start of the body (rtmpd says there why).
    pub fn get(mut socket: TcpStream, host: &str, path: &str) -> Result<HttpFlvPlayer, PlayError> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rtmpd-bench\r\nAccept: */*\r\n\r\n"
        );
        socket
            .write_all(request.as_bytes())
            .map_err(|e| failed("sending the request", &e))?;
        let mut head = Vec::new();
        let mut read_buf = vec![0u8; READ_BUFFER].into_boxed_slice();
        loop {
            let n = match (&socket).read(&mut read_buf) {
                Ok(0) => return Err(PlayError::Failed("closed before a response".into())),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if rtmpd::net::is_timeout(&e) => {
                    return Err(PlayError::Failed("no response in time".into()))
                }
                Err(e) => return Err(failed("reading the response", &e)),
            };
            head.extend_from_slice(&read_buf[..n]);
            if let Some((body, rest)) = parse_head(&head)? {
                let mut player = HttpFlvPlayer {
                    socket,
                    read_buf,
                    body,
                    flv: FlvReader::new(),
                };
                let rest = head[rest..].to_vec();
                player.body.decode(&rest, &mut player.flv)?;
                return Ok(player);
            }
            if head.len() > MAX_HEAD {
                return Err(PlayError::Failed(format!(
                    "response head longer than {MAX_HEAD} bytes"
                )));
            }
        }
    }

    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), PlayError> {
        self.socket
            .set_read_timeout(Some(timeout))
            .map_err(|e| io_failure("setting the timeout", &e))
    }

    /// One read from the socket; every whole audio/video tag goes to `on_tag`.
    pub fn read(&mut self, on_tag: &mut dyn FnMut(u8, &[u8])) -> Result<(), PlayError> {
        let n = loop {
            match (&self.socket).read(&mut self.read_buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_failure("reading", &e)),
            }
        };
        if n == 0 {
            return Err(PlayError::Failed(match self.body {
                Body::Chunked(Dechunk::Done) => "the server ended the response".into(),
                _ => "connection closed".into(),
            }));
        }
        self.body.decode(&self.read_buf[..n], &mut self.flv)?;
        drain_tags(&mut self.flv, on_tag)
    }
}

/// The response head, if all of it has arrived: how its body is framed and where
/// the body starts; an error for anything but `200`.
fn parse_head(buf: &[u8]) -> Result<Option<(Body, usize)>, PlayError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let end = match response.parse(buf) {
        Ok(Status::Complete(end)) => end,
        Ok(Status::Partial) => return Ok(None),
        Err(e) => return Err(PlayError::Failed(format!("bad response head: {e}"))),
    };
    let code = response.code.unwrap_or(0);
    if code != 200 {
        let body = String::from_utf8_lossy(&buf[end..]);
        return Err(PlayError::Failed(short(&format_args!(
            "HTTP {code} {}: {}",
            response.reason.unwrap_or(""),
            body.trim()
        ))));
    }
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let body = if chunked {
        Body::Chunked(Dechunk::SizeLine(Vec::new()))
    } else {
        Body::UntilClose
    };
    Ok(Some((body, end)))
}

/// How the response body is framed.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    Chunked(Dechunk),
    /// HTTP/1.0 style: the body is every byte until the server closes.
    UntilClose,
}

/// Where a chunked body's decoder is.
#[derive(Debug, PartialEq, Eq)]
enum Dechunk {
    /// Reading a chunk-size line; what has arrived of it so far.
    SizeLine(Vec<u8>),
    /// Inside a chunk's data: this many bytes left.
    Data(u64),
    /// After a chunk's data: this many bytes of its CRLF still to come.
    DataEnd(u8),
    /// The last chunk (size 0) arrived: the response is over.
    Done,
}

impl Body {
    /// Feeds bytes of the body; the FLV bytes in them go to `flv`.
    fn decode(&mut self, mut input: &[u8], flv: &mut FlvReader) -> Result<(), PlayError> {
        let state = match self {
            Body::UntilClose => {
                flv.push(input);
                return Ok(());
            }
            Body::Chunked(state) => state,
        };
        let bad = |what: &str| Err(PlayError::Failed(format!("bad chunked body: {what}")));
        while !input.is_empty() {
            match state {
                Dechunk::SizeLine(line) => {
                    let before = line.len();
                    let take = input.len().min(MAX_SIZE_LINE - before);
                    line.extend_from_slice(&input[..take]);
                    match httparse::parse_chunk_size(line) {
                        Ok(Status::Complete((end, size))) => {
                            // The line was incomplete before, so it ends in what came now.
                            input = &input[end - before..];
                            *state = if size == 0 {
                                Dechunk::Done
                            } else {
                                Dechunk::Data(size)
                            };
                        }
                        Ok(Status::Partial) if line.len() < MAX_SIZE_LINE => return Ok(()),
                        Ok(Status::Partial) => return bad("chunk-size line too long"),
                        Err(_) => return bad("invalid chunk-size line"),
                    }
                }
                Dechunk::Data(left) => {
                    let n = input
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    flv.push(&input[..n]);
                    input = &input[n..];
                    *left -= n as u64;
                    if *left == 0 {
                        *state = Dechunk::DataEnd(2);
                    }
                }
                Dechunk::DataEnd(left) => {
                    let want = if *left == 2 { b'\r' } else { b'\n' };
                    if input[0] != want {
                        return bad("chunk data not followed by CRLF");
                    }
                    input = &input[1..];
                    *left -= 1;
                    if *left == 0 {
                        *state = Dechunk::SizeLine(Vec::new());
                    }
                }
                // Trailers after the last chunk are of no interest.
                Dechunk::Done => return Ok(()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtmpd::media::flv::{self, FlvHeader, TAG_AUDIO, TAG_VIDEO};

    fn flv_bytes() -> Vec<u8> {
        let mut out = Vec::new();
        flv::write_header(
            &mut out,
            FlvHeader {
                has_audio: true,
                has_video: true,
            },
        );
        flv::write_tag(&mut out, flv::TAG_SCRIPT, 0, b"\x02\x00\x0aonMetaData");
        flv::write_tag(&mut out, TAG_VIDEO, 0, &[0x17, 1, 0, 0, 0, 7, 7, 7]);
        flv::write_tag(&mut out, TAG_AUDIO, 21, &[0xaf, 1, 5, 5]);
        out
    }

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = n.min(rest.len());
            // Upper-case hex and an extension: both allowed by RFC 9112.
            out.extend_from_slice(format!("{n:X};x=y\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    /// Decodes `wire` fed in pieces of `step`; the tags handed out.
    fn tags(mut body: Body, wire: &[u8], step: usize) -> Result<Vec<(u8, Vec<u8>)>, PlayError> {
        let mut flv = FlvReader::new();
        let mut got = Vec::new();
        for piece in wire.chunks(step) {
            body.decode(piece, &mut flv)?;
            drain_tags(&mut flv, &mut |t, d| got.push((t, d.to_vec())))?;
        }
        Ok(got)
    }

    #[test]
    fn chunked_and_close_delimited_bodies_give_the_tags() {
        let flv = flv_bytes();
        let want = vec![
            (TAG_VIDEO, vec![0x17, 1, 0, 0, 0, 7, 7, 7]),
            (TAG_AUDIO, vec![0xaf, 1, 5, 5]),
        ];
        let wire = chunked(&flv, &[5, 17, 1, 300]);
        for step in [1, 2, 3, 9, 64, wire.len()] {
            let body = Body::Chunked(Dechunk::SizeLine(Vec::new()));
            assert_eq!(
                tags(body, &wire, step),
                Ok(want.clone()),
                "pieces of {step}"
            );
        }
        assert_eq!(tags(Body::UntilClose, &flv, 7), Ok(want));
        let mut body = Body::Chunked(Dechunk::SizeLine(Vec::new()));
        body.decode(&wire, &mut FlvReader::new()).unwrap();
        assert_eq!(body, Body::Chunked(Dechunk::Done));
    }

    #[test]
    fn broken_chunking_is_an_error() {
        let fresh = || Body::Chunked(Dechunk::SizeLine(Vec::new()));
        let err = |wire: &[u8]| tags(fresh(), wire, 4).unwrap_err().to_string();
        assert!(err(b"zz\r\nFL\r\n").contains("invalid chunk-size line"));
        assert!(err(b"2\r\nFLX\n").contains("not followed by CRLF"));
        let mut long = b"1;ext=".to_vec();
        long.resize(MAX_SIZE_LINE + 10, b'x');
        assert!(err(&long).contains("too long"), "{}", err(&long));
    }

    #[test]
    fn response_heads() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nFLV";
        let (body, end) = parse_head(ok).unwrap().unwrap();
        assert_eq!(body, Body::Chunked(Dechunk::SizeLine(Vec::new())));
        assert_eq!(&ok[end..], b"9\r\nFLV");
        let plain = b"HTTP/1.0 200 OK\r\nContent-Type: video/x-flv\r\n\r\n";
        assert_eq!(parse_head(plain).unwrap().unwrap().0, Body::UntilClose);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Ty").unwrap(), None);
        let missing =
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 40\r\n\r\n404 Not Found: no stream live/x is being published\n";
        assert_eq!(
            parse_head(missing).unwrap_err().to_string(),
            "HTTP 404 Not Found: 404 Not Found: no stream live/x is being published"
        );
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
