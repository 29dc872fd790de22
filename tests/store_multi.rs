//! Multi-buffer puts and gets (`batch_put_from_multi_buffers`, `batch_get_into_multi_buffers`)
//! against a real `mooncake_master`: values made of parts from 1 B to 16 MiB scattered over
//! registered memory, and over unregistered heap and mmap memory, written by one process and
//! owned by another (and across two hosts in network namespaces), checked with checksums; bad input gets Mooncake's codes and leaves
//! the guard bytes around every part untouched.

#[allow(dead_code)] // the engine roles of tests/netns.rs are not used here
mod netns_support;
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mooncake::proto::{Request, Response};
use mooncake::store::rpc::MasterClient;
use mooncake::store::{ErrorCode, KeyParts, Part, ReplicaConfig, Store, StoreConfig};
use netns_support::lab::Lab;
use netns_support::peer::{Peer, ROLE_VAR};
use netns_support::roles::emit;
use serde_json::json;
use support::store::{Master, Owner, checksum, owner_main};

#[test]
#[ignore = "runs only as a child of the other tests (support::store::Owner)"]
fn owner_process() {
    owner_main();
}

const MIB: u64 = 1 << 20;
/// Bytes of guard before and after every part.
const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xA5;

fn replicas(n: u32) -> ReplicaConfig {
    ReplicaConfig { replica_num: n, ..Default::default() }
}

/// Part sizes of the values: key `k` gets `SIZES[k..]` rotated, so parts of every size land at
/// every position; 1 B to 16 MiB.
const SIZES: [u64; 8] = [1, 7, 4096, 65_537, MIB, 3 * MIB + 5, 16 * MIB, 13];

/// Where an arena's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    /// A heap buffer registered with the store (`register_buffer`).
    Registered,
    /// A plain heap buffer (`Vec`) the store never hears of.
    Heap,
    /// An anonymous `mmap` the store never hears of.
    Mapped,
}

/// Memory holding parts at scattered places, each between guard bytes.
struct Arena {
    buf: &'static mut [u8],
    /// `(offset, len)` of each part, in allocation order.
    slots: Vec<(usize, usize)>,
}

impl Arena {
    /// Room for `lens` in registered memory, placed in the arena in the order `order` (a
    /// permutation), guards around each.
    fn new(store: &Store, lens: &[u64], order: &[usize]) -> Arena {
        Arena::of(Memory::Registered, store, lens, order)
    }

    /// [`Arena::new`] in `memory`: registered with `store` only for [`Memory::Registered`].
    fn of(memory: Memory, store: &Store, lens: &[u64], order: &[usize]) -> Arena {
        let total: usize = lens.iter().map(|&l| l as usize + 2 * GUARD).sum::<usize>() + GUARD;
        let buf: &'static mut [u8] = match memory {
            Memory::Registered | Memory::Heap => vec![GUARD_BYTE; total].leak(),
            Memory::Mapped => {
                // SAFETY: an anonymous private mapping of `total` bytes, checked for failure;
                // it is never unmapped, so the `'static` slice over it stays valid.
                let at = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        total,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                assert_ne!(at, libc::MAP_FAILED, "mmap of {total} bytes");
                // SAFETY: `at` is the start of `total` readable, writable bytes owned by nobody else.
                let buf = unsafe { std::slice::from_raw_parts_mut(at.cast::<u8>(), total) };
                buf.fill(GUARD_BYTE);
                buf
            }
        };
        if memory == Memory::Registered {
            store.register_buffer(buf.as_ptr() as u64, total as u64).expect("register");
        }
        let mut slots = vec![(0, 0); lens.len()];
        let mut at = GUARD;
        for &i in order {
            slots[i] = (at, lens[i] as usize);
            at += lens[i] as usize + 2 * GUARD;
        }
        Arena { buf, slots }
    }

    fn part(&self, i: usize) -> Part {
        let (off, len) = self.slots[i];
        Part { addr: self.buf.as_ptr() as u64 + off as u64, len: len as u64 }
    }

    fn bytes(&self, i: usize) -> &[u8] {
        let (off, len) = self.slots[i];
        &self.buf[off..off + len]
    }

    fn bytes_mut(&mut self, i: usize) -> &mut [u8] {
        let (off, len) = self.slots[i];
        &mut self.buf[off..off + len]
    }

    /// Every byte outside the parts still holds the guard.
    fn guards_intact(&self) -> bool {
        let mut inside = vec![false; self.buf.len()];
        for &(off, len) in &self.slots {
            inside[off..off + len].iter_mut().for_each(|b| *b = true);
        }
        self.buf.iter().zip(&inside).all(|(&b, &part)| part || b == GUARD_BYTE)
    }

    fn wipe_parts(&mut self) {
        for i in 0..self.slots.len() {
            self.bytes_mut(i).fill(0);
        }
    }
}

