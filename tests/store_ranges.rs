//! Ranged multi-buffer calls (`batch_put_from_multi_buffer_ranges`,
//! `batch_get_into_multi_buffer_ranges`) on put and get sessions, against a real
//! `mooncake_master` with the replica in another process: an object of 1 B to 16 MiB pieces
//! written out of order from unregistered memory, invisible until its session ends, read back
//! by ranges into guarded memory; Mooncake's codes for calls without a session, ranges past the
//! end, no parts, and a get session whose lease ran out.

mod support;

use std::time::Duration;

use mooncake::store::{ErrorCode, KeyRanges, RangePart, ReplicaConfig, Store};
use support::store::{Master, Owner, checksum, owner_main};

#[test]
#[ignore = "runs only as a child of the other tests (support::store::Owner)"]
fn owner_process() {
    owner_main();
}

const MIB: u64 = 1 << 20;
const GUARD: usize = 4096;
const GUARD_BYTE: u8 = 0x5A;

fn one() -> ReplicaConfig {
    ReplicaConfig { replica_num: 1, ..Default::default() }
}

fn put(store: &Store, key: &str, parts: &[RangePart]) -> Result<u64, ErrorCode> {
    store.batch_put_from_multi_buffer_ranges(&[KeyRanges { key, parts }]).pop().unwrap().map_err(|e| e.code)
}

fn get(store: &Store, key: &str, parts: &[RangePart]) -> Result<u64, ErrorCode> {
    store.batch_get_into_multi_buffer_ranges(&[KeyRanges { key, parts }]).pop().unwrap().map_err(|e| e.code)
}

