//! The `onMetaData` a recorder writes at the head of each file: the publisher's
//! fields, with `duration` and `filesize` first and always present as AMF0
//! numbers. An AMF0 number is a marker byte and eight bytes of double whatever its
//! value, so both can be rewritten in place as the file grows and when it ends,
//! without moving a byte of what follows; players read them to seek.
//!
//! Also the reverse for `/api/recordings`: a file's `duration` from its head.

use crate::amf::amf0::{self, Amf0Value, AmfLimits};
use crate::media::flv::{HEADER_LEN, MAX_TAG_DATA_LEN, TAG_HEADER_LEN, TAG_SCRIPT};

/// Publisher metadata is small; these bounds keep a hostile one cheap.
const LIMITS: AmfLimits = AmfLimits {
    max_depth: 8,
    max_elements: 4096,
};

/// The fields the recorder owns; the publisher's values of them are dropped.
const DURATION: &str = "duration";
const FILESIZE: &str = "filesize";

/// Where the metadata tag starts in a file: after the header and PreviousTagSize0.
pub const TAG_OFFSET: u64 = (HEADER_LEN + 4) as u64;

/// The recorder's `onMetaData` body (the data of a script tag).
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub body: Vec<u8>,
    /// Offsets, in `body`, of the eight bytes of `duration` and of `filesize`.
    duration_at: usize,
    filesize_at: usize,
}

/// Where in a file the two numbers are, to rewrite them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldOffsets {
    pub duration: u64,
    pub filesize: u64,
}

impl Metadata {
    /// Our `onMetaData` from the publisher's (its body as published, without
    /// `@setDataFrame`), or only our two fields if there is none or it does not
    /// parse.
    pub fn new(published: Option<&[u8]>) -> Metadata {
        let ours = Metadata::build(published);
        if ours.body.len() > MAX_TAG_DATA_LEN {
            // The publisher's own filled a whole message: ours cannot add to it.
            return Metadata::build(None);
        }
        ours
    }

    fn build(published: Option<&[u8]>) -> Metadata {
        let mut fields = vec![
            (DURATION.to_owned(), Amf0Value::Number(0.0)),
            (FILESIZE.to_owned(), Amf0Value::Number(0.0)),
        ];
        fields.extend(
            published
                .and_then(publisher_fields)
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k != DURATION && k != FILESIZE),
        );
        let mut body = Vec::new();
        amf0::encode_value(&Amf0Value::String("onMetaData".into()), &mut body);
        let array_at = body.len();
        amf0::encode_value(&Amf0Value::EcmaArray(fields), &mut body);
        // ECMA array marker and count, then each name (u16 length + text) and the
        // number's marker byte.
        let duration_at = array_at + 1 + 4 + 2 + DURATION.len() + 1;
        let filesize_at = duration_at + 8 + 2 + FILESIZE.len() + 1;
        Metadata {
            body,
            duration_at,
            filesize_at,
        }
    }

    /// Where the two numbers land when this body is the data of the script tag at
    /// [`TAG_OFFSET`].
    pub fn offsets(&self) -> FieldOffsets {
        let data = TAG_OFFSET + TAG_HEADER_LEN as u64;
        FieldOffsets {
            duration: data + self.duration_at as u64,
            filesize: data + self.filesize_at as u64,
        }
    }
}

/// The eight bytes that say `duration_ms` as `duration` does (seconds).
pub fn duration_bytes(duration_ms: u64) -> [u8; 8] {
    (duration_ms as f64 / 1000.0).to_be_bytes()
}

/// The eight bytes that say `bytes` as `filesize` does.
pub fn filesize_bytes(bytes: u64) -> [u8; 8] {
    (bytes as f64).to_be_bytes()
}

/// The properties of a published `onMetaData` (an object or ECMA array after
/// the name).
fn publisher_fields(payload: &[u8]) -> Option<Vec<(String, Amf0Value)>> {
    let values = amf0::decode_all_with(payload, LIMITS).ok()?;
    values.into_iter().find_map(|v| match v {
        Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => Some(props),
        Amf0Value::TypedObject { properties, .. } => Some(properties),
        _ => None,
    })
}