/// `keys` values, each of `SIZES.len()` parts; returns `(key, part indexes)`.
fn layout(keys: usize) -> (Vec<String>, Vec<Vec<usize>>, Vec<u64>) {
    let mut lens = Vec::new();
    let mut owned = Vec::new();
    for k in 0..keys {
        let mut idx = Vec::new();
        for j in 0..SIZES.len() {
            idx.push(lens.len());
            lens.push(SIZES[(k + j) % SIZES.len()]);
        }
        owned.push(idx);
    }
    ((0..keys).map(|k| format!("multi-{k}")).collect(), owned, lens)
}

/// A scattered order of `n` slots (reversed odd ones between the even ones).
fn shuffled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).step_by(2).collect();
    v.extend((1..n).step_by(2).rev());
    v
}

/// Puts `keys` values of scattered parts through `writer` and reads them back through
/// `reader` into differently scattered parts; checks checksums and guards. `Err` says what
/// differed.
fn scattered_round_trip(writer: &Store, reader: &Store, keys: usize, config: &ReplicaConfig) -> Result<(), String> {
    scattered_round_trip_in(Memory::Registered, Memory::Registered, writer, reader, keys, config)
}

/// [`scattered_round_trip`] with the writer's parts in `src_memory` and the reader's in
/// `dst_memory`.
fn scattered_round_trip_in(
    src_memory: Memory,
    dst_memory: Memory,
    writer: &Store,
    reader: &Store,
    keys: usize,
    config: &ReplicaConfig,
) -> Result<(), String> {
    let (names, owned, lens) = layout(keys);
    let order: Vec<usize> = shuffled(lens.len());
    let mut src = Arena::of(src_memory, writer, &lens, &order);
    for i in 0..lens.len() {
        support::fill(src.bytes_mut(i), i as u64 + 11);
    }
    let src_parts: Vec<Vec<Part>> = owned.iter().map(|idx| idx.iter().map(|&i| src.part(i)).collect()).collect();
    let items: Vec<KeyParts<'_>> = names.iter().zip(&src_parts).map(|(k, p)| KeyParts { key: k, parts: p }).collect();
    let put = writer.batch_put_from_multi_buffers(&items, config, false);
    if let Some((k, e)) = put.iter().enumerate().find_map(|(k, r)| r.as_ref().err().map(|e| (k, e))) {
        return Err(format!("put of {} failed: {e}", names[k]));
    }
    // Reader side: the same part sizes, another scatter.
    let mut back_order = order.clone();
    back_order.reverse();
    let mut dst = Arena::of(dst_memory, reader, &lens, &back_order);
    dst.wipe_parts();
    let dst_parts: Vec<Vec<Part>> = owned.iter().map(|idx| idx.iter().map(|&i| dst.part(i)).collect()).collect();
    let items: Vec<KeyParts<'_>> = names.iter().zip(&dst_parts).map(|(k, p)| KeyParts { key: k, parts: p }).collect();
    let got = reader.batch_get_into_multi_buffers(&items);
    for (k, r) in got.iter().enumerate() {
        let want: u64 = owned[k].iter().map(|&i| lens[i]).sum();
        match r {
            Ok(n) if *n == want => {}
            other => return Err(format!("get of {}: {other:?}, want Ok({want})", names[k])),
        }
    }
    for (i, len) in lens.iter().enumerate() {
        if checksum(dst.bytes(i)) != checksum(src.bytes(i)) {
            return Err(format!("part {i} ({len} bytes) came back different"));
        }
    }
    if !dst.guards_intact() || !src.guards_intact() {
        return Err("a guard byte changed".into());
    }
    // The whole value, as a plain get sees it, is the parts in order.
    let whole = reader.get(&names[0]).map_err(|e| format!("get: {e}"))?;
    let joined: Vec<u8> = owned[0].iter().flat_map(|&i| src.bytes(i).iter().copied()).collect();
    if checksum(&whole) != checksum(&joined) {
        return Err("the value is not the parts in order".into());
    }
    Ok(())
}

