//! AMF3 codec: decodes one AMF3 value (as carried by RTMP type-15/17 messages
//! and the AMF0 "AVM+" marker) with its string, object and traits reference
//! tables, and encodes values back without using references. Decoding is
//! total over untrusted bytes: every failure is an [`Amf3Error`], and work and
//! memory are bounded by the input size and the [`AmfLimits`] in force.

use std::fmt;

use crate::amf::amf0::AmfLimits;

/// Largest length or count a U29 header with a one-bit flag can carry.
const MAX_INLINE: usize = 0x0FFF_FFFF;

/// Back-references let a few bytes stand for a large value, so the bytes of
/// strings and byte arrays produced by one decode are capped at a small multiple
/// of the input plus this much slack. Real encoders use references for repeated
/// keys and class names: far below this.
const EXPANSION_SLACK: usize = 64 << 10;
const EXPANSION_FACTOR: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub enum Amf3Value {
    Undefined,
    Null,
    Boolean(bool),
    Integer(i32),
    Double(f64),
    String(String),
    XmlDocument(String),
    Date(f64),
    Array {
        assoc: Vec<(String, Amf3Value)>,
        dense: Vec<Amf3Value>,
    },
    /// Sealed members first, then dynamic members, in wire order.
    Object {
        class_name: String,
        properties: Vec<(String, Amf3Value)>,
    },
    Xml(String),
    ByteArray(Vec<u8>),
    VectorInt(Vec<i32>),
    VectorUint(Vec<u32>),
    VectorDouble(Vec<f64>),
    VectorObject {
        type_name: String,
        items: Vec<Amf3Value>,
    },
    Dictionary(Vec<(Amf3Value, Amf3Value)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amf3Error {
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
    BadReference {
        offset: usize,
        table: &'static str,
        index: usize,
        len: usize,
    },
    Externalizable {
        offset: usize,
        class_name: String,
    },
    TooDeep {
        max_depth: usize,
    },
    TooManyElements {
        max_elements: usize,
    },
    TooLarge {
        limit: usize,
    },
}

impl fmt::Display for Amf3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amf3Error::Truncated {
                offset,
                what,
                needed,
                left,
            } => write!(
                f,
                "AMF3 at byte {offset}: input ends inside {what} (needs {needed} bytes, {left} left)"
            ),
            Amf3Error::UnknownMarker { offset, marker } => {
                write!(f, "AMF3 at byte {offset}: unknown type marker 0x{marker:02x}")
            }
            Amf3Error::BadReference {
                offset,
                table,
                index,
                len,
            } => write!(
                f,
                "AMF3 at byte {offset}: {table} reference {index} points past the {len} entries seen so far"
            ),
            Amf3Error::Externalizable { offset, class_name } => write!(
                f,
                "AMF3 at byte {offset}: externalizable class {class_name} not supported"
            ),
            Amf3Error::TooDeep { max_depth } => {
                write!(f, "AMF3: nesting deeper than {max_depth} levels")
            }
            Amf3Error::TooManyElements { max_elements } => {
                write!(f, "AMF3: more than {max_elements} values in one message")
            }
            Amf3Error::TooLarge { limit } => write!(
                f,
                "AMF3: references expand the value past {limit} bytes of strings and data"
            ),
        }
    }
}

impl std::error::Error for Amf3Error {}

/// A decoded value whose containers and other reference-table values live in
/// the object table, so a back-reference costs an index rather than a copy;
/// the tree is only expanded once it has passed the limits.
enum Node {
    Value(Amf3Value),
    Ref(usize),
}

enum Shape {
    Leaf(Amf3Value),
    Array {
        assoc: Vec<(String, Node)>,
        dense: Vec<Node>,
    },
    Object {
        class_name: String,
        properties: Vec<(String, Node)>,
    },
    VectorObject {
        type_name: String,
        items: Vec<Node>,
    },
    Dictionary(Vec<(Node, Node)>),
}

enum Slot {
    /// Still being decoded: a reference to it is a cycle.
    Pending,
    /// `nodes`/`payload`/`height` are what one more copy of it costs.
    Done {
        shape: Shape,
        nodes: usize,
        payload: usize,
        height: usize,
    },
}

#[derive(Clone)]
struct Traits {
    class_name: String,
    sealed: Vec<String>,
    dynamic: bool,
}

/// Reads AMF3 values from one message; the reference tables persist across
/// `read_value` calls because AMF3 scopes them to the whole message.
pub struct Amf3Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: AmfLimits,
    base_depth: usize,
    base_elements: usize,
    elements: usize,
    payload: usize,
    payload_limit: usize,
    strings: Vec<String>,
    objects: Vec<Slot>,
    traits: Vec<Traits>,
}

impl<'a> Amf3Reader<'a> {
    pub fn new(buf: &'a [u8], limits: AmfLimits) -> Self {
        Self::nested(buf, 0, limits, 0, 0)
    }