/// The `duration` (seconds) a file's head says, from its first bytes: the FLV
/// header, then a script tag `onMetaData`. `None` if the head is not that.
pub fn read_duration(head: &[u8]) -> Option<f64> {
    let tag = head.get(TAG_OFFSET as usize..)?;
    if tag.len() < TAG_HEADER_LEN || tag[0] != TAG_SCRIPT {
        return None;
    }
    let size = u32::from_be_bytes([0, tag[1], tag[2], tag[3]]) as usize;
    let data = tag.get(TAG_HEADER_LEN..TAG_HEADER_LEN + size)?;
    let values = amf0::decode_all_with(data, LIMITS).ok()?;
    if values.first().and_then(Amf0Value::as_str) != Some("onMetaData") {
        return None;
    }
    values.get(1)?.get(DURATION)?.as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flv::{self, FlvHeader};

    fn published() -> Vec<u8> {
        amf0::encode_all_to_vec(&[
            Amf0Value::String("onMetaData".into()),
            Amf0Value::EcmaArray(vec![
                ("duration".into(), Amf0Value::Number(0.0)),
                ("width".into(), Amf0Value::Number(320.0)),
                ("encoder".into(), Amf0Value::String("Lavf59".into())),
                ("filesize".into(), Amf0Value::Number(0.0)),
            ]),
        ])
    }

    fn file_with(meta: &Metadata) -> Vec<u8> {
        let mut file = Vec::new();
        flv::write_header(
            &mut file,
            FlvHeader {
                has_audio: true,
                has_video: true,
            },
        );
        flv::write_tag(&mut file, TAG_SCRIPT, 0, &meta.body);
        file
    }

    #[test]
    fn keeps_the_publishers_fields_and_owns_duration_and_filesize() {
        let meta = Metadata::new(Some(&published()));
        let values = amf0::decode_all(&meta.body).unwrap();
        assert_eq!(values[0].as_str(), Some("onMetaData"));
        let Amf0Value::EcmaArray(props) = &values[1] else {
            panic!("{values:?}")
        };
        let names: Vec<_> = props.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["duration", "filesize", "width", "encoder"]);
        assert_eq!(values[1].get("width").unwrap().as_f64(), Some(320.0));
    }

    #[test]
    fn the_numbers_are_rewritten_in_place() {
        for published in [Some(published()), None, Some(b"\x02junk".to_vec())] {
            let meta = Metadata::new(published.as_deref());
            let mut file = file_with(&meta);
            let len = file.len();
            let at = meta.offsets();
            file[at.duration as usize..][..8].copy_from_slice(&duration_bytes(12_345));
            file[at.filesize as usize..][..8].copy_from_slice(&filesize_bytes(987_654));
            assert_eq!(file.len(), len);
            let (_, tags) = flv::parse(&file).unwrap();
            let values = amf0::decode_all(&tags[0].data).unwrap();
            assert_eq!(values[1].get("duration").unwrap().as_f64(), Some(12.345));
            assert_eq!(values[1].get("filesize").unwrap().as_f64(), Some(987_654.0));
            assert_eq!(read_duration(&file), Some(12.345));
        }
    }

    #[test]
    fn metadata_that_fills_a_whole_message_is_left_out() {
        let huge = amf0::encode_all_to_vec(&[
            Amf0Value::String("onMetaData".into()),
            Amf0Value::EcmaArray(vec![(
                "blob".into(),
                Amf0Value::LongString("x".repeat(MAX_TAG_DATA_LEN - 40)),
            )]),
        ]);
        assert!(huge.len() <= MAX_TAG_DATA_LEN);
        let meta = Metadata::new(Some(&huge));
        assert_eq!(meta, Metadata::new(None));
    }

    #[test]
    fn heads_that_are_not_ours_have_no_duration() {
        assert_eq!(read_duration(b"FLV"), None);
        let meta = Metadata::new(None);
        let file = file_with(&meta);
        assert_eq!(read_duration(&file[..file.len() - 10]), None, "cut short");
        let mut other = file.clone();
        other[TAG_OFFSET as usize] = flv::TAG_VIDEO;
        assert_eq!(read_duration(&other), None);
    }
}
