//! AMF0 codec: decodes and encodes the values RTMP command and data messages
//! carry (connect, createStream, publish, onMetaData, ...), including AMF3
//! values embedded behind the AVM+ marker. Decoding is total over untrusted
//! bytes: every failure is an [`Amf0Error`], and work is bounded by the input
//! size and the [`AmfLimits`] in force.

use std::fmt;

use crate::amf::amf3::{self, Amf3Error, Amf3Reader, Amf3Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    String(String),
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    /// Index into the message's object table; kept as read, never resolved.
    Reference(u16),
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    Date {
        millis: f64,
        timezone: i16,
    },
    LongString(String),
    TypedObject {
        class_name: String,
        properties: Vec<(String, Amf0Value)>,
    },
    Unsupported,
    XmlDocument(String),
    /// AVM+ marker 0x11: one AMF3 value follows.
    Amf3(Amf3Value),
}

/// Bounds on one decode call. `max_elements` counts every value decoded in
/// one `read_value` call at all nesting levels, AMF3 values included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmfLimits {
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Default for AmfLimits {
    fn default() -> Self {
        AmfLimits {
            max_depth: 32,
            max_elements: 65536,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amf0Error {
    Truncated {
        offset: usize,
        what: &'static str,
        needed: usize,
        left: usize,
    },
    UnknownMarker {
        offset: usize,
        marker: u8,
    },
    UnexpectedObjectEnd {
        offset: usize,
    },
    TooDeep {
        max_depth: usize,
    },
    TooManyElements {
        max_elements: usize,
    },
    Amf3(Amf3Error),
}

impl fmt::Display for Amf0Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amf0Error::Truncated {
                offset,
                what,
                needed,
                left,
            } => write!(
                f,
                "AMF0 at byte {offset}: input ends inside {what} (needs {needed} bytes, {left} left)"
            ),
            Amf0Error::UnknownMarker { offset, marker } => {
                write!(f, "AMF0 at byte {offset}: unknown type marker 0x{marker:02x}")
            }
            Amf0Error::UnexpectedObjectEnd { offset } => write!(
                f,
                "AMF0 at byte {offset}: object-end marker 0x09 where a value was expected"
            ),
            Amf0Error::TooDeep { max_depth } => {
                write!(f, "AMF0: nesting deeper than {max_depth} levels")
            }
            Amf0Error::TooManyElements { max_elements } => {
                write!(f, "AMF0: more than {max_elements} values in one message")
            }
            // The AMF3 message already carries its absolute byte offset.
            Amf0Error::Amf3(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Amf0Error {}

impl From<Amf3Error> for Amf0Error {
    fn from(e: Amf3Error) -> Self {
        Amf0Error::Amf3(e)
    }
}

pub struct Amf0Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: AmfLimits,
    elements: usize,
}

impl<'a> Amf0Reader<'a> {
    pub fn new(buf: &'a [u8], limits: AmfLimits) -> Self {
        Amf0Reader {
            buf,
            pos: 0,
            limits,
            elements: 0,
        }
    }

    /// Reads the next top-level value. The element budget spans every value this
    /// reader decodes, so a message cannot escape it by being a long flat list.
    pub fn read_value(&mut self) -> Result<Amf0Value, Amf0Error> {
        self.read_at(0)
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn read_at(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        let at = self.pos;
        let marker = self.byte("a type marker")?;
        self.elements = self.elements.saturating_add(1);
        if self.elements > self.limits.max_elements {
            return Err(Amf0Error::TooManyElements {
                max_elements: self.limits.max_elements,
            });
        }
        Ok(match marker {
            0x00 => Amf0Value::Number(self.f64("a number")?),
            0x01 => Amf0Value::Boolean(self.byte("a boolean")? != 0),
            0x02 => Amf0Value::String(self.short_string("a string")?),
            0x03 => {
                self.enter(depth)?;
                Amf0Value::Object(self.properties(depth)?)
            }
            0x05 => Amf0Value::Null,
            0x06 => Amf0Value::Undefined,
            0x07 => Amf0Value::Reference(u16::from_be_bytes(self.array("a reference")?)),
            0x08 => {
                self.enter(depth)?;
                // The count is advisory; the end marker is what ends the list.
                self.array::<4>("an ECMA array count")?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            0x09 => return Err(Amf0Error::UnexpectedObjectEnd { offset: at }),
            0x0A => {
                self.enter(depth)?;
                let count = u32::from_be_bytes(self.array("a strict array count")?);
                // Every item takes at least one byte, so a lying count runs
                // into the end of input rather than into memory.
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.read_at(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            0x0B => Amf0Value::Date {
                millis: self.f64("a date")?,
                timezone: i16::from_be_bytes(self.array("a date")?),
            },
            0x0C => Amf0Value::LongString(self.long_string("a long string")?),
            0x0D => Amf0Value::Unsupported,
            0x0F => Amf0Value::XmlDocument(self.long_string("an XML document")?),
            0x10 => {
                self.enter(depth)?;
                let class_name = self.short_string("a class name")?;
                let properties = self.properties(depth)?;
                Amf0Value::TypedObject {
                    class_name,
                    properties,
                }
            }
            0x11 => {
                let mut reader =
                    Amf3Reader::nested(self.buf, self.pos, self.limits, depth, self.elements);
                let value = reader.read_value()?;
                self.pos = reader.position();
                self.elements = reader.elements_used();
                Amf0Value::Amf3(value)
            }
            // 0x04 movieclip and 0x0e recordset are reserved and never sent.
            _ => return Err(Amf0Error::UnknownMarker { offset: at, marker }),
        })
    }

    /// Property list of an object, ECMA array or typed object, up to and
    /// including the 0x00 0x00 0x09 end marker.
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            let len = u16::from_be_bytes(self.array("a property name")?);
            if len == 0 {
                match self.buf.get(self.pos) {
                    Some(0x09) => {
                        self.pos += 1;
                        return Ok(props);
                    }
                    None => {
                        return Err(Amf0Error::Truncated {
                            offset: self.pos,
                            what: "an object-end marker",
                            needed: 1,
                            left: 0,
                        })
                    }
                    // An empty name followed by a value is a real property.
                    Some(_) => {}
                }
            }
            let key = self.utf8(usize::from(len), "a property name")?;
            props.push((key, self.read_at(depth + 1)?));
        }
    }

    fn enter(&self, depth: usize) -> Result<(), Amf0Error> {
        if depth >= self.limits.max_depth {
            return Err(Amf0Error::TooDeep {
                max_depth: self.limits.max_depth,
            });
        }
        Ok(())
    }

    fn short_string(&mut self, what: &'static str) -> Result<String, Amf0Error> {
        let len = u16::from_be_bytes(self.array(what)?);
        self.utf8(usize::from(len), what)
    }

    fn long_string(&mut self, what: &'static str) -> Result<String, Amf0Error> {
        let len = u32::from_be_bytes(self.array(what)?);
        self.utf8(usize::try_from(len).unwrap_or(usize::MAX), what)
    }

    /// Peers do send broken UTF-8 (e.g. Latin-1 stream names); losing a
    /// character beats dropping the command.
    fn utf8(&mut self, len: usize, what: &'static str) -> Result<String, Amf0Error> {
        Ok(String::from_utf8_lossy(self.take(len, what)?).into_owned())
    }

    fn f64(&mut self, what: &'static str) -> Result<f64, Amf0Error> {
        Ok(f64::from_bits(u64::from_be_bytes(self.array(what)?)))
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, Amf0Error> {
        let [b] = self.array(what)?;
        Ok(b)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Amf0Error> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        for (d, s) in out.iter_mut().zip(bytes) {
            *d = *s;
        }
        Ok(out)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Amf0Error> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.get(..n) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(Amf0Error::Truncated {
                offset: self.pos,
                what,
                needed: n,
                left: rest.len(),
            }),
        }
    }
}

/// Decodes every value in `buf` (a whole command or data message body).
pub fn decode_all(buf: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    decode_all_with(buf, AmfLimits::default())
}

pub fn decode_all_with(buf: &[u8], limits: AmfLimits) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut reader = Amf0Reader::new(buf, limits);
    let mut values = Vec::new();
    while !reader.is_empty() {
        values.push(reader.read_value()?);
    }
    Ok(values)
}

/// Encodes `value`. Strings over 65535 bytes become LongStrings; property
/// names and class names over 65535 bytes, which AMF0 cannot express, are
/// truncated at a character boundary. AMF3 values go through
/// [`amf3::encode_value`], which writes no references.
pub fn encode_value(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => out.extend_from_slice(&[0x01, u8::from(*b)]),
        Amf0Value::String(s) if s.len() <= usize::from(u16::MAX) => {
            out.push(0x02);
            write_short(out, s);
        }
        Amf0Value::String(s) | Amf0Value::LongString(s) => {
            out.push(0x0C);
            write_long(out, s);
        }
        Amf0Value::Object(props) => {
            out.push(0x03);
            write_properties(out, props);
        }
        Amf0Value::Null => out.push(0x05),
        Amf0Value::Undefined => out.push(0x06),
        Amf0Value::Reference(index) => {
            out.push(0x07);
            out.extend_from_slice(&index.to_be_bytes());
        }
        Amf0Value::EcmaArray(props) => {
            out.push(0x08);
            out.extend_from_slice(&clamp_u32(props.len()).to_be_bytes());
            write_properties(out, props);
        }
        Amf0Value::StrictArray(items) => {
            out.push(0x0A);
            let count = clamp_u32(items.len());
            out.extend_from_slice(&count.to_be_bytes());
            items
                .iter()
                .take(count as usize)
                .for_each(|v| encode_value(v, out));
        }
        Amf0Value::Date { millis, timezone } => {
            out.push(0x0B);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&timezone.to_be_bytes());
        }
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => {
            out.push(0x10);
            write_short(out, class_name);
            write_properties(out, properties);
        }
        Amf0Value::Unsupported => out.push(0x0D),
        Amf0Value::XmlDocument(s) => {
            out.push(0x0F);
            write_long(out, s);
        }
        Amf0Value::Amf3(v) => {
            out.push(0x11);
            amf3::encode_value(v, out);
        }
    }
}

pub fn encode_all(values: &[Amf0Value], out: &mut Vec<u8>) {
    values.iter().for_each(|v| encode_value(v, out));
}

/// [`encode_all`] into a fresh buffer, for building message bodies.
pub fn encode_all_to_vec(values: &[Amf0Value]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_all(values, &mut out);
    out
}

fn write_properties(out: &mut Vec<u8>, props: &[(String, Amf0Value)]) {
    for (key, value) in props {
        write_short(out, key);
        encode_value(value, out);
    }
    out.extend_from_slice(&[0x00, 0x00, 0x09]);
}

fn write_short(out: &mut Vec<u8>, s: &str) {
    let bytes = clamp_str(s, usize::from(u16::MAX)).as_bytes();
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn write_long(out: &mut Vec<u8>, s: &str) {
    let bytes = clamp_str(s, u32::MAX as usize).as_bytes();
    out.extend_from_slice(&clamp_u32(bytes.len()).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn clamp_str(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Builds an anonymous object for command replies:
/// `object(vec![("level", "status".into()), ("code", code.into())])`.
pub fn object<K: Into<String>>(props: Vec<(K, Amf0Value)>) -> Amf0Value {
    Amf0Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

impl Amf0Value {
    /// String, LongString, or an embedded AMF3 String.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            Amf0Value::Amf3(Amf3Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Number, or an embedded AMF3 Integer or Double.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            Amf0Value::Amf3(Amf3Value::Integer(i)) => Some(f64::from(*i)),
            Amf0Value::Amf3(Amf3Value::Double(d)) => Some(*d),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) | Amf0Value::Amf3(Amf3Value::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    /// First property named `key` of an Object, EcmaArray or TypedObject.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(props)
            | Amf0Value::EcmaArray(props)
            | Amf0Value::TypedObject {
                properties: props, ..
            } => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_null_or_undefined(&self) -> bool {
        matches!(
            self,
            Amf0Value::Null
                | Amf0Value::Undefined
                | Amf0Value::Amf3(Amf3Value::Null | Amf3Value::Undefined)
        )
    }
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Amf0Value::Number(n)
    }
}

impl From<bool> for Amf0Value {
    fn from(b: bool) -> Self {
        Amf0Value::Boolean(b)
    }
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Amf0Value::String(s.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(s: String) -> Self {
        Amf0Value::String(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(values: &[Amf0Value]) -> Vec<u8> {
        encode_all_to_vec(values)
    }

    fn short(s: &str) -> Vec<u8> {
        let mut out = (s.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    }

    fn string(s: &str) -> Vec<u8> {
        [vec![0x02], short(s)].concat()
    }

    /// The connect command body ffmpeg (libavformat rtmpproto.c) sends when
    /// publishing, byte for byte.
    fn ffmpeg_connect() -> Vec<u8> {
        [
            string("connect"),
            vec![0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0],
            vec![0x03],
            short("app"),
            string("live"),
            short("type"),
            string("nonprivate"),
            short("flashVer"),
            string("FMLE/3.0 (compatible; Lavf61.1.100)"),
            short("tcUrl"),
            string("rtmp://localhost:1935/live"),
            vec![0x00, 0x00, 0x09],
        ]
        .concat()
    }

    #[test]
    fn decodes_ffmpeg_connect() {
        let bytes = ffmpeg_connect();
        let values = decode_all(&bytes).unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_f64(), Some(1.0));
        let cmd = &values[2];
        assert_eq!(cmd.get("app").and_then(Amf0Value::as_str), Some("live"));
        assert_eq!(
            cmd.get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://localhost:1935/live")
        );
        assert_eq!(cmd.get("missing"), None);
        // Our encoder reproduces the same bytes.
        assert_eq!(encoded(&values), bytes);
    }

    #[test]
    fn decodes_set_data_frame_ecma_array() {
        let bytes = [
            string("@setDataFrame"),
            string("onMetaData"),
            vec![0x08, 0, 0, 0, 2],
            short("width"),
            vec![0x00, 0x40, 0x94, 0, 0, 0, 0, 0, 0],
            short("stereo"),
            vec![0x01, 0x01],
            vec![0x00, 0x00, 0x09],
        ]
        .concat();
        let values = decode_all(&bytes).unwrap();
        assert_eq!(
            values[2],
            Amf0Value::EcmaArray(vec![
                ("width".into(), Amf0Value::Number(1280.0)),
                ("stereo".into(), Amf0Value::Boolean(true)),
            ])
        );
        assert_eq!(
            values[2].get("stereo").and_then(Amf0Value::as_bool),
            Some(true)
        );
        assert_eq!(encoded(&values), bytes);
    }

    fn every_type() -> Vec<Amf0Value> {
        vec![
            Amf0Value::Number(-2.5),
            Amf0Value::Boolean(false),
            Amf0Value::String("héllo".into()),
            object(vec![
                ("level", "status".into()),
                ("", Amf0Value::Null),
                ("nested", object(vec![("n", 1.0.into())])),
            ]),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::Reference(7),
            Amf0Value::EcmaArray(vec![("duration".into(), 0.0.into())]),
            Amf0Value::StrictArray(vec![true.into(), Amf0Value::StrictArray(vec![])]),
            Amf0Value::Date {
                millis: 1.7e12,
                timezone: -60,
            },
            Amf0Value::LongString("short but long".into()),
            Amf0Value::TypedObject {
                class_name: "com.Foo".into(),
                properties: vec![("x".into(), Amf0Value::Undefined)],
            },
            Amf0Value::Unsupported,
            Amf0Value::XmlDocument("<x/>".into()),
            Amf0Value::Amf3(Amf3Value::Object {
                class_name: String::new(),
                properties: vec![("a".into(), Amf3Value::Integer(1))],
            }),
            Amf0Value::Amf3(Amf3Value::String("amf3".into())),
        ]
    }

    #[test]
    fn round_trip_every_type() {
        let values = every_type();
        assert_eq!(decode_all(&encoded(&values)).unwrap(), values);
    }

    #[test]
    fn long_strings_are_promoted() {
        let long = "x".repeat(70_000);
        let bytes = encoded(&[Amf0Value::String(long.clone())]);
        assert_eq!(bytes[0], 0x0C);
        let values = decode_all(&bytes).unwrap();
        assert_eq!(values, vec![Amf0Value::LongString(long.clone())]);
        assert_eq!(values[0].as_str(), Some(long.as_str()));
    }

    #[test]
    fn every_truncation_is_an_error() {
        for value in every_type()
            .into_iter()
            .chain([Amf0Value::StrictArray(every_type())])
        {
            let bytes = encoded(&[value]);
            for cut in 0..bytes.len() {
                let mut reader = Amf0Reader::new(&bytes[..cut], AmfLimits::default());
                assert!(reader.read_value().is_err(), "cut {cut} of {bytes:02x?}");
            }
        }
        let bytes = ffmpeg_connect();
        let mut reader = Amf0Reader::new(&bytes[..bytes.len() - 1], AmfLimits::default());
        reader.read_value().unwrap();
        reader.read_value().unwrap();
        let err = reader.read_value().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "AMF0 at byte {}: input ends inside an object-end marker (needs 1 bytes, 0 left)",
                bytes.len() - 1
            )
        );
    }

    #[test]
    fn object_end_where_value_expected() {
        let err = decode_all(&[0x09]).unwrap_err();
        assert_eq!(err, Amf0Error::UnexpectedObjectEnd { offset: 0 });
        let bytes = [vec![0x03], short("a"), vec![0x09]].concat();
        assert_eq!(
            decode_all(&bytes).unwrap_err().to_string(),
            "AMF0 at byte 4: object-end marker 0x09 where a value was expected"
        );
    }

    #[test]
    fn unknown_markers() {
        let mut bytes = string("connect");
        bytes.extend_from_slice(&[0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0x13]);
        assert_eq!(
            decode_all(&bytes).unwrap_err().to_string(),
            "AMF0 at byte 19: unknown type marker 0x13"
        );
        for marker in [0x04, 0x0E] {
            assert!(matches!(
                decode_all(&[marker]),
                Err(Amf0Error::UnknownMarker { .. })
            ));
        }
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        let bytes = [0x02, 0x00, 0x02, 0xC3, b'a'];
        assert_eq!(
            decode_all(&bytes).unwrap(),
            vec![Amf0Value::String("\u{FFFD}a".into())]
        );
    }

    fn nested_arrays(levels: usize) -> Vec<u8> {
        let mut bytes = [0x0A, 0, 0, 0, 1].repeat(levels);
        bytes.push(0x05);
        bytes
    }

    #[test]
    fn deep_nesting_hits_depth_limit() {
        assert!(decode_all(&nested_arrays(32)).is_ok());
        let err = decode_all(&nested_arrays(33)).unwrap_err();
        assert_eq!(err, Amf0Error::TooDeep { max_depth: 32 });
        assert_eq!(err.to_string(), "AMF0: nesting deeper than 32 levels");
        // Objects nest the same way.
        let mut bytes = [vec![0x03], short("k")].concat().repeat(40);
        bytes.push(0x05);
        assert_eq!(
            decode_all(&bytes).unwrap_err(),
            Amf0Error::TooDeep { max_depth: 32 }
        );
    }

    #[test]
    fn embedded_amf3_shares_the_budget() {
        // 30 AMF0 levels, then an AMF3 array nested 5 deep.
        let mut bytes = [0x0A, 0, 0, 0, 1].repeat(30);
        bytes.push(0x11);
        bytes.extend_from_slice(&[0x09, 0x03, 0x01].repeat(5));
        bytes.push(0x01);
        let err = decode_all(&bytes).unwrap_err();
        assert_eq!(err, Amf0Error::Amf3(Amf3Error::TooDeep { max_depth: 32 }));
        assert_eq!(err.to_string(), "AMF3: nesting deeper than 32 levels");

        let limits = AmfLimits {
            max_depth: 32,
            max_elements: 10,
        };
        // 1 strict array + 5 nulls + AVM+ marker + AMF3 array + 3 nulls = 11
        let mut bytes = vec![0x0A, 0, 0, 0, 7, 5, 5, 5, 5, 5, 0x11, 0x09, 0x07, 0x01];
        bytes.extend_from_slice(&[1, 1, 1]);
        bytes.push(0x05);
        let err = decode_all_with(&bytes, limits).unwrap_err();
        assert_eq!(
            err,
            Amf0Error::Amf3(Amf3Error::TooManyElements { max_elements: 10 })
        );
    }

    #[test]
    fn embedded_amf3_advances_the_reader() {
        let bytes = [vec![0x11, 0x04, 0x81, 0x00], string("after")].concat();
        let values = decode_all(&bytes).unwrap();
        assert_eq!(values[0], Amf0Value::Amf3(Amf3Value::Integer(128)));
        assert_eq!(values[0].as_f64(), Some(128.0));
        assert_eq!(values[1].as_str(), Some("after"));
        let err = decode_all(&[0x05, 0x11, 0x0A, 0x04]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AMF3 at byte 2: object reference 2 points past the 0 entries seen so far"
        );
    }

    #[test]
    fn huge_claimed_counts_fail_fast() {
        for bytes in [
            &[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05][..],
            &[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a'],
            &[0x0F, 0xFF, 0xFF, 0xFF, 0xFF],
            &[0x02, 0xFF, 0xFF, b'a'],
            &[0x03, 0xFF, 0xFF, b'k'],
        ] {
            assert!(
                matches!(decode_all(bytes), Err(Amf0Error::Truncated { .. })),
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn element_budget_spans_top_level_values() {
        let limits = AmfLimits {
            max_depth: 32,
            max_elements: 100,
        };
        let nulls = vec![0x05u8; 101];
        assert_eq!(
            decode_all_with(&nulls, limits),
            Err(Amf0Error::TooManyElements { max_elements: 100 })
        );
        assert_eq!(
            decode_all_with(&nulls[..100], limits).map(|v| v.len()),
            Ok(100)
        );
    }

    #[test]
    fn too_many_elements() {
        let mut bytes = vec![0x0A];
        bytes.extend_from_slice(&70_000u32.to_be_bytes());
        bytes.extend_from_slice(&[0x05; 70_000]);
        let err = decode_all(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AMF0: more than 65536 values in one message"
        );
    }

    #[test]
    fn helpers() {
        assert!(Amf0Value::Null.is_null_or_undefined());
        assert!(Amf0Value::Amf3(Amf3Value::Undefined).is_null_or_undefined());
        assert!(!Amf0Value::Number(0.0).is_null_or_undefined());
        assert_eq!(
            Amf0Value::Amf3(Amf3Value::Boolean(true)).as_bool(),
            Some(true)
        );
        assert_eq!(Amf0Value::Number(1.0).as_str(), None);
        let typed = Amf0Value::TypedObject {
            class_name: "C".into(),
            properties: vec![("k".into(), "v".into())],
        };
        assert_eq!(typed.get("k").and_then(Amf0Value::as_str), Some("v"));
        let mut reader = Amf0Reader::new(&[0x05, 0x06], AmfLimits::default());
        assert_eq!(reader.read_value(), Ok(Amf0Value::Null));
        assert_eq!(reader.position(), 1);
        assert!(!reader.is_empty());
        assert_eq!(reader.read_value(), Ok(Amf0Value::Undefined));
        assert!(reader.is_empty());
    }

    #[test]
    fn random_mutations_never_panic() {
        let base = [ffmpeg_connect(), encoded(&every_type())].concat();
        let mut rng = crate::rng::Rng::new(0x9E37_79B9_7F4A_7C15u64);
        let mut next = move || rng.next_u64();
        for _ in 0..20_000 {
            let mut bytes = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            let _ = decode_all(&bytes);
            let _ = decode_all(&bytes[(next() as usize) % bytes.len()..]);
        }
    }
}
