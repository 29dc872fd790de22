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

const GUARD: usize = 4096;

#[test]
fn wheel_refuses_our_out_of_region_and_spanning_writes() {
    let Some(py) = python() else { return };
    let region = 1u64 << 20;
    let mut peer = WheelPeer::start_with(&py, region, &[], &["--guard", &GUARD.to_string(), "--split"]);
    let ours = engine();
    let local = pattern(2 << 20, 5);
    ours.register_memory(local.as_ptr() as u64, local.len() as u64, "cpu:0", true).unwrap();
    let seg = ours.open_segment(&peer.session, false).unwrap();
    let half = region / 2;
    let w = |addr: u64, len: u64| TransferRequest {
        opcode: Opcode::Write,
        source: local.as_ptr() as u64,
        target_id: seg,
        target_offset: addr,
        length: len,
    };
    let refused = [
        w(peer.addr - 16, 64),             // straddles the start
        w(peer.addr + region - 16, 64),    // straddles the end
        w(peer.addr + region, 16),         // just past the end
        w(peer.addr + half - 8, 16),       // spans the two adjacent registrations
        w(peer.addr - GUARD as u64, 4096), // entirely in the guard
    ];
    for r in refused {
        assert_eq!(run_batch(&ours, &[r]), vec![6], "the wheel must refuse {r:?}");
    }
    assert_eq!(peer.call(serde_json::json!({"op": "guards"}))["intact"], true, "guard bytes changed");
    assert!(peer.bytes(0, region).iter().all(|&b| b == 0), "a refused write reached the region");
    // the engine still works with that peer afterwards
    assert_eq!(run_batch(&ours, &[w(peer.addr, 4096), w(peer.addr + half, 4096)]), vec![4, 4]);
}

fn ours_refuses_the_wheels_bad_writes(env: &[(&str, &str)]) {
    let Some(py) = python() else { return };
    let mut peer = WheelPeer::start(&py, 1 << 20, env);
    peer.fill(0, 1 << 20, 9);
    let ours = engine();
    let mut mem = vec![0xEEu8; (1 << 20) + 2 * GUARD];
    let base = mem.as_mut_ptr() as u64 + GUARD as u64;
    let half = 1u64 << 19;
    ours.register_memory(base, half, "cpu:0", true).unwrap();
    ours.register_memory(base + half, half, "cpu:0", true).unwrap();
    let name = ours.server_name().to_string();
    let v1 = env.iter().any(|&(k, v)| k == "MC_TCP_PROTO" && v == "1");
    for (addr, len) in [(base - 16, 64), (base + (1 << 20) - 16, 64), (base + (1 << 20), 16), (base + half - 8, 16)] {
        let rc = peer.transfer("write", &name, &[0], &[addr], &[len]);
        if !v1 {
            assert!(rc < 0, "the wheel reported success for a refused v2 write to {addr:#x}+{len}");
        }
    }
    // v1 reports success as soon as the bytes left; wait (bounded) for our server's verdicts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while ours.tcp().unwrap().refused_requests() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let refused = ours.tcp().unwrap().refused_requests();
    assert_eq!(refused, 4, "our server refused {refused} of 4 requests");
    assert!(mem[..GUARD].iter().all(|&b| b == 0xEE) && mem[GUARD + (1 << 20)..].iter().all(|&b| b == 0xEE));
    assert!(mem[GUARD..GUARD + (1 << 20)].iter().all(|&b| b == 0xEE), "a refused write reached the regions");
    // A good write after the refusals. The wheel's client may fail the first request it sends
    // on a pooled connection that a refusal closed (it does the same against its own server),
    // so it gets a second try.
    let good = (0..2).any(|_| peer.transfer("write", &name, &[0], &[base], &[4096]) == 0);
    assert!(good, "a good write after refusals failed twice");
    // With v1 the wheel's success only means the bytes left its socket: wait (bounded) until
    // our server has written them.
    let want = pattern(4096, 9);
    let landed = |mem: &[u8]| {
        // SAFETY: volatile reads of the test's own buffer, which our server thread writes into.
        (0..4096).all(|i| unsafe { std::ptr::read_volatile(mem.as_ptr().add(GUARD + i)) } == want[i])
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !landed(&mem) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(&mem[GUARD..GUARD + 4096], &want[..]);
}

#[test]
fn ours_refuses_the_wheels_out_of_region_writes_v2() {
    ours_refuses_the_wheels_bad_writes(&[]);
}

/// With v1 the wheel cannot see that a refusal closed its connection, so without its pool every
/// request reaches our server on a fresh connection.
#[test]
fn ours_refuses_the_wheels_out_of_region_writes_v1() {
    ours_refuses_the_wheels_bad_writes(&[("MC_TCP_PROTO", "1"), ("MC_TCP_ENABLE_CONNECTION_POOL", "0")]);
}

/// Mooncake's handshake server is serial: one idle client stalls it. Ours must answer the
/// wheel's descriptor request at once while another connection sits idle on the port.
#[test]
fn handshake_is_answered_while_another_connection_sits_idle() {
    let Some(py) = python() else { return };
    let ours = engine();
    let mut mem = vec![0u8; 1 << 16];
    ours.register_memory(mem.as_mut_ptr() as u64, mem.len() as u64, "cpu:0", true).unwrap();
    let idle = std::net::TcpStream::connect(("127.0.0.1", ours.rpc_port())).unwrap();
    let mut peer = WheelPeer::start(&py, 1 << 16, &[]);
    peer.fill(0, 4096, 77);
    let t = std::time::Instant::now();
    assert_eq!(peer.transfer("write", ours.server_name(), &[0], &[mem.as_ptr() as u64], &[4096]), 0);
    let took = t.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "first transfer (handshake + write) took {took:?}");
    assert_eq!(&mem[..4096], &pattern(4096, 77)[..]);
    drop(idle);
}

