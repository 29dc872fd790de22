//! Mooncake's RDMA connection exchange (handshake type 0; `src/transport/rdma/handshake.rs`,
//! `connect.rs`): the input is a handshake payload (type byte and JSON, or the typeless old
//! form), read as the passive side reads a request and the active side a reply: the
//! description, the NIC paths' devices and the GID. What is read survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake::metadata::handshake::FrameType;
use mooncake::metadata::handshake::frame;
use mooncake::transport::rdma::handshake::{ConnectionDesc, device_of};
use mooncake::transport::rdma::verbs::{gid_to_string, parse_gid};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = frame::decode_payload(data) else { return };
    if f.kind != FrameType::Connection {
        return;
    }
    let Ok(d) = ConnectionDesc::from_json(&f.body) else { return };
    for path in [&d.local_nic_path, &d.peer_nic_path] {
        if let Some(dev) = device_of(path) {
            assert!(!dev.is_empty() && !dev.contains('@') && path.ends_with(dev));
        }
    }
    if let Some(gid) = parse_gid(&d.local_gid) {
        assert_eq!(parse_gid(&gid_to_string(&gid)), Some(gid));
    }
    let back = ConnectionDesc::from_json(&d.to_json()).expect("our own description reads back");
    assert_eq!(back, d);
    // And as it travels: one frame, the same way it came.
    let bytes = frame::encode(f.kind, f.typeless, &d.to_json());
    let again = frame::decode_payload(&bytes[8..]).expect("an encoded frame decodes");
    assert_eq!(ConnectionDesc::from_json(&again.body).expect("reads back"), d);
});
