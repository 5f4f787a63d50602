//! Writes seed corpora for the fuzz targets from the recorded client sessions:
//! `seed_corpus SESSIONS_DIR CORPUS_DIR` (scripts/fuzz.sh runs it). Each target's
//! seeds go to CORPUS_DIR/TARGET/, in the input format that target expects.

use std::fs;
use std::path::Path;

use rtmpd::amf::amf0::{self, Amf0Value};
use rtmpd::amf::amf3::{self, Amf3Value};
use rtmpd::rtmp::chunk::{ChunkDecoder, ChunkLimits, RawMessage};
use rtmpd::rtmp::handshake::HANDSHAKE_SIZE;
use rtmpd::rtmp::message as msg;

const HANDSHAKE_LEN: usize = 1 + 2 * HANDSHAKE_SIZE;

fn messages(stream: &[u8]) -> Vec<RawMessage> {
    let mut decoder = ChunkDecoder::new(ChunkLimits::default());
    decoder.push(stream);
    let mut out = Vec::new();
    while let Ok(Some(m)) = decoder.next_message() {
        if m.type_id == msg::SET_CHUNK_SIZE {
            if let Ok(size) = msg::read_u32("set chunk size", &m.payload) {
                let _ = decoder.set_chunk_size(size);
            }
        }
        out.push(m);
    }
    out
}

fn to_amf3(v: &Amf0Value) -> Amf3Value {
    let pairs =
        |p: &[(String, Amf0Value)]| p.iter().map(|(k, v)| (k.clone(), to_amf3(v))).collect();
    match v {
        Amf0Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e8 => Amf3Value::Integer(*n as i32),
        Amf0Value::Number(n) => Amf3Value::Double(*n),
        Amf0Value::Boolean(b) => Amf3Value::Boolean(*b),
        Amf0Value::String(s) | Amf0Value::LongString(s) => Amf3Value::String(s.clone()),
        Amf0Value::Object(p) => Amf3Value::Object {
            class_name: String::new(),
            properties: pairs(p),
        },
        Amf0Value::EcmaArray(p) => Amf3Value::Array {
            assoc: pairs(p),
            dense: vec![],
        },
        Amf0Value::StrictArray(items) => Amf3Value::Array {
            assoc: vec![],
            dense: items.iter().map(to_amf3).collect(),
        },
        Amf0Value::Undefined => Amf3Value::Undefined,
        Amf0Value::Amf3(v) => v.clone(),
        _ => Amf3Value::Null,
    }
}

