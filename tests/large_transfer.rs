//! One request over 4 GiB, through the engine (sliced) and as a single Mooncake wire request
//! (one header, as a Mooncake initiator sends it). Uses about 8.5 GiB of memory.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mooncake::engine::TransferRequest;
use mooncake::transport::Opcode;
use mooncake::transport::tcp::wire::{Header, STATUS_OK, status_frame};
use support::*;

const LEN: usize = (4 << 30) + (256 << 20) + 4093; // 4.25 GiB and an odd tail

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b { None } else { a.iter().zip(b).position(|(x, y)| x != y) }
}

#[test]
fn requests_over_4_gib() {
    let (a, b) = (engine(), engine());
    let mut src = vec![0u8; LEN];
    let mut dst = vec![0u8; LEN];
    fill(&mut src, 41);
    a.register_memory(src.as_mut_ptr() as u64, LEN as u64, "cpu:0", true).unwrap();
    b.register_memory(dst.as_mut_ptr() as u64, LEN as u64, "cpu:0", true).unwrap();
    let seg = a.open_segment(b.server_name(), false).unwrap();

    // through the engine: one task of 4.25 GiB, cut into slices over the lanes
    let write = TransferRequest {
        opcode: Opcode::Write,
        source: src.as_ptr() as u64,
        target_id: seg,
        target_offset: dst.as_ptr() as u64,
        length: LEN as u64,
    };
    let batch = a.allocate_batch(2).unwrap();
    a.submit(batch, &[write], None).unwrap();
    assert_eq!(wait_batch(&a, batch, 1, Duration::from_secs(300)), vec![4]);
    assert_eq!(a.task_status(batch, 0).unwrap().transferred_bytes, LEN as u64);
    assert_eq!(first_difference(&src, &dst), None, "written bytes differ");
    src.iter_mut().for_each(|x| *x = 0);
    a.submit(batch, &[TransferRequest { opcode: Opcode::Read, ..write }], None).unwrap();
    assert_eq!(wait_batch(&a, batch, 2, Duration::from_secs(300)), vec![4, 4]);
    assert_eq!(a.task_status(batch, 1).unwrap().transferred_bytes, LEN as u64);
    assert_eq!(first_difference(&src, &dst), None, "read-back bytes differ");

    // as one v2 wire request: a single 24-byte header for all 4.25 GiB
    fill(&mut src, 43);
    let port = b.local_descriptor().tcp_data_port;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let h = Header { size: LEN as u64, addr: dst.as_ptr() as u64, write: true, v2: true };
    s.write_all(&h.encode()).unwrap();
    s.write_all(&src).unwrap();
    let mut status = [0u8; 8];
    s.read_exact(&mut status).unwrap();
    assert_eq!(status, status_frame(STATUS_OK));
    assert_eq!(first_difference(&src, &dst), None, "single-request write differs");
    let h = Header { write: false, ..h };
    s.write_all(&h.encode()).unwrap();
    s.read_exact(&mut status).unwrap();
    assert_eq!(status, status_frame(STATUS_OK));
    src.iter_mut().for_each(|x| *x = 0);
    s.read_exact(&mut src).unwrap();
    assert_eq!(first_difference(&src, &dst), None, "single-request read differs");
}
