//! The segment descriptor JSON (`src/metadata/descriptor.rs`) as a peer's handshake reply or a
//! metadata service delivers it, with its NIC priority matrix: a descriptor that decodes
//! encodes to JSON that decodes to the same descriptor, and re-encodes byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake::metadata::SegmentDescriptor;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    let Ok(d) = SegmentDescriptor::from_json(&v) else { return };
    let _ = (d.speaks_tcp(), d.speaks_rdma());
    for b in &d.buffers {
        assert!(!b.name.is_empty() && b.addr != 0 && b.length != 0);
    }
    let text = d.to_json().to_string();
    let reread: Value = serde_json::from_str(&text).expect("our own JSON parses");
    let back = SegmentDescriptor::from_json(&reread).expect("our own descriptor decodes");
    // An empty `tcp_data_host` is not written; everything else comes back as it was.
    let mut want = d.clone();
    if want.tcp_data_host.as_deref() == Some("") {
        want.tcp_data_host = None;
    }
    assert_eq!(back, want);
    assert_eq!(back.to_json().to_string(), text);
});