#[test]
fn wheel_writes_and_reads_ours_v1_without_pool() {
    wheel_initiator_ours_target(&[("MC_TCP_PROTO", "1"), ("MC_TCP_ENABLE_CONNECTION_POOL", "0")]);
}

/// Our initiator's v1 path against the wheel's real data server: the wheel's descriptor is
/// served without `tcp_proto_version` (as an older Mooncake publishes it), so ours speaks v1.
#[test]
fn ours_speaks_v1_to_the_wheels_server_for_a_descriptor_without_version() {
    use support::fake_peer::{FakeServer, Reply};
    let Some(py) = python() else { return };
    let mut peer = WheelPeer::start(&py, BUF, &[]);
    let ours = engine();
    let real = ours.open_segment(&peer.session, false).unwrap();
    let mut desc = ours.segment_descriptor(real).unwrap().to_json();
    desc.as_object_mut().unwrap().remove("tcp_proto_version");
    let fake = FakeServer::handshake(Reply::Frame(1, desc.to_string().into_bytes()));
    let seg = ours.open_segment(&format!("127.0.0.1:{}", fake.port), false).unwrap();
    assert_eq!(ours.segment_descriptor(seg).unwrap().tcp_proto_version, 1);
    let mut local = pattern(16 << 20, 31);
    ours.register_memory(local.as_mut_ptr() as u64, local.len() as u64, "cpu:0", true).unwrap();
    let blocks = scattered(128, (BUF / BLOCK) as usize, 9);
    let writes: Vec<_> = blocks
        .iter()
        .enumerate()
        .map(|(i, &d)| TransferRequest {
            opcode: Opcode::Write,
            source: local.as_ptr() as u64 + i as u64 * BLOCK,
            target_id: seg,
            target_offset: peer.addr + d as u64 * BLOCK,
            length: BLOCK,
        })
        .collect();
    assert!(run_batch(&ours, &writes).iter().all(|&s| s == 4));
    // v1 "completes" when the bytes have left our socket: wait (bounded) until the wheel has
    // stored every block before reading back, or the read could overtake the write.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for (i, &d) in blocks.iter().enumerate() {
        let want = &local[i * BLOCK as usize..(i + 1) * BLOCK as usize];
        while peer.bytes(d as u64 * BLOCK, BLOCK) != want {
            assert!(std::time::Instant::now() < deadline, "block {i} never arrived at the wheel");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let expect = local.clone();
    local.iter_mut().for_each(|b| *b = 0);
    let reads: Vec<_> = writes.iter().map(|w| TransferRequest { opcode: Opcode::Read, ..*w }).collect();
    assert!(run_batch(&ours, &reads).iter().all(|&s| s == 4));
    assert!(local[..128 * BLOCK as usize] == expect[..128 * BLOCK as usize]);
    assert!(ours.links().iter().any(|l| l.protocol_version == 1));
}
