//! FLV framing: a stream as the tags of an FLV file, for HTTP-FLV, WebSocket-FLV
//! and anything else that writes FLV (a recording). Each tag is its own 11-byte
//! header, the frame's payload straight from the shared frame, and its own 4-byte
//! PreviousTagSize; a tag's trailer and the next tag's header sit side by side in
//! the batch's own bytes, so a frame costs two pieces of a write, as over RTMP.

use std::net::SocketAddr;
use std::sync::Arc;

use log::warn;

use super::{Batch, Feed};
use crate::media::flv::{self, FlvHeader, MAX_TAG_DATA_LEN};
use crate::media::frame::Frame;
use crate::registry::{Overflow, PlayerItem};

/// Why an FLV stream ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvEnd {
    /// The publisher stopped: FLV readers cannot follow a new publisher's codec
    /// setup reliably, so the file ends here.
    PublisherStopped,
    /// The server is stopping (its stop ends every stream like a publisher's).
    ServerStopping,
    /// A lossless subscriber fell too far behind.
    Dropped(Arc<Overflow>),
}

/// The FLV framing of one subscriber.
#[derive(Debug, Clone, Copy)]
pub struct FlvFraming {
    /// Whom the bytes are for, for log lines.
    peer: SocketAddr,
}

impl FlvFraming {
    pub fn new(peer: SocketAddr) -> FlvFraming {
        FlvFraming { peer }
    }

    /// Appends the 9-byte file header and PreviousTagSize0.
    pub fn header(&self, batch: &mut Batch, header: FlvHeader) {
        flv::write_header(batch.own(), header);
    }

    /// Appends one tag: `frame`'s payload at `ts`.
    pub fn tag(&self, batch: &mut Batch, frame: Arc<Frame>, ts: u32) {
        let len = frame.payload.len();
        if len > MAX_TAG_DATA_LEN {
            // RTMP message lengths are 24-bit too, so this cannot happen; never let
            // it panic the writer.
            warn!(
                "{}: skipping a {len}-byte frame: too big for FLV",
                self.peer
            );
            return;
        }
        let tag_type = flv::tag_type(frame.kind);
        batch
            .own()
            .extend_from_slice(&flv::tag_header(tag_type, ts, len));
        batch.shared(frame, u32::MAX, b"");
        batch
            .own()
            .extend_from_slice(&flv::previous_tag_size(len).to_be_bytes());
        batch.mark_media();
    }

    /// What a played stream's queue item becomes in an FLV body: a tag for each
    /// frame the filter lets through; a new publisher's frames continue the
    /// timeline; the publisher's stop (or the server's) and a lossless
    /// subscriber's drop end it.
    pub fn play_item(
        &self,
        batch: &mut Batch,
        feed: &mut Feed,
        item: PlayerItem,
    ) -> Result<(), FlvEnd> {
        match item {
            PlayerItem::Frame(frame) => {
                if let Some(ts) = feed.filter.admit(&frame) {
                    self.tag(batch, frame, ts);
                }
                Ok(())
            }
            PlayerItem::PublishStart => {
                feed.filter.new_epoch();
                Ok(())
            }
            PlayerItem::PublishStop if feed.subscription.is_closed() => Err(FlvEnd::ServerStopping),
            PlayerItem::PublishStop => Err(FlvEnd::PublisherStopped),
            PlayerItem::Dropped(why) => Err(FlvEnd::Dropped(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flv::{FlvTag, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
    use crate::media::frame::FrameKind;
    use crate::net::transport::testing::Recorder;

    #[test]
    fn tags_parse_back_to_the_frames() {
        let frames = [
            Frame::media(FrameKind::Data, 0, vec![2, 0, 10, b'o', b'n']),
            Frame::media(FrameKind::Video, 0, vec![0x17, 0, 0, 0, 0, 1, 2]),
            Frame::media(FrameKind::Audio, 23, vec![0xaf, 1, 0x21]),
            Frame::media(FrameKind::Audio, 46, vec![]),
            Frame::media(FrameKind::Video, 0x0123_4567, (0..=255).collect()),
        ];
        let mut batch = Batch::new();
        let av = FlvHeader {
            has_audio: true,
            has_video: true,
        };
        let framing = FlvFraming::new(([127, 0, 0, 1], 1).into());
        framing.header(&mut batch, av);
        let mut wire = Recorder::default();
        for (i, f) in frames.iter().enumerate() {
            framing.tag(&mut batch, Arc::new(f.clone()), f.timestamp);
            if i == 2 {
                // A write between tags: the body carries on in the next one.
                batch.write(&mut wire).unwrap();
            }
        }
        assert!(batch.has_media());
        batch.write(&mut wire).unwrap();
        let (parsed_header, tags) = flv::parse(&wire.bytes()).unwrap();
        assert_eq!(parsed_header, av);
        let want: Vec<FlvTag> = frames
            .iter()
            .map(|f| FlvTag {
                tag_type: flv::tag_type(f.kind),
                timestamp: f.timestamp,
                data: f.payload.to_vec(),
            })
            .collect();
        assert_eq!(tags, want);
        assert_eq!(
            tags.iter().map(|t| t.tag_type).collect::<Vec<_>>(),
            [TAG_SCRIPT, TAG_VIDEO, TAG_AUDIO, TAG_AUDIO, TAG_VIDEO]
        );
    }
}
