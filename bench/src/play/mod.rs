//! How the bench's players play: a [`PlayTarget`] names the protocol and the
//! server it plays from, and a [`Player`] is one connected player of any protocol
//! that hands out the audio and video tags it receives, so the checks and the
//! accounting in `run` are the same for every protocol. RTMP players run the
//! server crate's client; HTTP-FLV and WebSocket-FLV players send one request and
//! parse the FLV body as it arrives with `rtmpd::media::flv::FlvReader`.
//!
//! A protocol is a [`Protocol`] variant (its name and URL form) and a connection
//! type with `connect` and `read`. An HLS viewer (`hls`) plays Low-Latency HLS the
//! way hls.js does and hands on each fMP4 sample as an FLV payload.

mod hls;
mod http;
mod ws;

use std::fmt;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use rtmpd::client::{Client, ClientError, ClientEvent, ClientOptions, RtmpUrl};
use rtmpd::media::flv::{FlvReader, TAG_AUDIO, TAG_VIDEO};

/// How players play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `rtmp://HOST:PORT/APP/NAME`, the server crate's client.
    Rtmp,
    /// `rtmps://HOST:PORT/APP/NAME`: the same client over TLS, any certificate
    /// taken (a bench server's is self-signed).
    Rtmps,
    /// `GET http://HOST:PORT/APP/NAME.flv` (HTTP/1.1, chunked or close-delimited body).
    HttpFlv,
    /// `ws://HOST:PORT/APP/NAME.flv`, the FLV stream in binary messages.
    WsFlv,
    /// `http://HOST:PORT/APP/NAME/index.m3u8`, Low-Latency HLS (blocking reloads).
    Hls,
}

impl Protocol {
    pub const ALL: [Protocol; 5] = [
        Protocol::Rtmp,
        Protocol::Rtmps,
        Protocol::HttpFlv,
        Protocol::WsFlv,
        Protocol::Hls,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Rtmps => "rtmps",
            Protocol::HttpFlv => "http-flv",
            Protocol::WsFlv => "ws-flv",
            Protocol::Hls => "hls",
        }
    }

    pub fn parse(name: &str) -> Result<Protocol, String> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let names: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
                format!("{name:?} is not a protocol ({})", names.join(", "))
            })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where players play from: a protocol and a server's address and application.
/// The publishers' server by default; another (an edge, the HTTP listener) when
/// the run says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayTarget {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub app: String,
}

impl PlayTarget {
    /// The URL a player of stream `name` opens.
    pub fn url(&self, name: &str) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let (app, port) = (&self.app, self.port);
        match self.protocol {
            Protocol::Rtmp => format!("rtmp://{host}:{port}/{app}/{name}"),
            Protocol::Rtmps => format!("rtmps://{host}:{port}/{app}/{name}"),
            Protocol::HttpFlv => format!("http://{host}:{port}/{app}/{name}.flv"),
            Protocol::WsFlv => format!("ws://{host}:{port}/{app}/{name}.flv"),
            Protocol::Hls => format!("http://{host}:{port}/{app}/{name}/index.m3u8"),
        }
    }

    fn rtmp_url(&self) -> RtmpUrl {
        RtmpUrl {
            tls: self.protocol == Protocol::Rtmps,
            host: self.host.clone(),
            port: self.port,
            app: self.app.clone(),
            name: String::new(),
        }
    }
}

/// Why a player's connect or read did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayError {
    /// Nothing arrived within the read timeout; the player is still usable.
    Timeout,
    /// The connection failed or ended: a short, groupable description.
    Failed(String),
}

impl fmt::Display for PlayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlayError::Timeout => f.write_str("read timed out"),
            PlayError::Failed(why) => f.write_str(why),
        }
    }
}

