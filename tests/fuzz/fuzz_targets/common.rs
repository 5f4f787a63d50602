//! Helpers shared by the fuzz targets (each target includes this file as `mod common`).
#![allow(dead_code)]

use rtmpd::amf::amf0::{self, Amf0Value, AmfLimits};
use rtmpd::amf::amf3::{self, Amf3Value};
use rtmpd::rtmp::chunk::RawMessage;
use rtmpd::rtmp::message::{self as msg, Command, UserControl};

/// A loose bound on what AMF3 references may expand one message by (amf3.rs allows
/// far less beyond the input's own size).
pub const AMF_EXPANSION_SLACK: usize = 16 << 20;

/// Splits input into pieces whose lengths come from a one-byte seed, so the fuzzer
/// controls how the bytes arrive (0 = all at once).
pub struct Pieces<'a> {
    rest: &'a [u8],
    state: u32,
    whole: bool,
}

impl<'a> Pieces<'a> {
    pub fn new(seed: u8, data: &'a [u8]) -> Self {
        Pieces {
            rest: data,
            state: u32::from(seed).wrapping_mul(2_654_435_761) | 1,
            whole: seed == 0,
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let n = if self.whole {
            self.rest.len()
        } else {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            match self.state % 8 {
                0..=3 => 1 + (self.state >> 8) as usize % 16,
                4..=6 => 1 + (self.state >> 8) as usize % 1024,
                _ => self.rest.len(),
            }
        };
        let (piece, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        Some(piece)
    }
}

/// Bytes of strings and data plus one per node.
pub fn amf0_weight(v: &Amf0Value) -> usize {
    let pairs = |p: &[(String, Amf0Value)]| -> usize {
        p.iter().map(|(k, v)| k.len() + amf0_weight(v)).sum()
    };
    1 + match v {
        Amf0Value::String(s) | Amf0Value::LongString(s) | Amf0Value::XmlDocument(s) => s.len(),
        Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => pairs(p),
        Amf0Value::StrictArray(items) => items.iter().map(amf0_weight).sum(),
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => class_name.len() + pairs(properties),
        Amf0Value::Amf3(v) => amf3_weight(v),
        _ => 0,
    }
}

pub fn amf3_weight(v: &Amf3Value) -> usize {
    let pairs = |p: &[(String, Amf3Value)]| -> usize {
        p.iter().map(|(k, v)| k.len() + amf3_weight(v)).sum()
    };
    1 + match v {
        Amf3Value::String(s) | Amf3Value::XmlDocument(s) | Amf3Value::Xml(s) => s.len(),
        Amf3Value::Array { assoc, dense } => {
            pairs(assoc) + dense.iter().map(amf3_weight).sum::<usize>()
        }
        Amf3Value::Object {
            class_name,
            properties,
        } => class_name.len() + pairs(properties),
        Amf3Value::ByteArray(b) => b.len(),
        Amf3Value::VectorInt(v) => v.len(),
        Amf3Value::VectorUint(v) => v.len(),
        Amf3Value::VectorDouble(v) => v.len(),
        Amf3Value::VectorObject { type_name, items } => {
            type_name.len() + items.iter().map(amf3_weight).sum::<usize>()
        }
        Amf3Value::Dictionary(entries) => entries
            .iter()
            .map(|(k, v)| amf3_weight(k) + amf3_weight(v))
            .sum(),
        _ => 0,
    }
}

/// Decoded AMF must stay within the documented expansion of its input.
pub fn assert_bounded(weight: usize, input: usize, what: &str) {
    let limit = 4 * input + AMF_EXPANSION_SLACK;
    assert!(
        weight <= limit,
        "{what}: {input} bytes decode to {weight} (limit {limit})"
    );
}

/// Runs every parser that applies to a message's type.
pub fn parse_message(m: &RawMessage) {
    let limits = AmfLimits::default();
    match m.type_id {
        msg::USER_CONTROL => {
            let _ = UserControl::parse(&m.payload);
        }
        msg::AGGREGATE => {
            if let Ok(parts) = msg::split_aggregate(m.timestamp, &m.payload) {
                let total: usize = parts.iter().map(|p| p.payload.len()).sum();
                assert!(total <= m.payload.len());
            }
        }
        msg::COMMAND_AMF0 | msg::COMMAND_AMF3 | msg::DATA_AMF0 | msg::DATA_AMF3 => {
            let body = msg::strip_amf3_marker(m.type_id, &m.payload);
            if let Ok(cmd) = Command::parse(body, limits) {
                let weight = amf0_weight(&cmd.command_object)
                    + cmd.args.iter().map(amf0_weight).sum::<usize>();
                assert_bounded(weight, body.len(), "command");
            }
            if let Ok(values) = amf0::decode_all_with(body, limits) {
                let weight = values.iter().map(amf0_weight).sum();
                assert_bounded(weight, body.len(), "AMF0 body");
            }
            let _ = msg::data_name(body);
            if let Ok((value, _)) = amf3::decode_value(body) {
                assert_bounded(amf3_weight(&value), body.len(), "AMF3 body");
            }
        }
        _ => {}
    }
}
