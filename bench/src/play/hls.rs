//! An HLS viewer as hls.js plays Low-Latency HLS: `index.m3u8`, the media
//! playlist and the init segment on one kept-alive connection, then for each part
//! a blocking playlist reload (`_HLS_msn`/`_HLS_part`) and the part itself. The
//! part's fMP4 samples are handed on as FLV payloads (the FLV audio or video
//! header in front of the sample), so the stamps in them read back as for the
//! other protocols. A read timeout leaves the request in flight and the bytes read
//! so far in place.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use httparse::Status;
use rtmpd::media::flv::{TAG_AUDIO, TAG_VIDEO};

use super::{failed, io_failure, short, PlayError};

const MAX_HEAD: usize = 16 * 1024;

/// What the viewer asks next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `media.m3u8?_HLS_msn=M&_HLS_part=P`: wait for part (M, P) to be listed.
    Reload,
    /// `part-M.P.m4s`.
    Part,
}

pub struct HlsViewer {
    socket: TcpStream,
    host: String,
    /// `/APP/NAME/s-TOKEN/`.
    base: String,
    /// The part to play next: (msn, index).
    next: (u64, usize),
    step: Step,
    /// A request is in flight; `buf` holds what arrived of its answer.
    in_flight: bool,
    buf: Vec<u8>,
    /// Track id → FLV tag type, from the init segment (video first).
    tracks: Vec<u8>,
}

impl HlsViewer {
    /// Plays `path` (`/APP/NAME`).
    pub fn open(socket: TcpStream, host: &str, path: &str) -> Result<HlsViewer, PlayError> {
        let mut v = HlsViewer {
            socket,
            host: host.to_owned(),
            base: String::new(),
            next: (0, 0),
            step: Step::Reload,
            in_flight: false,
            buf: Vec::new(),
            tracks: Vec::new(),
        };
        let index = v.fetch(&format!("{path}/index.m3u8"))?;
        let media = String::from_utf8_lossy(&index);
        let media = media.lines().last().unwrap_or("").to_owned();
        let app_name = path;
        let session = media.rsplit_once('/').map_or("", |(s, _)| s);
        v.base = format!("{app_name}/{session}/");
        let playlist = v.fetch(&format!("{}media.m3u8", v.base))?;
        let playlist = String::from_utf8_lossy(&playlist).into_owned();
        v.next =
            preload_hint(&playlist).ok_or_else(|| PlayError::Failed("no preload hint".into()))?;
        let init = v.fetch(&format!("{}init-0.mp4", v.base))?;
        v.tracks = if find(&init, b"vide").is_some() {
            vec![TAG_VIDEO, TAG_AUDIO]
        } else {
            vec![TAG_AUDIO]
        };
        Ok(v)
    }

    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), PlayError> {
        self.socket
            .set_read_timeout(Some(timeout))
            .map_err(|e| io_failure("setting the timeout", &e))
    }

    /// One step: a blocking reload, or a part whose samples go to `on_tag`.
    pub fn read(&mut self, on_tag: &mut dyn FnMut(u8, &[u8])) -> Result<(), PlayError> {
        let (msn, part) = self.next;
        let path = match self.step {
            Step::Reload => format!("{}media.m3u8?_HLS_msn={msn}&_HLS_part={part}", self.base),
            Step::Part => format!("{}part-{msn}.{part}.m4s", self.base),
        };
        let (status, body) = self.exchange(&path)?;
        match self.step {
            Step::Reload => {
                if status != 200 {
                    return Err(PlayError::Failed(format!("reload: HTTP {status}")));
                }
                let text = String::from_utf8_lossy(&body);
                if !text.contains(&format!("part-{msn}.{part}.m4s\"")) {
                    // Past the end of its segment: the next segment's first part.
                    self.next = (msn + 1, 0);
                }
                self.step = Step::Part;
            }
            Step::Part => {
                self.step = Step::Reload;
                if status == 404 {
                    self.next = (msn + 1, 0);
                    return Ok(());
                }
                if status != 200 {
                    return Err(PlayError::Failed(format!("part: HTTP {status}")));
                }
                self.next = (msn, part + 1);
                samples(&body, &self.tracks, on_tag)?;
            }
        }
        Ok(())
    }

    /// A whole request and answer (for setting up: no timeouts expected).
    fn fetch(&mut self, path: &str) -> Result<Vec<u8>, PlayError> {
        match self.exchange(path)? {
            (200, body) => Ok(body),
            (status, body) => Err(PlayError::Failed(short(&format_args!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )))),
        }
    }

    /// Sends the request unless one is in flight, and reads its answer.
    fn exchange(&mut self, path: &str) -> Result<(u16, Vec<u8>), PlayError> {
        if !self.in_flight {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rtmpd-bench\r\n\r\n",
                self.host
            );
            self.socket
                .write_all(request.as_bytes())
                .map_err(|e| failed("sending a request", &e))?;
            self.in_flight = true;
            self.buf.clear();
        }
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some((status, start, len)) = parse_head(&self.buf)? {
                if self.buf.len() >= start + len {
                    let body = self.buf[start..start + len].to_vec();
                    self.buf.drain(..start + len);
                    self.in_flight = false;
                    return Ok((status, body));
                }
            }
            match (&self.socket).read(&mut chunk) {
                Ok(0) => return Err(PlayError::Failed("connection closed".into())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_failure("reading", &e)),
            }
        }
    }
}