    /// For AMF0's AVM+ marker: starts at `pos` with part of the depth and
    /// element budget already spent, so both formats share one budget and
    /// errors still name the caller's limits.
    pub(crate) fn nested(
        buf: &'a [u8],
        pos: usize,
        limits: AmfLimits,
        depth: usize,
        elements: usize,
    ) -> Self {
        Amf3Reader {
            buf,
            pos,
            limits,
            base_depth: depth,
            base_elements: elements,
            elements,
            payload: 0,
            payload_limit: buf
                .len()
                .saturating_mul(EXPANSION_FACTOR)
                .saturating_add(EXPANSION_SLACK),
            strings: Vec::new(),
            objects: Vec::new(),
            traits: Vec::new(),
        }
    }

    pub fn read_value(&mut self) -> Result<Amf3Value, Amf3Error> {
        self.elements = self.base_elements;
        self.payload = 0;
        let (node, _) = self.read_node(self.base_depth)?;
        Ok(match node {
            Node::Value(v) => v,
            Node::Ref(index) => self.build_ref(index),
        })
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn elements_used(&self) -> usize {
        self.elements
    }

    fn read_node(&mut self, depth: usize) -> Result<(Node, usize), Amf3Error> {
        let at = self.pos;
        let start = (self.elements, self.payload);
        let marker = self.byte("a type marker")?;
        self.charge(1, 0)?;
        let value = match marker {
            0x00 => Amf3Value::Undefined,
            0x01 => Amf3Value::Null,
            0x02 => Amf3Value::Boolean(false),
            0x03 => Amf3Value::Boolean(true),
            0x04 => Amf3Value::Integer(sign_extend(self.u29("an integer")?)),
            0x05 => Amf3Value::Double(f64::from_bits(u64::from_be_bytes(self.array("a double")?))),
            0x06 => Amf3Value::String(self.string("a string")?),
            0x07 | 0x0B | 0x0C => return self.read_bytes(marker, depth, at, start),
            0x08 => return self.read_date(depth, at, start),
            0x09 => return self.read_array(depth, at, start),
            0x0A => return self.read_object(depth, at, start),
            0x0D..=0x0F => return self.read_number_vector(marker, depth, at, start),
            0x10 => return self.read_object_vector(depth, at, start),
            0x11 => return self.read_dictionary(depth, at, start),
            _ => return Err(Amf3Error::UnknownMarker { offset: at, marker }),
        };
        Ok((Node::Value(value), 0))
    }

    /// XML document, XML and byte array share one layout: a referenceable
    /// length-prefixed run of bytes.
    fn read_bytes(
        &mut self,
        marker: u8,
        depth: usize,
        at: usize,
        start: (usize, usize),
    ) -> Result<(Node, usize), Amf3Error> {
        let what = if marker == 0x0C {
            "a byte array"
        } else {
            "an XML value"
        };
        let len = match self.header(what)? {
            Header::Ref(index) => return self.back_ref(index, depth, at),
            Header::Inline(len) => len,
        };
        let index = self.begin();
        let bytes = self.take(len, what)?;
        let value = match marker {
            0x0C => Amf3Value::ByteArray(bytes.to_vec()),
            0x07 => Amf3Value::XmlDocument(String::from_utf8_lossy(bytes).into_owned()),
            _ => Amf3Value::Xml(String::from_utf8_lossy(bytes).into_owned()),
        };
        self.charge(0, len)?;
        Ok(self.finish(index, start, Shape::Leaf(value), 0))
    }

    fn read_date(
        &mut self,
        depth: usize,
        at: usize,
        start: (usize, usize),
    ) -> Result<(Node, usize), Amf3Error> {
        if let Header::Ref(index) = self.header("a date")? {
            return self.back_ref(index, depth, at);
        }
        let index = self.begin();
        let millis = f64::from_bits(u64::from_be_bytes(self.array("a date")?));
        Ok(self.finish(index, start, Shape::Leaf(Amf3Value::Date(millis)), 0))
    }

    fn read_array(
        &mut self,
        depth: usize,
        at: usize,
        start: (usize, usize),
    ) -> Result<(Node, usize), Amf3Error> {
        let dense_count = match self.header("an array header")? {
            Header::Ref(index) => return self.back_ref(index, depth, at),
            Header::Inline(count) => count,
        };
        self.enter(depth)?;
        let index = self.begin();
        let mut height = 0;
        let mut assoc = Vec::new();
        loop {
            let key = self.string("an array key")?;
            if key.is_empty() {
                break;
            }
            let (node, h) = self.read_node(depth + 1)?;
            height = height.max(h);
            assoc.push((key, node));
        }
        // Each item consumes at least one byte, so the loop ends with the input.
        let mut dense = Vec::new();
        for _ in 0..dense_count {
            let (node, h) = self.read_node(depth + 1)?;
            height = height.max(h);
            dense.push(node);
        }
        Ok(self.finish(index, start, Shape::Array { assoc, dense }, height + 1))
    }

    fn read_object(
        &mut self,
        depth: usize,
        at: usize,
        start: (usize, usize),
    ) -> Result<(Node, usize), Amf3Error> {
        let header = self.u29("an object header")?;
        if header & 1 == 0 {
            return self.back_ref((header >> 1) as usize, depth, at);
        }
        let traits = self.read_traits(header, at)?;
        self.enter(depth)?;
        let index = self.begin();
        let mut height = 0;
        let mut properties = Vec::new();
        for name in traits.sealed {
            let (node, h) = self.read_node(depth + 1)?;
            height = height.max(h);
            properties.push((name, node));
        }
        if traits.dynamic {
            loop {
                let key = self.string("a dynamic member name")?;
                if key.is_empty() {
                    break;
                }
                let (node, h) = self.read_node(depth + 1)?;
                height = height.max(h);
                properties.push((key, node));
            }
        }
        let shape = Shape::Object {
            class_name: traits.class_name,
            properties,
        };
        Ok(self.finish(index, start, shape, height + 1))
    }

    fn read_traits(&mut self, header: u32, at: usize) -> Result<Traits, Amf3Error> {
        if header & 0b10 == 0 {
            let index = (header >> 2) as usize;
            let traits = self
                .traits
                .get(index)
                .ok_or(Amf3Error::BadReference {
                    offset: at,
                    table: "traits",
                    index,
                    len: self.traits.len(),
                })?
                .clone();
            let bytes = traits
                .sealed
                .iter()
                .fold(traits.class_name.len(), |n, s| n.saturating_add(s.len()));
            self.charge(0, bytes)?;
            return Ok(traits);
        }
        let class_name = self.string("a class name")?;
        if header & 0b100 != 0 {
            return Err(Amf3Error::Externalizable {
                offset: at,
                class_name,
            });
        }
        let mut sealed = Vec::new();
        for _ in 0..header >> 4 {
            sealed.push(self.string("a sealed member name")?);
        }
        let traits = Traits {
            class_name,
            sealed,
            dynamic: header & 0b1000 != 0,
        };
        self.traits.push(traits.clone());
        Ok(traits)
    }

    fn read_number_vector(
        &mut self,
        marker: u8,
        depth: usize,
        at: usize,
        start: (usize, usize),
    ) -> Result<(Node, usize), Amf3Error> {
        let count = match self.header("a vector header")? {
            Header::Ref(index) => return self.back_ref(index, depth, at),
            Header::Inline(count) => count,
        };
        let index = self.begin();
        self.byte("a vector header")?; // fixed-length flag: irrelevant once decoded
        let width = if marker == 0x0F { 8 } else { 4 };
        let len = count.saturating_mul(width);
        let bytes = self.take(len, "a vector")?;
        let value = match marker {
            0x0D => Amf3Value::VectorInt(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_be_bytes(to_array(c)))
                    .collect(),
            ),
            0x0E => Amf3Value::VectorUint(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes(to_array(c)))
                    .collect(),
            ),
            _ => Amf3Value::VectorDouble(
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_bits(u64::from_be_bytes(to_array(c))))
                    .collect(),
            ),
        };
        self.charge(0, len)?;
        Ok(self.finish(index, start, Shape::Leaf(value), 0))
    }

    fn read_object_vector(
        &mut self,
        depth: usize,
        at: usize,
        start: (usize, usize),
    ) -> Result<(Node, usize), Amf3Error> {
        let count = match self.header("a vector header")? {
            Header::Ref(index) => return self.back_ref(index, depth, at),
            Header::Inline(count) => count,
        };
        self.enter(depth)?;
        let index = self.begin();
        self.byte("a vector header")?;
        let type_name = self.string("a vector type name")?;
        let mut height = 0;
        let mut items = Vec::new();
        for _ in 0..count {
            let (node, h) = self.read_node(depth + 1)?;
            height = height.max(h);
            items.push(node);
        }
        let shape = Shape::VectorObject { type_name, items };
        Ok(self.finish(index, start, shape, height + 1))
    }

    fn read_dictionary(
        &mut self,
        depth: usize,
        at: usize,
        start: (usize, usize),
    ) -> Result<(Node, usize), Amf3Error> {
        let count = match self.header("a dictionary header")? {
            Header::Ref(index) => return self.back_ref(index, depth, at),
            Header::Inline(count) => count,
        };
        self.enter(depth)?;
        let index = self.begin();
        self.byte("a dictionary header")?; // weak-keys flag
        let mut height = 0;
        let mut entries = Vec::new();
        for _ in 0..count {
            let (key, hk) = self.read_node(depth + 1)?;
            let (value, hv) = self.read_node(depth + 1)?;
            height = height.max(hk).max(hv);
            entries.push((key, value));
        }
        Ok(self.finish(index, start, Shape::Dictionary(entries), height + 1))
    }

    fn enter(&self, depth: usize) -> Result<(), Amf3Error> {
        if depth >= self.limits.max_depth {
            return Err(Amf3Error::TooDeep {
                max_depth: self.limits.max_depth,
            });
        }
        Ok(())
    }

    /// Reserves the table slot before the contents are read: the spec numbers
    /// objects in the order they start, and inner references rely on that.
    fn begin(&mut self) -> usize {
        self.objects.push(Slot::Pending);
        self.objects.len() - 1
    }

    fn finish(
        &mut self,
        index: usize,
        start: (usize, usize),
        shape: Shape,
        height: usize,
    ) -> (Node, usize) {
        let done = Slot::Done {
            shape,
            nodes: self.elements.saturating_sub(start.0),
            payload: self.payload.saturating_sub(start.1),
            height,
        };
        if let Some(slot) = self.objects.get_mut(index) {
            *slot = done;
        }
        (Node::Ref(index), height)
    }

    /// A reference is charged as if its target were decoded again, so
    /// exponential reference chains hit the limits instead of memory.
    fn back_ref(
        &mut self,
        index: usize,
        depth: usize,
        at: usize,
    ) -> Result<(Node, usize), Amf3Error> {
        let (nodes, payload, height) = match self.objects.get(index) {
            None => {
                return Err(Amf3Error::BadReference {
                    offset: at,
                    table: "object",
                    index,
                    len: self.objects.len(),
                })
            }
            Some(Slot::Pending) => return Ok((Node::Value(Amf3Value::Null), 0)),
            Some(Slot::Done {
                nodes,
                payload,
                height,
                ..
            }) => (*nodes, *payload, *height),
        };
        if depth.saturating_add(height) > self.limits.max_depth {
            return Err(Amf3Error::TooDeep {
                max_depth: self.limits.max_depth,
            });
        }
        self.charge(nodes.saturating_sub(1), payload)?;
        Ok((Node::Ref(index), height))
    }

    fn charge(&mut self, nodes: usize, payload: usize) -> Result<(), Amf3Error> {
        self.elements = self.elements.saturating_add(nodes);
        if self.elements > self.limits.max_elements {
            return Err(Amf3Error::TooManyElements {
                max_elements: self.limits.max_elements,
            });
        }
        self.payload = self.payload.saturating_add(payload);
        if self.payload > self.payload_limit {
            return Err(Amf3Error::TooLarge {
                limit: self.payload_limit,
            });
        }
        Ok(())
    }

    fn build_ref(&self, index: usize) -> Amf3Value {
        let shape = match self.objects.get(index) {
            Some(Slot::Done { shape, .. }) => shape,
            // Unreachable: references are only made to finished slots.
            _ => return Amf3Value::Null,
        };
        let pairs = |list: &[(String, Node)]| -> Vec<(String, Amf3Value)> {
            list.iter()
                .map(|(k, n)| (k.clone(), self.build(n)))
                .collect()
        };
        match shape {
            Shape::Leaf(value) => value.clone(),
            Shape::Array { assoc, dense } => Amf3Value::Array {
                assoc: pairs(assoc),
                dense: dense.iter().map(|n| self.build(n)).collect(),
            },
            Shape::Object {
                class_name,
                properties,
            } => Amf3Value::Object {
                class_name: class_name.clone(),
                properties: pairs(properties),
            },
            Shape::VectorObject { type_name, items } => Amf3Value::VectorObject {
                type_name: type_name.clone(),
                items: items.iter().map(|n| self.build(n)).collect(),
            },
            Shape::Dictionary(entries) => Amf3Value::Dictionary(
                entries
                    .iter()
                    .map(|(k, v)| (self.build(k), self.build(v)))
                    .collect(),
            ),
        }
    }

    fn build(&self, node: &Node) -> Amf3Value {
        match node {
            Node::Value(v) => v.clone(),
            Node::Ref(index) => self.build_ref(*index),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String, Amf3Error> {
        let at = self.pos;
        match self.header(what)? {
            Header::Ref(index) => {
                let len = self
                    .strings
                    .get(index)
                    .ok_or(Amf3Error::BadReference {
                        offset: at,
                        table: "string",
                        index,
                        len: self.strings.len(),
                    })?
                    .len();
                self.charge(0, len)?;
                Ok(self.strings.get(index).cloned().unwrap_or_default())
            }
            Header::Inline(len) => {
                let s = String::from_utf8_lossy(self.take(len, what)?).into_owned();
                self.charge(0, s.len())?;
                // The spec never sends the empty string by reference.
                if !s.is_empty() {
                    self.strings.push(s.clone());
                }
                Ok(s)
            }
        }
    }

    fn header(&mut self, what: &'static str) -> Result<Header, Amf3Error> {
        let v = self.u29(what)?;
        let rest = (v >> 1) as usize;
        Ok(if v & 1 == 0 {
            Header::Ref(rest)
        } else {
            Header::Inline(rest)
        })
    }

    fn u29(&mut self, what: &'static str) -> Result<u32, Amf3Error> {
        let mut v = 0u32;
        for _ in 0..3 {
            let b = self.byte(what)?;
            if b & 0x80 == 0 {
                return Ok((v << 7) | u32::from(b));
            }
            v = (v << 7) | u32::from(b & 0x7F);
        }
        // The fourth byte contributes all eight bits.
        Ok((v << 8) | u32::from(self.byte(what)?))
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, Amf3Error> {
        let [b] = self.array(what)?;
        Ok(b)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Amf3Error> {
        Ok(to_array(self.take(N, what)?))
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Amf3Error> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.get(..n) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(Amf3Error::Truncated {
                offset: self.pos,
                what,
                needed: n,
                left: rest.len(),
            }),
        }
    }
}

enum Header {
    Ref(usize),
    Inline(usize),
}

/// Callers pass exactly N bytes; a short slice would be zero-padded, not panic.
fn to_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (d, s) in out.iter_mut().zip(bytes) {
        *d = *s;
    }
    out
}

fn sign_extend(v: u32) -> i32 {
    ((v << 3) as i32) >> 3
}

/// Decodes one AMF3 value from the start of `buf` with default limits and
/// returns it with the number of bytes it took.
pub fn decode_value(buf: &[u8]) -> Result<(Amf3Value, usize), Amf3Error> {
    let mut reader = Amf3Reader::new(buf, AmfLimits::default());
    let value = reader.read_value()?;
    Ok((value, reader.position()))
}

/// Encodes `value` without string, object or traits references (always
/// valid AMF3, just not the smallest). Because the value model keeps no
/// sealed/dynamic split, objects are written with every property as a sealed
/// member. Things AMF3 cannot express are adjusted, not refused: integers
/// outside 29 bits become doubles, empty associative-array keys are dropped,
/// and strings or lists beyond 2^28-1 bytes/items are truncated.
pub fn encode_value(value: &Amf3Value, out: &mut Vec<u8>) {
    match value {
        Amf3Value::Undefined => out.push(0x00),
        Amf3Value::Null => out.push(0x01),
        Amf3Value::Boolean(false) => out.push(0x02),
        Amf3Value::Boolean(true) => out.push(0x03),
        Amf3Value::Integer(i) if (-(1 << 28)..(1 << 28)).contains(i) => {
            out.push(0x04);
            write_u29(out, *i as u32);
        }
        Amf3Value::Integer(i) => encode_value(&Amf3Value::Double(f64::from(*i)), out),
        Amf3Value::Double(d) => {
            out.push(0x05);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Amf3Value::String(s) => {
            out.push(0x06);
            write_string(out, s);
        }
        Amf3Value::XmlDocument(s) => {
            out.push(0x07);
            write_string(out, s);
        }
        Amf3Value::Date(millis) => {
            out.push(0x08);
            write_u29(out, 1);
            out.extend_from_slice(&millis.to_be_bytes());
        }
        Amf3Value::Array { assoc, dense } => {
            out.push(0x09);
            write_inline_len(out, dense.len());
            for (key, value) in assoc.iter().filter(|(k, _)| !k.is_empty()) {
                write_string(out, key);
                encode_value(value, out);
            }
            write_string(out, "");
            dense
                .iter()
                .take(MAX_INLINE)
                .for_each(|v| encode_value(v, out));
        }
        Amf3Value::Object {
            class_name,
            properties,
        } => {
            out.push(0x0A);
            // Sealed count has 25 bits: inline object, inline traits, not
            // externalizable, not dynamic.
            let props = &properties[..properties.len().min(MAX_INLINE >> 3)];
            write_u29(out, ((props.len() as u32) << 4) | 0b0011);
            write_string(out, class_name);
            props.iter().for_each(|(k, _)| write_string(out, k));
            props.iter().for_each(|(_, v)| encode_value(v, out));
        }
        Amf3Value::Xml(s) => {
            out.push(0x0B);
            write_string(out, s);
        }
        Amf3Value::ByteArray(bytes) => {
            out.push(0x0C);
            let bytes = &bytes[..bytes.len().min(MAX_INLINE)];
            write_inline_len(out, bytes.len());
            out.extend_from_slice(bytes);
        }
        Amf3Value::VectorInt(items) => {
            write_vector_header(out, 0x0D, items.len());
            for i in items.iter().take(MAX_INLINE) {
                out.extend_from_slice(&i.to_be_bytes());
            }
        }
        Amf3Value::VectorUint(items) => {
            write_vector_header(out, 0x0E, items.len());
            for i in items.iter().take(MAX_INLINE) {
                out.extend_from_slice(&i.to_be_bytes());
            }
        }
        Amf3Value::VectorDouble(items) => {
            write_vector_header(out, 0x0F, items.len());
            for d in items.iter().take(MAX_INLINE) {
                out.extend_from_slice(&d.to_be_bytes());
            }
        }
        Amf3Value::VectorObject { type_name, items } => {
            write_vector_header(out, 0x10, items.len());
            write_string(out, type_name);
            items
                .iter()
                .take(MAX_INLINE)
                .for_each(|v| encode_value(v, out));
        }
        Amf3Value::Dictionary(entries) => {
            write_vector_header(out, 0x11, entries.len());
            for (key, value) in entries.iter().take(MAX_INLINE) {
                encode_value(key, out);
                encode_value(value, out);
            }
        }
    }
}

/// Marker, count and the one flag byte (fixed-length / weak-keys) that
/// vectors and dictionaries share; the flag is always written as 0.
fn write_vector_header(out: &mut Vec<u8>, marker: u8, count: usize) {
    out.push(marker);
    write_inline_len(out, count);
    out.push(0);
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_INLINE);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = s.as_bytes().get(..end).unwrap_or_default();
    write_inline_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn write_inline_len(out: &mut Vec<u8>, len: usize) {
    write_u29(out, ((len.min(MAX_INLINE) as u32) << 1) | 1);
}

fn write_u29(out: &mut Vec<u8>, v: u32) {
    let v = v & 0x1FFF_FFFF;
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 0x4000 {
        out.extend_from_slice(&[(v >> 7) as u8 | 0x80, (v & 0x7F) as u8]);
    } else if v < 0x20_0000 {
        out.extend_from_slice(&[
            (v >> 14) as u8 | 0x80,
            ((v >> 7) & 0x7F) as u8 | 0x80,
            (v & 0x7F) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            (v >> 22) as u8 | 0x80,
            ((v >> 15) & 0x7F) as u8 | 0x80,
            ((v >> 8) & 0x7F) as u8 | 0x80,
            v as u8,
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(buf: &[u8]) -> Amf3Value {
        match decode_value(buf) {
            Ok((value, used)) => {
                assert_eq!(used, buf.len(), "trailing bytes after {value:?}");
                value
            }
            Err(e) => panic!("decode failed: {e}"),
        }
    }

    fn encode(value: &Amf3Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(value, &mut out);
        out
    }

    fn obj(class_name: &str, props: Vec<(&str, Amf3Value)>) -> Amf3Value {
        Amf3Value::Object {
            class_name: class_name.into(),
            properties: props.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }

    fn dense(items: Vec<Amf3Value>) -> Amf3Value {
        Amf3Value::Array {
            assoc: vec![],
            dense: items,
        }
    }

    #[test]
    fn integers_from_spec_table() {
        let cases: &[(&[u8], i32)] = &[
            (&[0x04, 0x00], 0),
            (&[0x04, 0x7F], 127),
            (&[0x04, 0x81, 0x00], 128),
            (&[0x04, 0xFF, 0x7F], 16383),
            (&[0x04, 0x81, 0x80, 0x00], 16384),
            (&[0x04, 0xFF, 0xFF, 0x7F], 0x1F_FFFF),
            (&[0x04, 0x80, 0xC0, 0x80, 0x00], 0x20_0000),
            (&[0x04, 0xBF, 0xFF, 0xFF, 0xFF], 0x0FFF_FFFF),
            (&[0x04, 0xFF, 0xFF, 0xFF, 0xFF], -1),
            (&[0x04, 0xC0, 0x80, 0x80, 0x00], -(1 << 28)),
        ];
        for (bytes, n) in cases {
            assert_eq!(decode(bytes), Amf3Value::Integer(*n), "{bytes:02x?}");
            assert_eq!(encode(&Amf3Value::Integer(*n)), *bytes);
        }
        // Outside 29 bits the spec says to send a double.
        let big = encode(&Amf3Value::Integer(1 << 28));
        assert_eq!(decode(&big), Amf3Value::Double(f64::from(1 << 28)));
    }

    #[test]
    fn scalars() {
        assert_eq!(decode(&[0x00]), Amf3Value::Undefined);
        assert_eq!(decode(&[0x01]), Amf3Value::Null);
        assert_eq!(decode(&[0x02]), Amf3Value::Boolean(false));
        assert_eq!(decode(&[0x03]), Amf3Value::Boolean(true));
        assert_eq!(
            decode(&[0x05, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]),
            Amf3Value::Double(1.0)
        );
        assert_eq!(
            decode(&[0x06, 0x0B, b'h', b'e', b'l', b'l', b'o']),
            Amf3Value::String("hello".into())
        );
        assert_eq!(
            decode(&[0x06, 0x05, 0xFF, b'a']),
            Amf3Value::String("\u{FFFD}a".into())
        );
    }

    #[test]
    fn string_references() {
        // ["a", ref 0]
        let bytes = [0x09, 0x05, 0x01, 0x06, 0x03, b'a', 0x06, 0x00];
        let s = || Amf3Value::String("a".into());
        assert_eq!(decode(&bytes), dense(vec![s(), s()]));
        // The empty string is never added to the table, so ref 0 is still "a".
        let bytes = [0x09, 0x07, 0x01, 0x06, 0x01, 0x06, 0x03, b'a', 0x06, 0x00];
        assert_eq!(
            decode(&bytes),
            dense(vec![Amf3Value::String(String::new()), s(), s()])
        );
    }

    #[test]
    fn bad_references_are_errors() {
        let err = decode_value(&[0x09, 0x03, 0x01, 0x06, 0x02]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AMF3 at byte 4: string reference 1 points past the 0 entries seen so far"
        );
        assert!(matches!(
            decode_value(&[0x0A, 0x02]),
            Err(Amf3Error::BadReference {
                table: "object",
                ..
            })
        ));
        assert!(matches!(
            decode_value(&[0x0A, 0x05]),
            Err(Amf3Error::BadReference {
                table: "traits",
                ..
            })
        ));
    }

    #[test]
    fn anonymous_dynamic_object() {
        let bytes = [0x0A, 0x0B, 0x01, 0x03, b'a', 0x04, 0x01, 0x01];
        assert_eq!(decode(&bytes), obj("", vec![("a", Amf3Value::Integer(1))]));
    }

    #[test]
    fn typed_objects_share_traits_by_reference() {
        // [P{x:1}, P{x:2}] where the second uses traits reference 0.
        let bytes = [
            0x09, 0x05, 0x01, 0x0A, 0x13, 0x03, b'P', 0x03, b'x', 0x04, 0x01, 0x0A, 0x01, 0x04,
            0x02,
        ];
        assert_eq!(
            decode(&bytes),
            dense(vec![
                obj("P", vec![("x", Amf3Value::Integer(1))]),
                obj("P", vec![("x", Amf3Value::Integer(2))]),
            ])
        );
    }

    #[test]
    fn sealed_then_dynamic_members_in_order() {
        // class "P", sealed [x], dynamic; x=1 then y=2
        let bytes = [
            0x0A, 0x1B, 0x03, b'P', 0x03, b'x', 0x04, 0x01, 0x03, b'y', 0x04, 0x02, 0x01,
        ];
        assert_eq!(
            decode(&bytes),
            obj(
                "P",
                vec![("x", Amf3Value::Integer(1)), ("y", Amf3Value::Integer(2))]
            )
        );
    }

    #[test]
    fn object_references_clone_complete_values_and_null_cycles() {
        let o = obj("", vec![]);
        let bytes = [0x09, 0x05, 0x01, 0x0A, 0x0B, 0x01, 0x01, 0x0A, 0x02];
        assert_eq!(decode(&bytes), dense(vec![o.clone(), o]));
        // {self: <ref to itself>}
        let bytes = [
            0x0A, 0x0B, 0x01, 0x09, b's', b'e', b'l', b'f', 0x0A, 0x00, 0x01,
        ];
        assert_eq!(decode(&bytes), obj("", vec![("self", Amf3Value::Null)]));
    }

    #[test]
    fn externalizable_is_refused_by_name() {
        let err = decode_value(&[0x0A, 0x07, 0x07, b'F', b'o', b'o']).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AMF3 at byte 0: externalizable class Foo not supported"
        );
    }

    #[test]
    fn dates_and_byte_arrays_by_reference() {
        let mut bytes = vec![0x09, 0x09, 0x01, 0x08, 0x01];
        bytes.extend_from_slice(&1.5e12f64.to_be_bytes());
        bytes.extend_from_slice(&[0x08, 0x02, 0x0C, 0x05, 0xAA, 0xBB, 0x0C, 0x04]);
        let d = Amf3Value::Date(1.5e12);
        let b = Amf3Value::ByteArray(vec![0xAA, 0xBB]);
        assert_eq!(decode(&bytes), dense(vec![d.clone(), d, b.clone(), b]));
    }

    fn every_type() -> Amf3Value {
        Amf3Value::Array {
            assoc: vec![
                ("name".into(), Amf3Value::String("stream".into())),
                (
                    "obj".into(),
                    obj("Cls", vec![("k", Amf3Value::Boolean(true))]),
                ),
            ],
            dense: vec![
                Amf3Value::Undefined,
                Amf3Value::Null,
                Amf3Value::Boolean(false),
                Amf3Value::Integer(-5),
                Amf3Value::Integer(300_000),
                Amf3Value::Double(-0.25),
                Amf3Value::String(String::new()),
                Amf3Value::XmlDocument("<a/>".into()),
                Amf3Value::Date(0.0),
                Amf3Value::Xml("<b/>".into()),
                Amf3Value::ByteArray(vec![0, 1, 2]),
                Amf3Value::VectorInt(vec![-1, 2]),
                Amf3Value::VectorUint(vec![u32::MAX, 7]),
                Amf3Value::VectorDouble(vec![1.25]),
                Amf3Value::VectorObject {
                    type_name: "T".into(),
                    items: vec![obj("T", vec![]), Amf3Value::Null],
                },
                Amf3Value::Dictionary(vec![(
                    Amf3Value::String("key".into()),
                    dense(vec![Amf3Value::Integer(1)]),
                )]),
            ],
        }
    }

    #[test]
    fn round_trip_every_type() {
        let value = every_type();
        assert_eq!(decode(&encode(&value)), value);
        if let Amf3Value::Array { dense: items, .. } = &value {
            for item in items {
                assert_eq!(&decode(&encode(item)), item);
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&every_type());
        for cut in 0..bytes.len() {
            assert!(decode_value(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn deep_nesting_hits_depth_limit() {
        let nested = |levels: usize| {
            let mut bytes = [0x09, 0x03, 0x01].repeat(levels);
            bytes.push(0x01);
            bytes
        };
        assert!(decode_value(&nested(32)).is_ok());
        let err = decode_value(&nested(40)).unwrap_err();
        assert_eq!(err, Amf3Error::TooDeep { max_depth: 32 });
        assert_eq!(err.to_string(), "AMF3: nesting deeper than 32 levels");
    }

    /// [o0, o1, ...] with o0 = [] and o(k) = [o(k-1) by reference]: shallow on
    /// the wire, deep once expanded.
    fn reference_chain(len: usize, refs_per_item: usize) -> Vec<u8> {
        let mut bytes = vec![0x09];
        write_inline_len(&mut bytes, len);
        bytes.extend_from_slice(&[0x01, 0x09, 0x01, 0x01]);
        for k in 1..len {
            bytes.push(0x09);
            write_inline_len(&mut bytes, refs_per_item);
            bytes.push(0x01);
            for _ in 0..refs_per_item {
                bytes.push(0x09);
                write_u29(&mut bytes, (k as u32) << 1); // object k-1 is index k
            }
        }
        bytes
    }

    #[test]
    fn references_cannot_exceed_depth() {
        assert!(decode_value(&reference_chain(31, 1)).is_ok());
        assert_eq!(
            decode_value(&reference_chain(40, 1)).unwrap_err(),
            Amf3Error::TooDeep { max_depth: 32 }
        );
    }

    #[test]
    fn exponential_references_hit_element_limit() {
        let limits = AmfLimits {
            max_depth: 1000,
            max_elements: 65536,
        };
        let bytes = reference_chain(200, 2);
        let err = Amf3Reader::new(&bytes, limits).read_value().unwrap_err();
        assert_eq!(
            err,
            Amf3Error::TooManyElements {
                max_elements: 65536
            }
        );
    }

    #[test]
    fn repeated_string_references_hit_size_limit() {
        let mut bytes = vec![0x09];
        write_inline_len(&mut bytes, 20_000);
        bytes.extend_from_slice(&[0x01, 0x06]);
        write_inline_len(&mut bytes, 1000);
        bytes.extend_from_slice(&[b'x'; 1000]);
        for _ in 1..20_000 {
            bytes.extend_from_slice(&[0x06, 0x00]);
        }
        assert!(matches!(
            decode_value(&bytes),
            Err(Amf3Error::TooLarge { .. })
        ));
    }

    #[test]
    fn huge_claimed_lengths_fail_fast() {
        let max = [0xBF, 0xFF, 0xFF, 0xFF]; // U29 0x0FFFFFFF: inline, 2^27-1
        for marker in [0x06, 0x07, 0x09, 0x0B, 0x0C, 0x0D, 0x0F, 0x10, 0x11] {
            let mut bytes = vec![marker];
            bytes.extend_from_slice(&max);
            bytes.extend_from_slice(&[0x01, 0x01, 0x01]);
            assert!(decode_value(&bytes).is_err(), "marker {marker:#x}");
        }
        // A sealed-member count of 2^25-1 with no names behind it.
        assert!(decode_value(&[0x0A, 0xBF, 0xFF, 0xFF, 0xF3, 0x01]).is_err());
    }

    #[test]
    fn unknown_marker() {
        let err = decode_value(&[0x09, 0x03, 0x01, 0x12]).unwrap_err();
        assert_eq!(err.to_string(), "AMF3 at byte 3: unknown type marker 0x12");
    }

    #[test]
    fn random_mutations_never_panic() {
        let base = encode(&every_type());
        let mut rng = crate::rng::Rng::new(0x2545_F491_4F6C_DD1Du64);
        let mut next = move || rng.next_u64();
        for _ in 0..20_000 {
            let mut bytes = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            let _ = decode_value(&bytes);
            let _ = decode_value(&bytes[(next() as usize) % bytes.len()..]);
        }
    }
}