#[test]
fn scattered_parts_of_1_byte_to_16_mib_round_trip_between_processes() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 512 * MIB);
    // No segment here: every replica is in the owner's process.
    let client = master.client(0);
    scattered_round_trip(&client, &client, 3, &replicas(1)).unwrap();
    owner.stop();
}

#[test]
fn two_replicas_one_in_this_process_are_both_written_part_by_part() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 256 * MIB);
    let client = master.client(128 * MIB);
    let reader = master.client(0);
    scattered_round_trip(&client, &reader, 2, &replicas(2)).unwrap();
    // Both replicas hold the value: read each by removing the other owner from the picture.
    let (names, _, _) = layout(2);
    let whole = reader.get(&names[1]).unwrap();
    drop(client); // closes: its segment (one replica) goes
    let again = reader.get(&names[1]);
    assert_eq!(again.map(|v| checksum(&v)), Ok(checksum(&whole)), "the other replica differs");
    owner.stop();
}

#[test]
fn unregistered_parts_of_1_byte_to_16_mib_round_trip_between_processes() {
    // As Mooncake's store takes them: parts in a plain `Vec` and in an anonymous mmap that
    // nobody registered, read and written by this process, every replica in the owner's.
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 512 * MIB);
    let client = master.client(0);
    scattered_round_trip_in(Memory::Heap, Memory::Mapped, &client, &client, 3, &replicas(1)).unwrap();
    // Registered on one side only, both ways.
    let (writer, reader) = (master.client(0), master.client(0));
    writer.remove_all(true).unwrap();
    scattered_round_trip_in(Memory::Mapped, Memory::Registered, &writer, &reader, 1, &replicas(1)).unwrap();
    writer.remove_all(true).unwrap();
    scattered_round_trip_in(Memory::Registered, Memory::Heap, &writer, &reader, 1, &replicas(1)).unwrap();
    owner.stop();
}

#[test]
fn unregistered_parts_reach_a_replica_in_this_process_and_one_in_another() {
    // Two replicas: one in this process's segment (a local copy), one in the owner's (the
    // network route); the reader has no segment and reads into unregistered memory too.
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 256 * MIB);
    let client = master.client(128 * MIB);
    let reader = master.client(0);
    scattered_round_trip_in(Memory::Heap, Memory::Heap, &client, &reader, 2, &replicas(2)).unwrap();
    let (names, _, _) = layout(2);
    let whole = reader.get(&names[1]).unwrap();
    drop(client); // closes: its segment (one replica) goes
    let again = reader.get(&names[1]);
    assert_eq!(again.map(|v| checksum(&v)), Ok(checksum(&whole)), "the other replica differs");
    owner.stop();
}