/// An error as a short line, so that errors of many players group in a report.
pub fn short(e: &dyn fmt::Display) -> String {
    let mut s = e.to_string();
    if s.len() > 120 {
        let mut cut = 120;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl From<ClientError> for PlayError {
    fn from(e: ClientError) -> PlayError {
        match e {
            ClientError::Timeout(_) => PlayError::Timeout,
            e => PlayError::Failed(short(&e)),
        }
    }
}

/// What went wrong, as a failure (timeouts included: while connecting they are).
fn failed(what: &str, e: &dyn fmt::Display) -> PlayError {
    PlayError::Failed(short(&format_args!("{what}: {e}")))
}

/// A read error of a connected player: a timeout leaves it usable.
fn io_failure(what: &str, e: &io::Error) -> PlayError {
    if rtmpd::net::is_timeout(e) {
        PlayError::Timeout
    } else {
        failed(what, e)
    }
}

/// One connected player (boxed: the connections differ in size by hundreds of bytes).
pub enum Player {
    Rtmp(Box<Client>),
    HttpFlv(Box<http::HttpFlvPlayer>),
    WsFlv(Box<ws::WsFlvPlayer>),
    Hls(Box<hls::HlsViewer>),
}

impl Player {
    /// Connects and asks for stream `name`; returns once the server has said yes
    /// (RTMP: play started; HTTP: `200`; WebSocket: `101`). `opts.timeout` bounds
    /// each step and is the read timeout until [`Player::set_timeout`].
    pub fn connect(
        target: &PlayTarget,
        name: &str,
        opts: &ClientOptions,
    ) -> Result<Player, PlayError> {
        match target.protocol {
            Protocol::Rtmp | Protocol::Rtmps => {
                // A timeout here is a failure to connect, not a quiet stream.
                let failed = |e: ClientError| PlayError::Failed(short(&e));
                let opts = ClientOptions {
                    tls_verify: false,
                    ..opts.clone()
                };
                let mut client = Client::connect(&target.rtmp_url(), &opts).map_err(failed)?;
                client.play(name).map_err(failed)?;
                Ok(Player::Rtmp(Box::new(client)))
            }
            Protocol::HttpFlv => {
                let socket = dial(&target.host, target.port, opts.timeout)?;
                let path = format!("/{}/{name}.flv", target.app);
                let host = format!("{}:{}", target.host, target.port);
                http::HttpFlvPlayer::get(socket, &host, &path).map(|p| Player::HttpFlv(Box::new(p)))
            }
            Protocol::WsFlv => {
                let socket = dial(&target.host, target.port, opts.timeout)?;
                ws::WsFlvPlayer::open(socket, &target.url(name)).map(|p| Player::WsFlv(Box::new(p)))
            }
            Protocol::Hls => {
                let socket = dial(&target.host, target.port, opts.timeout)?;
                let path = format!("/{}/{name}", target.app);
                let host = format!("{}:{}", target.host, target.port);
                hls::HlsViewer::open(socket, &host, &path).map(|p| Player::Hls(Box::new(p)))
            }
        }
    }

    /// How long one [`Player::read`] may block.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), PlayError> {
        match self {
            Player::Rtmp(c) => c.set_timeout(timeout).map_err(PlayError::from),
            Player::HttpFlv(p) => p.set_timeout(timeout),
            Player::WsFlv(p) => p.set_timeout(timeout),
            Player::Hls(p) => p.set_timeout(timeout),
        }
    }

    /// Waits for what the server sends next and hands each audio or video tag in
    /// it, in order, to `on_tag` (type id, tag data = RTMP message payload).
    pub fn read(&mut self, on_tag: &mut dyn FnMut(u8, &[u8])) -> Result<(), PlayError> {
        match self {
            Player::Rtmp(c) => {
                if let ClientEvent::Media {
                    type_id, payload, ..
                } = c.next_event()?
                {
                    on_tag(type_id, &payload);
                }
                Ok(())
            }
            Player::HttpFlv(p) => p.read(on_tag),
            Player::WsFlv(p) => p.read(on_tag),
            Player::Hls(p) => p.read(on_tag),
        }
    }
}

/// Hands the audio and video tags `flv` holds to `on_tag`.
fn drain_tags(flv: &mut FlvReader, on_tag: &mut dyn FnMut(u8, &[u8])) -> Result<(), PlayError> {
    loop {
        match flv.next_tag() {
            Ok(Some(tag)) => {
                if matches!(tag.tag_type, TAG_AUDIO | TAG_VIDEO) {
                    on_tag(tag.tag_type, tag.data);
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(PlayError::Failed(short(&e))),
        }
    }
}

/// Resolves and connects with timeouts set, trying each address in turn.
fn dial(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, PlayError> {
    let what = format!("connect {host}:{port}");
    let failed = |e: io::Error| failed(&what, &e);
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
    for addr in (host, port).to_socket_addrs().map_err(failed)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(socket) => {
                socket
                    .set_read_timeout(Some(timeout))
                    .and_then(|()| socket.set_write_timeout(Some(timeout)))
                    .and_then(|()| socket.set_nodelay(true))
                    .map_err(failed)?;
                return Ok(socket);
            }
            Err(e) => last = e,
        }
    }
    Err(failed(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_urls() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::parse(p.name()), Ok(p));
        }
        assert_eq!(Protocol::parse("HTTP-FLV"), Ok(Protocol::HttpFlv));
        let e = Protocol::parse("dash").unwrap_err();
        assert!(e.contains("rtmp, rtmps, http-flv, ws-flv, hls"), "{e}");
        let mut t = PlayTarget {
            protocol: Protocol::HttpFlv,
            host: "127.0.0.1".into(),
            port: 8080,
            app: "live".into(),
        };
        assert_eq!(t.url("bench-3"), "http://127.0.0.1:8080/live/bench-3.flv");
        t.protocol = Protocol::WsFlv;
        t.host = "::1".into();
        assert_eq!(t.url("x"), "ws://[::1]:8080/live/x.flv");
        t.protocol = Protocol::Rtmp;
        assert_eq!(t.url("x"), "rtmp://[::1]:8080/live/x");
        assert_eq!(t.rtmp_url().tc_url(), "rtmp://[::1]:8080/live");
        t.protocol = Protocol::Rtmps;
        assert_eq!(t.url("x"), "rtmps://[::1]:8080/live/x");
        assert_eq!(t.rtmp_url().tc_url(), "rtmps://[::1]:8080/live");
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(100);
        let s = short(&long);
        assert!(s.len() <= 120 && s.chars().all(|c| c == 'é'), "{s}");
        assert_eq!(short(&"short"), "short");
    }
}
