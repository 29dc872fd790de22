//! A local buffer that was never registered, as Mooncake's TCP transport takes it: accepted on
//! the local route (target = this engine), the same-host path and TCP, with the bytes intact and
//! nothing written outside the target's region; an unmapped local address fails its task (the
//! kernel reports it) instead of the process. The target side stays strict: only memory it
//! registered as remotely accessible is touched. (RDMA refusing unregistered memory is in
//! `tests/rdma_guest.rs`'s fake-verbs tests.)

mod support;

use mooncake::config::{Config, SameHost};
use mooncake::engine::{EngineOptions, TransferEngine, TransferRequest};
use mooncake::transport::Opcode;
use support::{pattern, run_batch};

const GUARD: usize = 4096;
const COMPLETED: i32 = 4;
const FAILED: i32 = 6;

fn engine_with(same_host: SameHost) -> TransferEngine {
    let mut config = Config::from_env();
    config.same_host = same_host;
    TransferEngine::with_config(EngineOptions::p2p("127.0.0.1"), config).expect("engine")
}

fn req(opcode: Opcode, source: u64, target_id: i32, target_offset: u64, length: u64) -> TransferRequest {
    TransferRequest { opcode, source, target_id, target_offset, length }
}

/// Whether the kernel copies within this process (`process_vm_readv` on our own pid); where a
/// seccomp filter forbids it the engine trusts the caller's pointer, so an unmapped one must
/// not be tried.
fn kernel_copies_here() -> bool {
    let (src, mut dst) = ([1u8; 8], [0u8; 8]);
    let local = libc::iovec { iov_base: dst.as_mut_ptr().cast(), iov_len: 8 };
    let remote = libc::iovec { iov_base: src.as_ptr() as *mut libc::c_void, iov_len: 8 };
    // SAFETY: both iovecs describe live arrays of 8 bytes.
    let n = unsafe { libc::process_vm_readv(std::process::id() as libc::pid_t, &local, 1, &remote, 1, 0) };
    n == 8
}

/// Writes `len` bytes of an unregistered buffer to `target` (at an offset inside a guarded,
/// registered region), reads them back into another unregistered buffer, and checks bytes
/// and guards; `seg` is how `init` names `target`.
fn round_trip(init: &TransferEngine, seg: i32, region: &mut [u8], len: usize, seed: u64) {
    region.fill(0xEE);
    let base = region.as_mut_ptr() as u64 + GUARD as u64;
    let src = pattern(len, seed);
    let mut back = vec![0x5Au8; len + 2 * GUARD];
    let w = req(Opcode::Write, src.as_ptr() as u64, seg, base, len as u64);
    assert_eq!(run_batch(init, &[w]), vec![COMPLETED], "write of {len} bytes");
    assert!(region[..GUARD].iter().all(|&b| b == 0xEE), "front guard changed ({len} bytes)");
    assert!(region[GUARD + len..].iter().all(|&b| b == 0xEE), "back guard changed ({len} bytes)");
    assert!(region[GUARD..GUARD + len] == src[..], "target bytes differ ({len} bytes)");
    let r = req(Opcode::Read, back.as_mut_ptr() as u64 + GUARD as u64, seg, base, len as u64);
    assert_eq!(run_batch(init, &[r]), vec![COMPLETED], "read of {len} bytes");
    assert!(back[GUARD..GUARD + len] == src[..], "read-back bytes differ ({len} bytes)");
    assert!(back[..GUARD].iter().chain(&back[GUARD + len..]).all(|&b| b == 0x5A), "local guards changed");
}

const SIZES: [usize; 6] = [1, 4095, 65537, 1 << 20, (3 << 20) + 17, 16 << 20];

fn remote_case(same_host: SameHost, expect_transport: &str) {
    let target = engine_with(same_host);
    let init = engine_with(same_host);
    let mut region = vec![0u8; (16 << 20) + 2 * GUARD];
    target.register_memory(region.as_mut_ptr() as u64 + GUARD as u64, 16 << 20, "cpu:0", true).unwrap();
    let seg = init.open_segment(target.server_name(), false).unwrap();
    for (i, len) in SIZES.into_iter().enumerate() {
        round_trip(&init, seg, &mut region, len, i as u64 + 1);
    }
    let used: Vec<&str> = init.links().iter().map(|l| l.transport).collect();
    assert!(used.contains(&expect_transport), "expected {expect_transport}, links {used:?}");
    // The target stays strict: outside its region nothing lands, whatever the source.
    let src = pattern(64, 9);
    let outside = req(Opcode::Write, src.as_ptr() as u64, seg, region.as_ptr() as u64, 64);
    assert_eq!(run_batch(&init, &[outside]), vec![FAILED]);
    assert!(region[..GUARD].iter().all(|&b| b == 0xEE), "a refused write landed in the guard");
    if kernel_copies_here() {
        // An unmapped source (page 0) fails its task, and the path works on afterwards.
        let unmapped = req(Opcode::Write, 64, seg, region.as_ptr() as u64 + GUARD as u64 + 4096, 64);
        assert_eq!(run_batch(&init, &[unmapped]), vec![FAILED], "a copy from an unmapped address");
        let into_unmapped = req(Opcode::Read, 64, seg, region.as_ptr() as u64 + GUARD as u64, 64);
        assert_eq!(run_batch(&init, &[into_unmapped]), vec![FAILED], "a copy into an unmapped address");
        let src = pattern(64, 200);
        let good = req(Opcode::Write, src.as_ptr() as u64, seg, region.as_ptr() as u64 + GUARD as u64, 64);
        assert_eq!(run_batch(&init, &[good]), vec![COMPLETED]);
        assert_eq!(&region[GUARD..GUARD + 64], &src[..]);
    }
    target.unregister_memory(region.as_ptr() as u64 + GUARD as u64).unwrap();
}

#[test]
fn tcp_takes_an_unregistered_local_buffer() {
    remote_case(SameHost::Off, "tcp");
}

#[test]
fn same_host_takes_an_unregistered_local_buffer() {
    remote_case(SameHost::Auto, "shm");
}

#[test]
fn the_local_route_takes_an_unregistered_local_buffer() {
    let e = engine_with(SameHost::Off);
    let mut region = vec![0u8; (16 << 20) + 2 * GUARD];
    e.register_memory(region.as_mut_ptr() as u64 + GUARD as u64, 16 << 20, "cpu:0", true).unwrap();
    for (i, len) in SIZES.into_iter().enumerate() {
        round_trip(&e, 0, &mut region, len, i as u64 + 11);
    }
    // copy_local (the store's own-replica path) takes it too, and refuses a target outside.
    let src = pattern(4096, 5);
    let base = region.as_mut_ptr() as u64 + GUARD as u64;
    e.copy_local(Opcode::Write, src.as_ptr() as u64, base + 100, 4096).unwrap();
    assert_eq!(&region[GUARD + 100..GUARD + 4196], &src[..]);
    let mut out = vec![0u8; 4096];
    e.copy_local(Opcode::Read, out.as_mut_ptr() as u64, base + 100, 4096).unwrap();
    assert_eq!(out, src);
    assert!(e.copy_local(Opcode::Write, src.as_ptr() as u64, region.as_ptr() as u64, 4096).is_err());
    if kernel_copies_here() {
        assert!(e.copy_local(Opcode::Write, 64, base, 4096).is_err(), "copy from an unmapped address");
        assert!(e.copy_local(Opcode::Read, 64, base, 4096).is_err(), "copy to an unmapped address");
    }
    e.unregister_memory(base).unwrap();
}