#[test]
fn bad_input_gets_mooncakes_codes_and_writes_nothing_outside_the_parts() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 64 * MIB);
    let client = master.client(0);
    let lens = [3u64, 4, 100, 100, 5, 2];
    let mut arena = Arena::new(&client, &lens, &[5, 0, 3, 1, 4, 2]);
    arena.bytes_mut(0).copy_from_slice(b"abc");
    arena.bytes_mut(1).copy_from_slice(b"defg");
    let put = |store: &Store, key: &str, parts: &[Part]| {
        store.batch_put_from_multi_buffers(&[KeyParts { key, parts }], &replicas(1), false).pop().unwrap()
    };
    let code = |r: Result<(), mooncake::store::StoreError>| r.err().map(|e| e.code);
    let (p0, p1) = (arena.part(0), arena.part(1));
    assert_eq!(put(&client, "seven", &[p0, p1]), Ok(()));
    // A key without parts, an empty key, a part at address 0, nothing but empty parts.
    assert_eq!(code(put(&client, "none", &[])), Some(ErrorCode::InvalidParams));
    assert_eq!(code(put(&client, "", &[p0])), Some(ErrorCode::InvalidParams));
    assert_eq!(code(put(&client, "null", &[Part { addr: 0, len: 3 }])), Some(ErrorCode::InvalidParams));
    assert_eq!(code(put(&client, "empty", &[Part { addr: p0.addr, len: 0 }])), Some(ErrorCode::InvalidParams));
    // An empty part among others is fine (Mooncake: 0).
    assert_eq!(put(&client, "with-empty", &[Part { addr: p0.addr, len: 0 }, p1]), Ok(()));
    // A second put of an existing key keeps the first value (Mooncake: 0).
    assert_eq!(put(&client, "seven", &[p1]), Ok(()));
    assert_eq!(client.get("seven").unwrap(), b"abcdefg");

    let get =
        |parts: &[Part], key: &str| client.batch_get_into_multi_buffers(&[KeyParts { key, parts }]).pop().unwrap();
    let (a, b) = (arena.part(2), arena.part(3));
    let short = |p: Part, len: u64| Part { addr: p.addr, len };
    // Exactly the value's size: 7 bytes read, split as the reader likes.
    assert_eq!(get(&[short(a, 2), short(b, 5)], "seven"), Ok(7));
    assert_eq!(&arena.bytes(2)[..2], b"ab");
    assert_eq!(&arena.bytes(3)[..5], b"cdefg");
    arena.wipe_parts();
    // Parts holding less than the value: INVALID_PARAMS; more: TRANSFER_FAIL (Mooncake's
    // -800); unknown and empty keys: OBJECT_NOT_FOUND. Nothing written anywhere.
    let code64 = |r: Result<u64, mooncake::store::StoreError>| r.err().map(|e| e.code);
    assert_eq!(code64(get(&[short(a, 2), short(b, 4)], "seven")), Some(ErrorCode::InvalidParams));
    assert_eq!(code64(get(&[short(a, 5), short(b, 5)], "seven")), Some(ErrorCode::TransferFail));
    assert_eq!(code64(get(&[short(a, 100)], "seven")), Some(ErrorCode::TransferFail));
    assert_eq!(code64(get(&[short(a, 7)], "unknown")), Some(ErrorCode::ObjectNotFound));
    assert_eq!(code64(get(&[short(a, 7)], "")), Some(ErrorCode::ObjectNotFound));
    assert_eq!(code64(get(&[], "seven")), Some(ErrorCode::InvalidParams));
    assert!(arena.bytes(2).iter().chain(arena.bytes(3)).all(|&b| b == 0), "a refused get wrote into a part");
    assert!(arena.guards_intact());
    // One bad key does not spoil the others of its batch.
    let (e, f) = (arena.part(4), arena.part(5));
    let ok_parts = [short(e, 5), short(f, 2)];
    let bad_parts = [short(a, 3)];
    let got = client.batch_get_into_multi_buffers(&[
        KeyParts { key: "unknown", parts: &bad_parts },
        KeyParts { key: "seven", parts: &ok_parts },
    ]);
    assert_eq!(code64(got[0].clone()), Some(ErrorCode::ObjectNotFound));
    assert_eq!(got[1], Ok(7));
    assert_eq!(arena.bytes(4), b"abcde");
    assert_eq!(arena.bytes(5), b"fg");
    assert!(arena.guards_intact());
    owner.stop();
}

