//! Our servers byte for byte against `wire.md`: the handshake port and the TCP data port, driven
//! by raw sockets, including malformed frames (each closes its connection and nothing else).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use mooncake::transport::tcp::wire::{Header, STATUS_OK, STATUS_REJECTED, status_frame};
use serde_json::{Value, json};
use support::engine;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn frame(kind: u8, json: &str) -> Vec<u8> {
    let mut v = ((json.len() + 1) as u64).to_le_bytes().to_vec();
    v.push(kind);
    v.extend_from_slice(json.as_bytes());
    v
}

/// Everything the server sends until it closes; fails when the server does not close (the
/// read timeout of `connect` passes first).
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => out,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => out,
        Err(e) => panic!("the server did not close the connection: {e} (got {out:?})"),
    }
}

/// Sends `bytes`, returns (type byte or None for typeless, body text) of the reply, and checks
/// that the server half-closed after it.
fn exchange(port: u16, bytes: &[u8]) -> Option<(Option<u8>, String)> {
    let mut s = connect(port);
    s.write_all(bytes).unwrap();
    let out = read_all(&mut s);
    if out.is_empty() {
        return None;
    }
    let len = u64::from_le_bytes(out[..8].try_into().unwrap()) as usize;
    assert_eq!(out.len(), 8 + len, "exactly one frame, then EOF");
    let first = out[8];
    if first <= 3 {
        Some((Some(first), String::from_utf8(out[9..].to_vec()).unwrap()))
    } else {
        Some((None, String::from_utf8(out[8..].to_vec()).unwrap()))
    }
}