/// Hand-written AMF3 covering every marker and the reference tables.
fn amf3_samples() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        vec![0x09, 0x05, 0x01, 0x06, 0x07, b'a', b'b', b'c', 0x06, 0x00], // string ref
        vec![0x09, 0x03, 0x01, 0x09, 0x01, 0x01, 0x0A, 0x00],             // object ref
        vec![
            0x0A, 0x23, 0x01, 0x03, b'x', 0x04, 0x01, 0x0A, 0x01, 0x04, 0x02,
        ], // traits ref
        vec![0x0A, 0x0B, 0x01, 0x03, b'k', 0x04, 0x05, 0x01],             // dynamic object
        vec![
            0x11, 0x05, 0x00, 0x06, 0x03, b'k', 0x04, 0x07, 0x06, 0x00, 0x03,
        ], // dictionary
        vec![0x0D, 0x05, 0x00, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF],       // vector<int>
        vec![0x0E, 0x03, 0x01, 0, 0, 0, 7],                               // vector<uint>
        vec![0x0F, 0x03, 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0],             // vector<double>
        vec![0x10, 0x05, 0x00, 0x01, 0x04, 0x01, 0x06, 0x03, b'z'],       // vector<object>
        vec![0x0C, 0x07, 1, 2, 3],                                        // byte array
        vec![0x08, 0x01, 0x42, 0x77, 0, 0, 0, 0, 0, 0],                   // date
        vec![0x0B, 0x07, b'<', b'a', b'>'],                               // xml
        vec![0x07, 0x07, b'<', b'b', b'>'],                               // xml document
        vec![0x04, 0xFF, 0xFF, 0xFF, 0xFF],                               // integer
        vec![0x05, 0x7F, 0xF8, 0, 0, 0, 0, 0, 0],                         // double NaN
    ];
    for v in [
        Amf3Value::Array {
            assoc: vec![("a".into(), Amf3Value::Integer(-1))],
            dense: vec![Amf3Value::String("s".into()), Amf3Value::Null],
        },
        Amf3Value::Object {
            class_name: "flex.messaging.io.ArrayCollection".into(),
            properties: vec![("source".into(), Amf3Value::ByteArray(vec![0; 8]))],
        },
    ] {
        let mut b = Vec::new();
        amf3::encode_value(&v, &mut b);
        out.push(b);
    }
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(sessions), Some(corpus)) = (args.next(), args.next()) else {
        eprintln!("usage: seed_corpus SESSIONS_DIR CORPUS_DIR");
        std::process::exit(2);
    };
    let corpus = Path::new(&corpus);
    let mut count = 0;
    let mut write = |target: &str, name: String, bytes: Vec<u8>| {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(name), bytes).expect("writing a seed");
        count += 1;
    };
    let mut paths: Vec<_> = fs::read_dir(&sessions)
        .expect("sessions dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    paths.sort();
    for path in paths {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let rec = fs::read(&path).expect("reading a recording");
        let prefixed = |flag: u8, bytes: &[u8]| [&[flag][..], bytes].concat();
        write("session", format!("{stem}-whole"), prefixed(0, &rec));
        write("session", format!("{stem}-split"), prefixed(0x05, &rec));
        let handshake = &rec[..rec.len().min(HANDSHAKE_LEN + 16)];
        write("handshake", stem.clone(), prefixed(0, handshake));
        write(
            "handshake",
            format!("{stem}-split"),
            prefixed(0x07, handshake),
        );
        let Some(stream) = rec.get(HANDSHAKE_LEN..) else {
            continue;
        };
        write("session", format!("{stem}-stream"), prefixed(0x83, stream));
        write("chunk_reader", stem.clone(), prefixed(0, stream));
        let head = &stream[..stream.len().min(4096)];
        write("chunk_reader", format!("{stem}-head"), prefixed(0x03, head));

        for (i, m) in messages(stream).iter().enumerate() {
            let flags = match m.type_id {
                msg::COMMAND_AMF0 => 0,
                msg::COMMAND_AMF3 => 1,
                msg::DATA_AMF0 => 2 | 0x10,
                msg::DATA_AMF3 => 3 | 0x10,
                _ => continue,
            };
            let flags = flags | ((m.stream_id.min(3) as u8) << 2);
            write(
                "command",
                format!("{stem}-{i}"),
                prefixed(flags, &m.payload),
            );
            let body = msg::strip_amf3_marker(m.type_id, &m.payload);
            write("amf0", format!("{stem}-{i}"), body.to_vec());
            if let Ok(values) = amf0::decode_all(body) {
                for (j, v) in values.iter().enumerate() {
                    let mut b = Vec::new();
                    amf3::encode_value(&to_amf3(v), &mut b);
                    write(
                        "amf0",
                        format!("{stem}-{i}-{j}-avmplus"),
                        [&[0x11][..], &b].concat(),
                    );
                    write("amf3", format!("{stem}-{i}-{j}"), b);
                }
            }
        }
    }
    for (i, b) in amf3_samples().into_iter().enumerate() {
        write(
            "amf0",
            format!("sample-{i}-avmplus"),
            [&[0x11][..], &b].concat(),
        );
        write("amf3", format!("sample-{i}"), b);
    }
    println!("wrote {count} seeds under {}", corpus.display());
}