#[test]
fn a_dead_segment_fails_the_put_and_the_get_with_transfer_fail() {
    let master = Master::start(&[]);
    // A segment the master believes in but no engine serves (its owner is gone, and the
    // master has not noticed): mounted by hand, with an object put there without bytes.
    let ghost = MasterClient::connect(&master.addr(), rand::random(), Duration::from_secs(5)).expect("connect");
    let mount = Request::MountSegment {
        client: ghost.client_id(),
        segment: rand::random(),
        name: "127.0.0.1:9".into(),
        base: 1 << 40,
        size: 64 * MIB,
    };
    assert_eq!(ghost.call(&mount), Ok(Response::Done));
    let start = Request::PutStart {
        client: ghost.client_id(),
        key: "doomed".into(),
        size: 7,
        config: replicas(1),
        upsert: false,
    };
    let Ok(Response::Put(slot)) = ghost.call(&start) else { panic!("PutStart") };
    let end = Request::PutEnd { client: ghost.client_id(), key: "doomed".into(), put_id: slot.put_id };
    assert_eq!(ghost.call(&end), Ok(Response::Done));

    let client = master.client(0);
    let lens = [2, 5, 3, 4];
    let mut arena = Arena::new(&client, &lens, &[0, 1, 2, 3]);
    arena.wipe_parts();
    let (d0, d1) = (arena.part(0), arena.part(1));
    let got = client.batch_get_into_multi_buffers(&[KeyParts { key: "doomed", parts: &[d0, d1] }]);
    assert_eq!(got[0].as_ref().err().map(|e| e.code), Some(ErrorCode::TransferFail), "{got:?}");
    assert!(arena.guards_intact());
    arena.bytes_mut(2).copy_from_slice(b"abc");
    arena.bytes_mut(3).copy_from_slice(b"defg");
    let (p2, p3) = (arena.part(2), arena.part(3));
    let put = client.batch_put_from_multi_buffers(&[KeyParts { key: "later", parts: &[p2, p3] }], &replicas(1), false);
    assert_eq!(put[0].as_ref().err().map(|e| e.code), Some(ErrorCode::TransferFail), "{put:?}");
    // The failed put was revoked: the key is not visible, and its space is free again.
    assert_eq!(client.is_exist("later"), Ok(false));
    assert!(arena.guards_intact());
}

// ---- across two hosts (network namespaces) ----

const HOST_A: &str = "198.51.100.1";
const HOST_B: &str = "198.51.100.2";
const MASTER_PORT: u16 = 50_151;
const METADATA_PORT: u16 = 18_080;
const METRICS_PORT: u16 = 19_003;

fn role_is(name: &str) -> bool {
    std::env::var(ROLE_VAR).is_ok_and(|r| r == name)
}

fn host_config(host: &str, segment: u64) -> StoreConfig {
    let mut c = StoreConfig::new(
        host,
        &format!("http://{HOST_A}:{METADATA_PORT}/metadata"),
        &format!("{HOST_A}:{MASTER_PORT}"),
    );
    c.global_segment_size = segment;
    c
}

/// Role: a segment owner on host A. Returns at once in a normal test run.
#[test]
fn role_multi_owner() {
    if role_is("role_multi_owner") {
        let store = Store::setup(&host_config(HOST_A, 256 * MIB)).expect("owner setup");
        emit(&json!({"event": "ready", "pid": std::process::id()}));
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
        store.close().expect("close");
    }
}

/// Role: the writer and reader on host B. Returns at once in a normal test run.
#[test]
fn role_multi_client() {
    if role_is("role_multi_client") {
        let store = Store::setup(&host_config(HOST_B, 0)).expect("client setup");
        emit(&json!({"event": "ready", "pid": std::process::id()}));
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            let outcome = scattered_round_trip(&store, &store, 2, &replicas(1));
            emit(&json!({"reply": "round_trip", "ok": outcome.is_ok(), "error": outcome.err()}));
            line.clear();
        }
        store.close().expect("close");
    }
}

