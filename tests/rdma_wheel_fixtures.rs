//! What Mooncake's wheel (0.3.13.post1) put on the wire in the soft-RoCE guest, captured by
//! `tests/rdma/capture_handshake.py` into `tests/data/wheel_rdma_*.json`: our decoders read its
//! rdma descriptor and its type-0 connection frames as Mooncake means them.
#![cfg(rdma_transport)]

use mooncake::metadata::SegmentDescriptor;
use mooncake::transport::rdma::RdmaPeer;
use mooncake::transport::rdma::handshake::{ConnectionDesc, device_of};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The exact JSON text of a captured frame.
fn frame(v: &Value) -> Value {
    let text = v["json"].as_str().expect("frame text");
    assert!(text.ends_with('\n'), "Mooncake's frames end with a newline");
    serde_json::from_str(text).unwrap()
}

#[test]
fn the_wheels_rdma_descriptor_decodes_into_a_usable_peer() {
    let f = fixture("wheel_rdma_descriptor.json");
    let d = SegmentDescriptor::from_json(&frame(&f["reply"])).unwrap();
    assert!(d.speaks_rdma());
    assert!(!d.speaks_tcp(), "the wheel's rdma descriptor offers no tcp data port");
    assert_eq!(d.devices.len(), 1);
    assert_eq!(d.devices[0].name, "rxe0");
    let addr = f["wheel_side"]["serve_line"]["addr"].as_u64().unwrap();
    let b = &d.buffers[0];
    assert_eq!((b.name.as_str(), b.addr, b.length), ("cpu:0", addr, 65536));
    assert_eq!(b.rkey.len(), 1);
    let peer = RdmaPeer::from_descriptor(&d.name, ("127.0.0.1".into(), 1), &d).unwrap();
    assert_eq!(peer.buffer_for(addr + 100, 4096).unwrap().rkeys, b.rkey);
    assert!(peer.buffer_for(addr + 65536 - 10, 20).is_none());
    assert_eq!(peer.devices_for("cpu:0"), [0], "rxe0 is the matrix's usable device for cpu:0");
    assert_eq!(peer.devices[0].gid[10..], [0xff, 0xff, 192, 0, 2, 1]);
    assert_eq!(peer.nic_path(0), format!("{}@rxe0", d.name));
}

#[test]
fn the_wheels_connection_frames_decode() {
    let f = fixture("wheel_rdma_handshake.json");
    let frames = f["initiator"]["frames"].as_array().unwrap();
    let request =
        frames.iter().find(|x| x["type"] == 0 && x["from"] == "wheel").expect("a type-0 frame from the wheel");
    let r = ConnectionDesc::from_json(&frame(request)).unwrap();
    assert_eq!(r.qp_num.len(), 2, "MC_NUM_QP_PER_EP = 2");
    assert_eq!(r.ready_ack, Some(false), "the wheel announces ready acknowledgements");
    assert_eq!(device_of(&r.peer_nic_path), Some("rxe0"));
    assert!(r.local_gid.ends_with("ff:ff:c0:00:02:01") && r.reply_msg.is_empty());
    assert_eq!(r.mtu, None);

    let reply = ConnectionDesc::from_json(&frame(&f["passive"]["reply"])).unwrap();
    let ours = ConnectionDesc::from_json(&frame(&f["passive"]["request"])).unwrap();
    assert!(reply.reply_msg.is_empty(), "the wheel accepted: {}", reply.reply_msg);
    assert_eq!(reply.local_nic_path, ours.peer_nic_path, "it answers as the initiator named it");
    assert_eq!(reply.peer_nic_path, ours.local_nic_path);
    assert_eq!(reply.qp_num.len(), ours.qp_num.len());
}
