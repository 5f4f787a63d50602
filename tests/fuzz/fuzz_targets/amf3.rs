//! AMF3 decoding of arbitrary bytes: one value (`decode_value`) and a run of values
//! through one reader (reference tables persist across `read_value` calls). Checks:
//! no panic; values stay within the documented expansion of their input; re-encoding
//! is stable.
#![no_main]

#[path = "../../harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;
use rtmpd::amf::amf0::AmfLimits;
use rtmpd::amf::amf3::{self, Amf3Reader};

fuzz_target!(|data: &[u8]| {
    if let Ok((value, used)) = amf3::decode_value(data) {
        assert!(used <= data.len());
        harness::assert_bounded(harness::amf3_weight(&value), data.len(), "decode_value");
        let mut encoded = Vec::new();
        amf3::encode_value(&value, &mut encoded);
        let (again, n) = amf3::decode_value(&encoded)
            .unwrap_or_else(|e| panic!("re-decoding our own encoding failed: {e}"));
        assert_eq!(n, encoded.len());
        let mut twice = Vec::new();
        amf3::encode_value(&again, &mut twice);
        assert_eq!(twice, encoded, "encoding is unstable");
    }

    // Many values through one reader, the way a sequence in one message is read.
    let mut reader = Amf3Reader::new(data, AmfLimits::default());
    let mut total = 0usize;
    while reader.position() < data.len() {
        let before = reader.position();
        match reader.read_value() {
            Ok(v) => {
                assert!(reader.position() > before, "read_value made no progress");
                total += harness::amf3_weight(&v);
                harness::assert_bounded(total, data.len(), "read_value sequence");
            }
            Err(_) => break,
        }
    }
});