/// `mooncake_master` inside a namespace, killed by PID on drop.
struct NsMaster(Child);

impl Drop for NsMaster {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn scattered_parts_round_trip_across_two_hosts() {
    if std::env::var(ROLE_VAR).is_ok() {
        return;
    }
    let Some(mut lab) = Lab::new() else { return };
    let a = lab.host("a");
    let b = lab.host("b");
    lab.link(&a, &format!("{HOST_A}/24"), &b, &format!("{HOST_B}/24"));
    let master = NsMaster(
        Command::new("ip")
            .args(["netns", "exec", &a, env!("CARGO_BIN_EXE_mooncake_master")])
            .args([
                format!("--rpc_address={HOST_A}"),
                format!("--rpc_port={MASTER_PORT}"),
                format!("--metrics_host={HOST_A}"),
                format!("--metrics_port={METRICS_PORT}"),
                "--enable_http_metadata_server=true".into(),
                format!("--http_metadata_server_host={HOST_A}"),
                format!("--http_metadata_server_port={METADATA_PORT}"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start mooncake_master"),
    );
    // Bounded wait for the master: the owner's setup retries nothing, so poll from inside A.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !Command::new("ip")
        .args(["netns", "exec", &a, "bash", "-c", &format!("exec 3<>/dev/tcp/{HOST_A}/{MASTER_PORT}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(std::time::Instant::now() < deadline, "the master did not listen in namespace A");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut owner = Peer::start(&a, "role_multi_owner", &[("MC_TCP_BIND_ADDRESS", HOST_A.into())]);
    let mut client = Peer::start(&b, "role_multi_client", &[("MC_TCP_BIND_ADDRESS", HOST_B.into())]);
    let r = client.call(&json!({"cmd": "round_trip"}), Duration::from_secs(120));
    assert_eq!(r["error"], serde_json::Value::Null);
    client.finish(Duration::from_secs(30));
    owner.finish(Duration::from_secs(30));
    drop(master);
}

// ---- the C entry points ----

#[test]
fn the_c_entry_points_take_flat_parts_and_check_every_pointer() {
    use mooncake::ffi::store::{
        mooncake_store_batch_get_into_multi_buffers, mooncake_store_batch_put_from_multi_buffers,
        mooncake_store_create, mooncake_store_destroy, mooncake_store_register_buffer, mooncake_store_setup,
    };
    use std::ffi::{CString, c_char, c_int, c_void};
    use std::ptr::{null, null_mut};

    let master = Master::start(&[]);
    let owner = Owner::start(&master, 64 * MIB);
    let store = mooncake_store_create();
    let (host, meta, addr) = (
        CString::new("127.0.0.1").unwrap(),
        CString::new(master.metadata()).unwrap(),
        CString::new(master.addr()).unwrap(),
    );
    // SAFETY: valid C strings for the call.
    let rc = unsafe {
        mooncake_store_setup(store, host.as_ptr(), meta.as_ptr(), 0, 16 * MIB, null(), null(), addr.as_ptr())
    };
    assert_eq!(rc, 0);
    let mut mem = vec![GUARD_BYTE; 4096];
    // `mem` outlives every call below.
    assert_eq!(mooncake_store_register_buffer(store, mem.as_mut_ptr() as *mut c_void, mem.len()), 0);
    mem[100..103].copy_from_slice(b"abc");
    mem[200..204].copy_from_slice(b"defg");
    mem[300..302].copy_from_slice(b"hi");
    let base = mem.as_mut_ptr();
    let (k1, k2) = (CString::new("c1").unwrap(), CString::new("c2").unwrap());
    let keys: [*const c_char; 2] = [k1.as_ptr(), k2.as_ptr()];
    // c1 = "abc" + "defg", c2 = "hi": flat parts, two for c1 and one for c2.
    let counts = [2usize, 1];
    // SAFETY: offsets inside `mem`.
    let bufs: [*mut c_void; 3] = unsafe { [base.add(100), base.add(200), base.add(300)] }.map(|p| p as *mut c_void);
    let sizes = [3usize, 4, 2];
    let mut codes: [c_int; 2] = [1, 1];
    // SAFETY: every array holds what `counts` says; `codes` holds two.
    let rc = unsafe {
        mooncake_store_batch_put_from_multi_buffers(
            store,
            keys.as_ptr(),
            2,
            counts.as_ptr(),
            bufs.as_ptr(),
            sizes.as_ptr(),
            null(),
            -1,
            0,
            codes.as_mut_ptr(),
        )
    };
    assert_eq!((rc, codes), (0, [0, 0]));
    // Read back scattered the other way round: c1 as 5 + 2 bytes, c2 as 1 + 1.
    let counts = [2usize, 2];
    // SAFETY: offsets inside `mem`.
    let bufs: [*mut c_void; 4] =
        unsafe { [base.add(1000), base.add(1100), base.add(1200), base.add(1300)] }.map(|p| p as *mut c_void);
    let sizes = [5usize, 2, 1, 1];
    let mut got: [i64; 2] = [0, 0];
    // SAFETY: as above.
    let rc = unsafe {
        mooncake_store_batch_get_into_multi_buffers(
            store,
            keys.as_ptr(),
            2,
            counts.as_ptr(),
            bufs.as_ptr(),
            sizes.as_ptr(),
            0,
            got.as_mut_ptr(),
        )
    };
    assert_eq!((rc, got), (0, [7, 2]));
    assert_eq!(&mem[1000..1006], b"abcde\xa5");
    assert_eq!(&mem[1100..1103], b"fg\xa5");
    assert_eq!((mem[1200], mem[1201], mem[1300], mem[1301]), (b'h', GUARD_BYTE, b'i', GUARD_BYTE));
    // Pointers: NULL part counts, buffers or results with work to do are -600, nothing written.
    let invalid = -600;
    let mut untouched: [i64; 2] = [9, 9];
    // SAFETY: the NULL arguments are the point; the rest is valid.
    let rcs = unsafe {
        [
            mooncake_store_batch_get_into_multi_buffers(
                store,
                keys.as_ptr(),
                2,
                null(),
                bufs.as_ptr(),
                sizes.as_ptr(),
                0,
                untouched.as_mut_ptr(),
            ),
            mooncake_store_batch_get_into_multi_buffers(
                store,
                keys.as_ptr(),
                2,
                counts.as_ptr(),
                null(),
                sizes.as_ptr(),
                0,
                untouched.as_mut_ptr(),
            ),
            mooncake_store_batch_get_into_multi_buffers(
                store,
                null(),
                2,
                counts.as_ptr(),
                bufs.as_ptr(),
                sizes.as_ptr(),
                0,
                untouched.as_mut_ptr(),
            ),
            mooncake_store_batch_get_into_multi_buffers(
                store,
                keys.as_ptr(),
                2,
                counts.as_ptr(),
                bufs.as_ptr(),
                sizes.as_ptr(),
                0,
                null_mut(),
            ),
            mooncake_store_batch_get_into_multi_buffers(
                null_mut(),
                keys.as_ptr(),
                2,
                counts.as_ptr(),
                bufs.as_ptr(),
                sizes.as_ptr(),
                0,
                untouched.as_mut_ptr(),
            ),
        ]
    };
    assert_eq!(rcs, [invalid; 5]);
    assert_eq!(untouched, [9, 9]);
    let mut codes: [c_int; 1] = [9];
    // SAFETY: NULL buffers with a part to put; the rest valid.
    let rc = unsafe {
        mooncake_store_batch_put_from_multi_buffers(
            store,
            keys.as_ptr(),
            1,
            [1usize].as_ptr(),
            null(),
            [3usize].as_ptr(),
            null(),
            -1,
            0,
            codes.as_mut_ptr(),
        )
    };
    assert_eq!((rc, codes), (invalid, [9]));
    mooncake_store_destroy(store);
    owner.stop();
}