/// (status, where the body starts, its length) once the head is complete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>, PlayError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let end = match response.parse(buf) {
        Ok(Status::Complete(end)) => end,
        Ok(Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(PlayError::Failed("response head too long".into()))
        }
        Ok(Status::Partial) => return Ok(None),
        Err(e) => return Err(PlayError::Failed(format!("bad response head: {e}"))),
    };
    let len = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .ok_or_else(|| PlayError::Failed("no Content-Length".into()))?;
    Ok(Some((response.code.unwrap_or(0), end, len)))
}

fn preload_hint(playlist: &str) -> Option<(u64, usize)> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let uri = line.split("part-").nth(1)?.split(".m4s").next()?;
    let (msn, part) = uri.split_once('.')?;
    Some((msn.parse().ok()?, part.parse().ok()?))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Hands each sample of a `moof` + `mdat` to `on_tag` as an FLV payload.
fn samples(part: &[u8], tracks: &[u8], on_tag: &mut dyn FnMut(u8, &[u8])) -> Result<(), PlayError> {
    let bad = || PlayError::Failed("a part that is not moof + mdat".into());
    let moof_len = be32(part, 0).ok_or_else(bad)? as usize;
    if part.get(4..8) != Some(b"moof") || moof_len > part.len() {
        return Err(bad());
    }
    let mut at = 8;
    let mut payload = Vec::new();
    while at + 8 <= moof_len {
        let size = be32(part, at).ok_or_else(bad)? as usize;
        if size < 8 || at + size > moof_len {
            return Err(bad());
        }
        if &part[at + 4..at + 8] == b"traf" {
            let (mut track, mut inner) = (0u32, at + 8);
            while inner + 8 <= at + size {
                let len = be32(part, inner).ok_or_else(bad)? as usize;
                if len < 8 {
                    return Err(bad());
                }
                match &part[inner + 4..inner + 8] {
                    b"tfhd" => track = be32(part, inner + 12).ok_or_else(bad)?,
                    b"trun" => {
                        let flags = be32(part, inner + 8).ok_or_else(bad)? & 0xff_ffff;
                        let count = be32(part, inner + 12).ok_or_else(bad)? as usize;
                        let mut data = be32(part, inner + 16).ok_or_else(bad)? as usize;
                        let per = 4 * [0x100, 0x200, 0x400, 0x800]
                            .iter()
                            .filter(|f| flags & **f != 0)
                            .count();
                        let size_at = if flags & 0x100 != 0 { 4 } else { 0 };
                        let slot = (track as usize).checked_sub(1).ok_or_else(bad)?;
                        let kind = *tracks.get(slot).ok_or_else(bad)?;
                        for i in 0..count {
                            let entry = inner + 20 + i * per;
                            let len = be32(part, entry + size_at).ok_or_else(bad)? as usize;
                            let flags = be32(part, entry + size_at + 4).unwrap_or(0);
                            let sample = part.get(data..data + len).ok_or_else(bad)?;
                            payload.clear();
                            if kind == TAG_VIDEO {
                                let key = flags & 0x0001_0000 == 0;
                                payload.extend_from_slice(&[
                                    if key { 0x17 } else { 0x27 },
                                    1,
                                    0,
                                    0,
                                    0,
                                ]);
                            } else {
                                payload.extend_from_slice(&[0xaf, 1]);
                            }
                            payload.extend_from_slice(sample);
                            on_tag(kind, &payload);
                            data += len;
                        }
                    }
                    _ => {}
                }
                inner += len;
            }
        }
        at += size;
    }
    Ok(())
}
