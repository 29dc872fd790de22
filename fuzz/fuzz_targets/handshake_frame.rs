//! Frames of the handshake port (`src/metadata/handshake/frame.rs`): the input is what a
//! peer sends, read by `read_frame` as the server and the client read it (length, type byte,
//! JSON) under the default limit, then answered as the server answers it. A frame read whole
//! survives encode → decode unchanged.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use mooncake::metadata::handshake::FrameType;
use mooncake::metadata::handshake::frame::{self, FrameError};
use serde_json::Value;

/// `MC_HANDSHAKE_MAX_LENGTH`'s default (src/config.rs).
const MAX_LEN: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut reader = data;
    let read = common::runtime().block_on(frame::read_frame(&mut reader, MAX_LEN));
    let f = match read {
        Ok(f) => f,
        Err(FrameError::BadLength(len, max)) => {
            assert!(len == 0 || len > max as u64);
            return;
        }
        Err(_) => return,
    };
    let len = u64::from_le_bytes(data[..8].try_into().unwrap());
    assert!(len >= 1 && len <= MAX_LEN as u64);
    assert_eq!(reader.len(), data.len() - 8 - len as usize, "read exactly the announced payload");
    // What the server does with each kind (`server.rs`, `answer`): fields read as strings.
    if f.kind == FrameType::Notify {
        let _ = (f.body.get("name").and_then(Value::as_str), f.body.get("notify_msg").and_then(Value::as_str));
    }
    if !common::has_float(&f.body) {
        let bytes = frame::encode(f.kind, f.typeless, &f.body);
        let again = frame::decode_payload(&bytes[8..]).expect("an encoded frame decodes");
        assert_eq!(again, f);
    }
});