#[test]
fn handshake_port_answers_as_mooncake() {
    let e = engine();
    let mut buf = vec![0u8; 4096];
    e.register_memory(buf.as_mut_ptr() as u64, 4096, "cpu:0", true).unwrap();
    let port = e.rpc_port();

    let (kind, body) = exchange(port, &frame(3, "{}\n")).unwrap();
    assert_eq!((kind, body.as_str()), (Some(3), "{\"status\":\"success\"}\n"));

    let (kind, body) = exchange(port, &frame(1, "{}")).unwrap();
    assert_eq!(kind, Some(1));
    assert!(body.ends_with('\n'), "Mooncake-style trailing newline");
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["name"], e.server_name());
    assert_eq!(d["protocol"], "tcp");
    assert_eq!(d["tcp_proto_version"], 2);
    assert_eq!(d["tcp_data_host"], "127.0.0.1");
    assert_eq!(d["rdma_server_name"], "");
    assert!(d["tcp_data_port"].is_u64());
    assert_eq!(d["buffers"], json!([{"addr": buf.as_ptr() as u64, "length": 4096, "name": e.server_name()}]));
    let keys: Vec<_> = d.as_object().unwrap().keys().cloned().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    let (kind, body) = exchange(port, &frame(2, r#"{"name":"n1","notify_msg":"hello"}"#)).unwrap();
    assert_eq!((kind, body.as_str()), (Some(2), "{\"name\":\"\",\"notify_msg\":\"success\"}\n"));
    assert_eq!(e.take_notifies(), vec![("n1".to_string(), "hello".to_string())]);

    let empty = r#"{"local_gid":"","local_lid":0,"local_nic_path":"","payload":"","peer_nic_path":"","qp_num":[],"reply_msg":""}"#;
    let (kind, body) = exchange(port, &frame(0, r#"{"local_nic_path":"x@mlx5_0"}"#)).unwrap();
    assert_eq!((kind, body.trim_end()), (Some(0), empty));
    // the old, typeless protocol: JSON without a type byte, answered without one
    let old = r#"{"local_nic_path":"x@mlx5_0"}"#;
    let mut bytes = (old.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(old.as_bytes());
    let (kind, body) = exchange(port, &bytes).unwrap();
    assert_eq!((kind, body.trim_end()), (None, empty));
}

#[test]
fn malformed_handshakes_close_without_reply_and_the_port_keeps_serving() {
    let e = engine();
    let port = e.rpc_port();
    let mut zero = 0u64.to_le_bytes().to_vec();
    zero.push(3);
    let mut huge = (2u64 << 20).to_le_bytes().to_vec();
    huge.push(3);
    for bad in [zero, huge, frame(1, "{not json"), frame(4, "{}"), frame(0x90, "{}"), frame(2, r#"{"name":1}"#)] {
        assert_eq!(exchange(port, &bad), None, "{bad:?} must be closed without a reply");
    }
    // a short read: the length promises more than arrives
    let mut s = connect(port);
    s.write_all(&frame(3, "{}")[..10]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_all(&mut s).is_empty());
    assert_eq!(exchange(port, &frame(3, "{}")).unwrap().0, Some(3), "still serving");
}

fn data_port(e: &mooncake::engine::TransferEngine) -> u16 {
    e.local_descriptor().tcp_data_port
}

#[test]
fn data_port_serves_v2_and_v1_requests_on_one_connection() {
    let e = engine();
    let mut buf = vec![0u8; 1 << 16];
    let base = buf.as_mut_ptr() as u64;
    e.register_memory(base, 1 << 16, "cpu:0", true).unwrap();
    let mut s = connect(data_port(&e));
    let payload: Vec<u8> = (0..4096u32).map(|i| (i * 3) as u8).collect();
    // v2 write: OK after the bytes are stored
    s.write_all(&Header { size: 4096, addr: base, write: true, v2: true }.encode()).unwrap();
    s.write_all(&payload).unwrap();
    let mut st = [0u8; 8];
    s.read_exact(&mut st).unwrap();
    assert_eq!(st, status_frame(STATUS_OK));
    // v2 read: OK, then the data
    s.write_all(&Header { size: 4096, addr: base, write: false, v2: true }.encode()).unwrap();
    let mut back = vec![0u8; 8 + 4096];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back[..8], status_frame(STATUS_OK));
    assert_eq!(back[8..], payload[..]);
    // v1 write then v1 read on the same connection: no frames at all
    s.write_all(&Header { size: 16, addr: base + 8192, write: true, v2: false }.encode()).unwrap();
    s.write_all(&[7u8; 16]).unwrap();
    s.write_all(&Header { size: 16, addr: base + 8192, write: false, v2: false }.encode()).unwrap();
    let mut sixteen = [0u8; 16];
    s.read_exact(&mut sixteen).unwrap();
    assert_eq!(sixteen, [7u8; 16]);
    // opcode 0x85 is a v2 READ for Mooncake's server, and so for ours
    let mut h = Header { size: 16, addr: base + 8192, write: false, v2: true }.encode();
    h[16] = 0x85;
    h[17..].copy_from_slice(&[0xAB; 7]); // padding contents are ignored
    s.write_all(&h).unwrap();
    let mut r = [0u8; 24];
    s.read_exact(&mut r).unwrap();
    assert_eq!(r[..8], status_frame(STATUS_OK));
    assert_eq!(r[8..], [7u8; 16]);
    drop(buf);
}

#[test]
fn data_port_refuses_bad_ranges_and_closes_only_that_connection() {
    let e = engine();
    let mut buf = vec![0x11u8; 8192];
    let base = buf.as_mut_ptr() as u64 + 1024;
    e.register_memory(base, 4096, "cpu:0", true).unwrap();
    let port = data_port(&e);
    let other = connect(port); // a second connection must survive the refusals
    for (addr, size) in [(base + 4000, 200), (base - 1, 8), (base + 4096, 1), (base, 0), (u64::MAX - 2, 8)] {
        let mut s = connect(port);
        s.write_all(&Header { size, addr, write: true, v2: true }.encode()).unwrap();
        let out = read_all(&mut s);
        assert_eq!(out, status_frame(STATUS_REJECTED).to_vec(), "v2 refusal of {addr:#x}+{size}: frame, then EOF");
        let mut s = connect(port);
        s.write_all(&Header { size, addr, write: false, v2: false }.encode()).unwrap();
        assert!(read_all(&mut s).is_empty(), "v1 refusal closes without a byte");
    }
    assert!(buf.iter().all(|&b| b == 0x11), "a refused request touched memory");
    let mut other = other;
    other.write_all(&Header { size: 8, addr: base, write: false, v2: true }.encode()).unwrap();
    let mut r = [0u8; 16];
    other.read_exact(&mut r).unwrap();
    assert_eq!(r[..8], status_frame(STATUS_OK));
}