#[test]
fn an_object_written_and_read_by_ranges_between_processes() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 256 * MIB);
    let client = master.client(0);
    // Pieces of 1 B to 16 MiB, in this order in the object.
    let pieces: [u64; 6] = [1, 4095, 65_537, MIB + 3, 16 * MIB, 7];
    let size: u64 = pieces.iter().sum();
    let value = support::pattern(size as usize, 9); // a plain Vec: never registered
    let key = "ranged";
    assert_eq!(
        put(&client, key, &[RangePart { addr: value.as_ptr() as u64, len: 4, offset: 0 }]),
        Err(ErrorCode::InvalidParams),
        "no session yet"
    );
    let started = client.batch_put_session_start(&[key], &[size], &one());
    assert!(started.iter().all(Result::is_ok), "{started:?}");
    let offsets: Vec<u64> = pieces
        .iter()
        .scan(0, |at, &l| {
            let o = *at;
            *at += l;
            Some(o)
        })
        .collect();
    let part = |i: usize| RangePart { addr: value.as_ptr() as u64 + offsets[i], len: pieces[i], offset: offsets[i] };
    // Two calls, each out of order.
    assert_eq!(put(&client, key, &[part(4), part(1), part(0)]), Ok(pieces[4] + pieces[1] + pieces[0]));
    assert_eq!(put(&client, key, &[part(5), part(3), part(2)]), Ok(pieces[5] + pieces[3] + pieces[2]));
    // Bad ranges: past the end, no parts (INVALID_REPLICA, as Mooncake's), an empty part at the end.
    let past = RangePart { addr: value.as_ptr() as u64, len: 2, offset: size - 1 };
    assert_eq!(put(&client, key, &[past]), Err(ErrorCode::InvalidParams));
    assert_eq!(put(&client, key, &[]), Err(ErrorCode::InvalidReplica));
    assert_eq!(put(&client, key, &[RangePart { addr: value.as_ptr() as u64, len: 0, offset: size }]), Ok(0));
    assert_eq!(
        put(&client, key, &[RangePart { addr: value.as_ptr() as u64, len: 0, offset: size + 1 }]),
        Err(ErrorCode::InvalidParams)
    );
    assert!(!client.is_exist(key).unwrap(), "visible before its session ended");
    assert!(client.batch_put_session_finish(&[key], false).iter().all(Result::is_ok));
    assert_eq!(put(&client, key, &[part(0)]), Err(ErrorCode::InvalidParams), "the session ended");
    assert_eq!(checksum(&client.get(key).unwrap()), checksum(&value), "the object is not the pieces in place");

    // Ranges back, from another client, into guarded unregistered memory.
    let reader = master.client(0);
    assert_eq!(
        get(&reader, key, &[RangePart { addr: 1, len: 0, offset: 0 }]),
        Err(ErrorCode::InvalidParams),
        "no session"
    );
    assert!(reader.batch_get_session_start(&[key]).iter().all(Result::is_ok));
    let want: [(u64, u64); 4] = [(size - 5, 5), (0, 1), (MIB, 16 * MIB), (12_345, 70_000)];
    let room: usize = want.iter().map(|&(_, l)| l as usize + GUARD).sum::<usize>() + GUARD;
    let mut out = vec![GUARD_BYTE; room];
    let mut at = GUARD;
    let mut parts = Vec::new();
    for &(offset, len) in &want {
        parts.push(RangePart { addr: out.as_mut_ptr() as u64 + at as u64, len, offset });
        at += len as usize + GUARD;
    }
    let total: u64 = want.iter().map(|&(_, l)| l).sum();
    assert_eq!(get(&reader, key, &parts), Ok(total));
    let mut at = GUARD;
    let mut inside = vec![false; room];
    for &(offset, len) in &want {
        let (o, l) = (offset as usize, len as usize);
        assert_eq!(checksum(&out[at..at + l]), checksum(&value[o..o + l]), "range {offset}+{len}");
        inside[at..at + l].iter_mut().for_each(|b| *b = true);
        at += l + GUARD;
    }
    assert!(out.iter().zip(&inside).all(|(&b, &i)| i || b == GUARD_BYTE), "written outside the ranges");
    assert_eq!(
        get(&reader, key, &[RangePart { addr: out.as_ptr() as u64, len: 6, offset: size - 5 }]),
        Err(ErrorCode::InvalidParams)
    );
    assert_eq!(get(&reader, key, &[]), Ok(0));
    reader.batch_get_session_end(&[key]).unwrap();
    assert_eq!(get(&reader, key, &[parts[1]]), Err(ErrorCode::InvalidParams), "the session ended");
    reader.close().unwrap();
    client.close().unwrap();
    owner.stop();
}

#[test]
fn a_get_session_whose_lease_ran_out_answers_lease_expired_and_ends() {
    let master = Master::start(&["--default_kv_lease_ttl=300"]);
    let client = master.client(16 * MIB);
    let value = support::pattern(4096, 3);
    client.put_from("leased", value.as_ptr() as u64, 4096, &one(), false).unwrap();
    assert!(client.batch_get_session_start(&["leased"]).iter().all(Result::is_ok));
    let mut out = vec![0u8; 16];
    let part = RangePart { addr: out.as_mut_ptr() as u64, len: 16, offset: 100 };
    assert_eq!(get(&client, "leased", &[part]), Ok(16));
    assert_eq!(out, value[100..116]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(&client, "leased", &[part]), Err(ErrorCode::LeaseExpired));
    assert_eq!(get(&client, "leased", &[part]), Err(ErrorCode::InvalidParams), "an expired session ends");
    client.close().unwrap();
}

