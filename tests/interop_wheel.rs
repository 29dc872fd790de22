//! Interop with Mooncake's published wheel (`mooncake-transfer-engine-non-cuda==0.3.13.post1`)
//! over real loopback TCP, in both directions.

mod support;

use mooncake::engine::TransferRequest;
use mooncake::transport::Opcode;
use support::wheel::{WheelPeer, python};
use support::*;

const BLOCK: u64 = 64 << 10;
const BLOCKS: usize = 1024; // 64 MiB of scattered blocks
const BUF: u64 = 128 << 20;

fn ours_initiator_wheel_target(env: &[(&str, &str)]) {
    let Some(py) = python() else { return };
    let mut peer = WheelPeer::start(&py, BUF, env);
    let ours = engine();
    let mut local = vec![0u8; BUF as usize];
    fill(&mut local, 11);
    ours.register_memory(local.as_mut_ptr() as u64, BUF, "cpu:0", true).unwrap();
    let seg = ours.open_segment(&peer.session, false).unwrap();
    let slots = (BUF / BLOCK) as usize;
    let src = scattered(BLOCKS, slots, 1);
    let dst = scattered(BLOCKS, slots, 2);
    let writes: Vec<_> = src
        .iter()
        .zip(&dst)
        .map(|(&s, &d)| TransferRequest {
            opcode: Opcode::Write,
            source: local.as_ptr() as u64 + s as u64 * BLOCK,
            target_id: seg,
            target_offset: peer.addr + d as u64 * BLOCK,
            length: BLOCK,
        })
        .collect();
    assert!(run_batch(&ours, &writes).iter().all(|&s| s == 4));
    for (&s, &d) in src.iter().zip(&dst).step_by(97) {
        let got = peer.bytes(d as u64 * BLOCK, BLOCK);
        assert_eq!(&got[..], &local[s * BLOCK as usize..(s + 1) * BLOCK as usize], "block {d} on the wheel");
    }
    // read everything back into zeroed memory and compare all 64 MiB
    let mut back = vec![0u8; BUF as usize];
    ours.register_memory(back.as_mut_ptr() as u64, BUF, "cpu:0", true).unwrap();
    let reads: Vec<_> = writes
        .iter()
        .zip(&src)
        .map(|(w, &s)| TransferRequest { opcode: Opcode::Read, source: back.as_ptr() as u64 + s as u64 * BLOCK, ..*w })
        .collect();
    assert!(run_batch(&ours, &reads).iter().all(|&s| s == 4));
    for &s in &src {
        let r = s * BLOCK as usize..(s + 1) * BLOCK as usize;
        assert!(back[r.clone()] == local[r], "block {s} read back differs");
    }
}

#[test]
fn ours_writes_and_reads_the_wheel_v2_pool() {
    ours_initiator_wheel_target(&[]);
}

#[test]
fn ours_writes_and_reads_the_wheel_without_pool() {
    ours_initiator_wheel_target(&[("MC_TCP_ENABLE_CONNECTION_POOL", "0")]);
}

fn wheel_initiator_ours_target(env: &[(&str, &str)]) {
    let Some(py) = python() else { return };
    let mut peer = WheelPeer::start(&py, BUF, env);
    peer.fill(0, BUF, 23);
    let ours = engine();
    let mut target = vec![0u8; BUF as usize];
    ours.register_memory(target.as_mut_ptr() as u64, BUF, "cpu:0", true).unwrap();
    let slots = (BUF / BLOCK) as usize;
    let src = scattered(BLOCKS, slots, 3);
    let dst = scattered(BLOCKS, slots, 4);
    let local: Vec<u64> = src.iter().map(|&s| s as u64 * BLOCK).collect();
    let remote: Vec<u64> = dst.iter().map(|&d| target.as_ptr() as u64 + d as u64 * BLOCK).collect();
    let lens = vec![BLOCK; BLOCKS];
    for chunk in 0..BLOCKS / 128 {
        let r = chunk * 128..(chunk + 1) * 128;
        assert_eq!(peer.transfer("write", ours.server_name(), &local[r.clone()], &remote[r.clone()], &lens[r]), 0);
    }
    let expect = pattern(BUF as usize, 23);
    for (&s, &d) in src.iter().zip(&dst) {
        let (s, d) = (s * BLOCK as usize, d * BLOCK as usize);
        assert!(target[d..d + BLOCK as usize] == expect[s..s + BLOCK as usize], "block at {d} differs");
    }
    // the wheel reads our blocks back into other places of its buffer
    fill(&mut target, 29);
    for chunk in 0..BLOCKS / 128 {
        let r = chunk * 128..(chunk + 1) * 128;
        assert_eq!(peer.transfer("read", ours.server_name(), &local[r.clone()], &remote[r.clone()], &lens[r]), 0);
    }
    for (&s, &d) in src.iter().zip(&dst).step_by(61) {
        let got = peer.bytes(s as u64 * BLOCK, BLOCK);
        let d = d * BLOCK as usize;
        assert_eq!(&got[..], &target[d..d + BLOCK as usize]);
    }
}

#[test]
fn wheel_writes_and_reads_ours_v2() {
    wheel_initiator_ours_target(&[]);
}

#[test]
fn wheel_writes_and_reads_ours_v1() {
    wheel_initiator_ours_target(&[("MC_TCP_PROTO", "1")]);
}

#[test]
fn wheel_writes_and_reads_ours_without_pool() {
    wheel_initiator_ours_target(&[("MC_TCP_ENABLE_CONNECTION_POOL", "0")]);
}
