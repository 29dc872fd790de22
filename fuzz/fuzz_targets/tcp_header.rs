//! Mooncake's TCP data header and status frames (`src/transport/tcp/wire.rs`), and our
//! framing's hello and ack (`frame.rs`), which arrive in their place: the input is a stream
//! of 24-byte headers as a data server reads them, and its tail read as status frames and
//! acks as an initiator reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake::transport::tcp::frame::{self, Ack, HELLO_MAGIC};
use mooncake::transport::tcp::wire::{self, HEADER_LEN, Header, Status};

fuzz_target!(|data: &[u8]| {
    let mut headers = data.chunks_exact(HEADER_LEN);
    for chunk in &mut headers {
        let b: &[u8; HEADER_LEN] = chunk.try_into().unwrap();
        let h = Header::decode(b);
        // The fields are the input's, whatever the padding and opcode say.
        assert_eq!(h.size.to_le_bytes(), b[0..8]);
        assert_eq!(h.addr.to_le_bytes(), b[8..16]);
        assert_eq!(h.v2, b[16] & wire::V2_FLAG != 0);
        // decode → encode → decode is stable.
        assert_eq!(Header::decode(&h.encode()), h);
        if let Some(version) = frame::parse_hello(b) {
            // Only a size-0 v2 READ at "LMCFRAME" with a version byte is our hello.
            assert!(h.size == 0 && h.addr == HELLO_MAGIC && h.v2 && !h.write && version >= 1);
            assert_eq!(frame::parse_hello(&frame::hello(version)), Some(version));
        }
    }
    for chunk in headers.remainder().chunks_exact(8) {
        let b: [u8; 8] = chunk.try_into().unwrap();
        match wire::parse_status(b) {
            Status::Ok => assert_eq!(wire::status_frame(wire::STATUS_OK), b),
            Status::Rejected => assert_eq!(wire::status_frame(wire::STATUS_REJECTED), b),
            Status::Other(code) => {
                assert!(code > wire::STATUS_REJECTED);
                assert_eq!(wire::status_frame(code), b);
            }
            Status::NotV2 => assert_ne!(&b[4..8], wire::STATUS_MAGIC.to_le_bytes()),
        }
        match frame::parse_ack(b) {
            Ack::Version(v) => assert_eq!(frame::ack(v), b),
            Ack::Refused => assert_eq!(wire::status_frame(wire::STATUS_REJECTED), b),
            Ack::Garbage(v) => assert_eq!(v.to_le_bytes(), b),
        }
    }
});