#[test]
fn the_c_entry_points_take_flat_ranges_and_check_every_pointer() {
    use mooncake::ffi::store::{
        mooncake_store_batch_get_into_multi_buffer_ranges, mooncake_store_batch_put_from_multi_buffer_ranges,
        mooncake_store_create, mooncake_store_destroy, mooncake_store_setup,
    };
    use std::ffi::{CString, c_char, c_void};
    use std::ptr::{null, null_mut};

    let master = Master::start(&[]);
    let store = mooncake_store_create();
    let (host, meta, addr) = (
        CString::new("127.0.0.1").unwrap(),
        CString::new(master.metadata()).unwrap(),
        CString::new(master.addr()).unwrap(),
    );
    // SAFETY: valid C strings for the call.
    let rc = unsafe {
        mooncake_store_setup(store, host.as_ptr(), meta.as_ptr(), 16 * MIB, 16 * MIB, null(), null(), addr.as_ptr())
    };
    assert_eq!(rc, 0);
    // A session through the Rust handle is not reachable here: without one every key is -600,
    // and every NULL array with entries to read is refused before anything is written.
    let mut mem = *b"abcdefgh";
    let k = CString::new("c1").unwrap();
    let keys: [*const c_char; 1] = [k.as_ptr()];
    let counts = [1usize];
    let bufs: [*mut c_void; 1] = [mem.as_mut_ptr().cast()];
    let (sizes, offsets) = ([4usize], [0usize]);
    let mut out = [1i64];
    type Call = unsafe extern "C" fn(
        mooncake::ffi::store::mooncake_store_t,
        *const *const c_char,
        usize,
        *const usize,
        *const *mut c_void,
        *const usize,
        *const usize,
        *mut i64,
    ) -> std::ffi::c_int;
    let calls: [Call; 2] =
        [mooncake_store_batch_put_from_multi_buffer_ranges, mooncake_store_batch_get_into_multi_buffer_ranges];
    for call in calls {
        // SAFETY: every array holds one entry, as `counts` says.
        let rc = unsafe {
            call(
                store,
                keys.as_ptr(),
                1,
                counts.as_ptr(),
                bufs.as_ptr(),
                sizes.as_ptr(),
                offsets.as_ptr(),
                out.as_mut_ptr(),
            )
        };
        assert_eq!((rc, out[0]), (0, -600), "no session: INVALID_PARAMS for the key");
        for null_arg in 0..5 {
            out[0] = 1;
            let k = if null_arg == 0 { null() } else { keys.as_ptr() };
            let c = if null_arg == 1 { null() } else { counts.as_ptr() };
            let b = if null_arg == 2 { null() } else { bufs.as_ptr() };
            let o = if null_arg == 3 { null() } else { offsets.as_ptr() };
            let r = if null_arg == 4 { null_mut() } else { out.as_mut_ptr() };
            // SAFETY: NULL or arrays of one entry; the function checks each pointer.
            let rc = unsafe { call(store, k, 1, c, b, sizes.as_ptr(), o, r) };
            assert!(rc < 0, "NULL argument {null_arg} accepted");
            assert_eq!(out[0], 1, "results written for a refused call");
        }
        // SAFETY: a NULL store is refused.
        let rc = unsafe {
            call(
                null_mut(),
                keys.as_ptr(),
                1,
                counts.as_ptr(),
                bufs.as_ptr(),
                sizes.as_ptr(),
                offsets.as_ptr(),
                out.as_mut_ptr(),
            )
        };
        assert!(rc < 0);
    }
    assert_eq!(&mem, b"abcdefgh");
    mooncake_store_destroy(store);
}

#[test]
fn close_after_a_get_session_ended_does_not_wait_out_its_read_lease() {
    // The master's default read lease is 10 s: ending the session tells the master the reads
    // are done, so that this client's segment (which holds the object) unmounts at once.
    let master = Master::start(&[]);
    let client = master.client(16 * MIB);
    let value = support::pattern(4096, 5);
    client.put_from("closing", value.as_ptr() as u64, 4096, &one(), false).unwrap();
    assert!(client.batch_get_session_start(&["closing"]).iter().all(Result::is_ok));
    let mut out = vec![0u8; 8];
    assert_eq!(get(&client, "closing", &[RangePart { addr: out.as_mut_ptr() as u64, len: 8, offset: 8 }]), Ok(8));
    assert_eq!(out, value[8..16]);
    client.batch_get_session_end(&["closing"]).unwrap();
    let started = std::time::Instant::now();
    client.close().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "close took {took:?}");
}
