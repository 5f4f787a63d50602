//! The playlists (RFC 8216bis), as text, from a segmenter's window. The media
//! playlist uses only relative URIs (`init-0.mp4`, `seg-12.m4s`,
//! `part-12.3.m4s`), so it is the same for every viewer: it is rendered once per
//! new part and shared. Low-Latency HLS: parts of the last three target
//! durations, a preload hint for the part being filled, blocking reloads
//! announced in `EXT-X-SERVER-CONTROL`. Clients that ignore parts play the
//! segments.

use std::fmt::Write as _;

use super::segmenter::Segmenter;
use crate::utc::UtcTime;

/// `#EXT-X-VERSION`: 6 covers `EXT-X-MAP` in a playlist without I-frames only.
const VERSION: u32 = 6;

/// The media playlist of `s`'s window.
pub fn media(s: &Segmenter) -> String {
    let config = s.config();
    let target = s.target_duration();
    let part_target = f64::from(config.part_target_ms) / 1000.0;
    let mut out = String::with_capacity(2048);
    let _ = writeln!(out, "#EXTM3U\n#EXT-X-VERSION:{VERSION}");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
    // PART-HOLD-BACK: RFC 8216bis requires at least twice the part target (and
    // recommends three times). Twice keeps players such as hls.js within 2 s of
    // the live edge; a part is listed the moment it is complete and blocking
    // reloads deliver it at once, so the smaller margin holds here.
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
        2.0 * part_target
    );
    let segments = s.segments();
    let first = segments.front().map_or(0, |seg| seg.msn);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first}");
    if s.discontinuity_sequence() > 0 || segments.iter().any(|seg| seg.discontinuity) {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            s.discontinuity_sequence()
        );
    }
    // Parts are listed for the segments that end within three target durations
    // of the playlist's end.
    let mut from_end = 0u64;
    let with_parts: Vec<bool> = segments
        .iter()
        .rev()
        .map(|seg| {
            let listed = from_end < 3 * u64::from(target) * 1000;
            from_end += u64::from(seg.duration_ms);
            listed
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let mut map: Option<u32> = None;
    for (seg, parts) in segments.iter().zip(with_parts) {
        if seg.parts.is_empty() {
            // A segment just opened: tags with nothing after them would apply
            // to no segment (Chromium's parser refuses such a playlist).
            continue;
        }
        if seg.discontinuity && map.is_some() {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(seg.init.id) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"init-{}.mp4\"", seg.init.id);
            map = Some(seg.init.id);
        }
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            rfc3339_millis(seg.program_date_time)
        );
        if parts {
            for (i, part) in seg.parts.iter().enumerate() {
                let _ = write!(
                    out,
                    "#EXT-X-PART:DURATION={:.3},URI=\"part-{}.{i}.m4s\"",
                    f64::from(part.duration_ms) / 1000.0,
                    seg.msn
                );
                out.push_str(if part.independent {
                    ",INDEPENDENT=YES\n"
                } else {
                    "\n"
                });
            }
        }
        if seg.complete {
            let _ = writeln!(
                out,
                "#EXTINF:{:.3},\nseg-{}.m4s",
                f64::from(seg.duration_ms) / 1000.0,
                seg.msn
            );
        }
    }
    if let Some((msn, part)) = s.next_part() {
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-{msn}.{part}.m4s\""
        );
    }
    if s.is_ended() {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-30T00:53:30.123Z`.
fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let t = UtcTime::from_system(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}

/// The multivariant playlist: one variant naming `media_uri`, with its
/// bandwidth, codecs and (for video) resolution; `None` before an init exists.
pub fn multivariant(s: &Segmenter, media_uri: &str) -> Option<String> {
    let init = s.init()?;
    let codecs: Vec<&str> = init
        .tracks
        .iter()
        .map(|t| t.codec_string.as_str())
        .collect();
    // BANDWIDTH is the peak segment bitrate; a little headroom for what a
    // segment still to come may bring.
    let bandwidth = (s.peak_bitrate() * 11 / 10).max(1);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:{VERSION}\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"",
        codecs.join(",")
    );
    if let Some(video) = init.tracks.iter().find(|t| t.is_video() && t.width > 0) {
        let _ = write!(out, ",RESOLUTION={}x{}", video.width, video.height);
    }
    let _ = write!(out, "\n{media_uri}\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn program_date_times_are_rfc3339_with_milliseconds() {
        let at = |ms| rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
