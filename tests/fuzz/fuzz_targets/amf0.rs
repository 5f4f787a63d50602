//! AMF0 decoding of arbitrary bytes (AMF3 too, behind the 0x11 AVM+ marker), as a
//! command, a data message and value by value. Checks: no panic; decoded values stay
//! within the documented expansion of their input; re-encoding what was decoded is
//! stable (encode(decode(encode(decode(x)))) == encode(decode(x))).
#![no_main]

#[path = "../../harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;
use rtmpd::amf::amf0::{self, Amf0Reader, AmfLimits};
use rtmpd::rtmp::message::{self as msg, Command};

fuzz_target!(|data: &[u8]| {
    let limits = AmfLimits::default();
    // A few tight limits too, chosen by the input's length.
    let tight = AmfLimits {
        max_depth: data.len() % 8,
        max_elements: data.len() % 64,
    };
    for limits in [limits, tight] {
        if let Ok(values) = amf0::decode_all_with(data, limits) {
            let weight = values.iter().map(harness::amf0_weight).sum();
            harness::assert_bounded(weight, data.len(), "decode_all");
            let encoded = amf0::encode_all_to_vec(&values);
            // What we encode must decode again (with room for the nesting and
            // element counts it had), and encode to the same bytes.
            let again = amf0::decode_all_with(&encoded, AmfLimits::default())
                .unwrap_or_else(|e| panic!("re-decoding our own encoding failed: {e}"));
            assert_eq!(
                amf0::encode_all_to_vec(&again),
                encoded,
                "encoding is unstable"
            );
        }
    }

    // Value by value, as data messages are read.
    let mut reader = Amf0Reader::new(data, limits);
    while !reader.is_empty() {
        let before = reader.position();
        match reader.read_value() {
            Ok(v) => {
                assert!(reader.position() > before, "read_value made no progress");
                harness::assert_bounded(harness::amf0_weight(&v), data.len(), "read_value");
            }
            Err(_) => break,
        }
    }

    let _ = Command::parse(data, limits);
    let _ = msg::data_name(data);
});
