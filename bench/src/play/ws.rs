//! A WebSocket-FLV player: tungstenite's client (RFC 6455: handshake, masking,
//! control frames, pongs) on a plain socket; the binary messages are one FLV
//! stream, split wherever the server likes, fed to an FLV reader.

use std::net::TcpStream;
use std::time::Duration;

use rtmpd::media::flv::FlvReader;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Error, HandshakeError, Message, WebSocket};

use super::{drain_tags, failed, io_failure, short, PlayError};

/// tungstenite's default is 128 KiB per connection; the HTTP-FLV and RTMP
/// players read 64 KiB at a time too.
const READ_BUFFER: usize = 64 * 1024;

/// A connected WebSocket-FLV player.
pub struct WsFlvPlayer {
    ws: WebSocket<TcpStream>,
    flv: FlvReader,
}

impl WsFlvPlayer {
    /// Shakes hands for `url` (`ws://HOST:PORT/APP/NAME.flv`); anything but `101`
    /// is an error naming the status and the start of the body.
    pub fn open(socket: TcpStream, url: &str) -> Result<WsFlvPlayer, PlayError> {
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        match tungstenite::client::client_with_config(url, socket, Some(config)) {
            Ok((ws, _)) => Ok(WsFlvPlayer {
                ws,
                flv: FlvReader::new(),
            }),
            Err(HandshakeError::Interrupted(_)) => Err(PlayError::Failed(
                "no WebSocket handshake reply in time".into(),
            )),
            Err(HandshakeError::Failure(Error::Http(response))) => {
                let body = response.body().as_deref().unwrap_or_default();
                Err(PlayError::Failed(short(&format_args!(
                    "HTTP {}: {}",
                    response.status(),
                    String::from_utf8_lossy(body).trim()
                ))))
            }
            Err(HandshakeError::Failure(e)) => Err(failed("WebSocket handshake", &e)),
        }
    }

    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), PlayError> {
        self.ws
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(|e| io_failure("setting the timeout", &e))
    }

    /// One message; the whole audio/video tags it completes go to `on_tag`.
    pub fn read(&mut self, on_tag: &mut dyn FnMut(u8, &[u8])) -> Result<(), PlayError> {
        match self.ws.read() {
            Ok(Message::Binary(data)) => {
                self.flv.push(&data);
                drain_tags(&mut self.flv, on_tag)
            }
            Ok(Message::Close(frame)) => Err(PlayError::Failed(match frame {
                Some(f) => short(&format_args!(
                    "closed by the server: {} {}",
                    f.code, f.reason
                )),
                None => "closed by the server".into(),
            })),
            // Pings are answered by tungstenite on the next read.
            Ok(_) => Ok(()),
            Err(e) => Err(failure(e)),
        }
    }
}

fn failure(e: Error) -> PlayError {
    match e {
        Error::Io(e) => io_failure("WebSocket", &e),
        Error::ConnectionClosed | Error::AlreadyClosed => {
            PlayError::Failed("WebSocket closed".into())
        }
        e => PlayError::Failed(short(&format_args!("WebSocket: {e}"))),
    }
}
