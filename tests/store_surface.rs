//! Mooncake's store surface beyond put/get against a real `mooncake_master`, with a segment
//! owner in another process: batch removal, replica descriptors, put and get sessions, puts
//! with a metadata prefix, and set-up on a shared Transfer Engine (C entry points), with the
//! bad input of each (unknown keys, empty lists, mismatched lengths, NULL pointers).

mod support;

use std::ffi::{CString, c_int, c_void};
use std::ptr::{null, null_mut};

use mooncake::ffi::engine::{createTransferEngine, destroyTransferEngine, registerLocalMemory};
use mooncake::ffi::store::*;
use mooncake::store::{ErrorCode, ReplicaConfig};
use support::store::{Master, Owner, checksum, owner_main};

#[test]
#[ignore = "runs only as a child of the other tests (support::store::Owner)"]
fn owner_process() {
    owner_main();
}

const MIB: u64 = 1 << 20;

fn replicas(n: u32) -> ReplicaConfig {
    ReplicaConfig { replica_num: n, ..Default::default() }
}

fn code<T>(r: &Result<T, mooncake::store::StoreError>) -> Option<ErrorCode> {
    r.as_ref().err().map(|e| e.code)
}

#[test]
fn batch_remove_answers_per_key() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 64 * MIB);
    let client = master.client(0);
    for k in ["r1", "r2", "leased"] {
        client.put_parts(k, &[b"value"], &replicas(1), false).unwrap();
    }
    assert_eq!(client.get("leased").unwrap(), b"value"); // a read lease
    let out = client.batch_remove(&["r1", "missing", "", "r2", "leased"], false);
    let codes: Vec<_> = out.iter().map(code).collect();
    assert_eq!(
        codes,
        [None, Some(ErrorCode::ObjectNotFound), Some(ErrorCode::InvalidParams), None, Some(ErrorCode::ObjectHasLease)]
    );
    assert!(client.batch_remove(&["leased"], true)[0].is_ok());
    assert!(client.batch_remove(&[], false).is_empty());
    assert!(!client.is_exist("r1").unwrap() && !client.is_exist("leased").unwrap());
    owner.stop();
}

#[test]
fn replica_descriptors_name_every_replica_with_its_bytes() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 64 * MIB);
    let client = master.client(64 * MIB);
    let value = support::pattern(100_000, 3);
    client.put_parts("two", &[&value], &replicas(2), false).unwrap();
    let out = client.batch_replica_desc(&["two", "missing", ""]);
    let descs = out[0].as_ref().unwrap();
    assert_eq!(descs.len(), 2);
    assert!(descs.iter().all(|d| d.size == 100_000 && d.status == 3 && d.buffer_address != 0));
    assert_ne!(descs[0].transport_endpoint, descs[1].transport_endpoint);
    let local = descs.iter().find(|d| d.transport_endpoint == client.hostname()).expect("a replica in this process");
    // SAFETY: the replica lies in this process's mounted segment, and the read lease that came
    // with the descriptor keeps it from being freed or reused while it is read.
    let bytes = unsafe { std::slice::from_raw_parts(local.buffer_address as *const u8, 100_000) };
    assert_eq!(checksum(bytes), checksum(&value));
    assert_eq!(code(&out[1]), Some(ErrorCode::ObjectNotFound));
    assert_eq!(code(&out[2]), Some(ErrorCode::InvalidParams));
    assert!(client.batch_replica_desc(&[]).is_empty());
    drop(client);
    owner.stop();
}

#[test]
fn put_sessions_reserve_end_and_revoke_and_get_sessions_cache_replicas() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 64 * MIB);
    let client = master.client(0);
    client.put_parts("exists", &[b"x"], &replicas(1), false).unwrap();
    let out = client.batch_put_session_start(&["s1", "s2", "exists", "zero"], &[4096, 8192, 10, 0], &replicas(1));
    let codes: Vec<_> = out.iter().map(code).collect();
    assert_eq!(codes, [None, None, Some(ErrorCode::ObjectAlreadyExists), Some(ErrorCode::InvalidParams)]);
    // A second start of an open session, and mismatched lengths, are INVALID_PARAMS.
    assert_eq!(
        code(&client.batch_put_session_start(&["s1"], &[4096], &replicas(1))[0]),
        Some(ErrorCode::InvalidParams)
    );
    let mismatched = client.batch_put_session_start(&["a", "b"], &[1], &replicas(1));
    assert!(mismatched.iter().all(|r| code(r) == Some(ErrorCode::InvalidParams)));
    assert!(!client.is_exist("s1").unwrap(), "a reserved object is not visible before its end");
    let ended = client.batch_put_session_finish(&["s1", "nosession"], false);
    assert_eq!(ended.iter().map(code).collect::<Vec<_>>(), [None, Some(ErrorCode::InvalidParams)]);
    assert_eq!(client.get_size("s1").unwrap(), 4096);
    assert!(client.batch_put_session_finish(&["s2"], true)[0].is_ok());
    assert!(!client.is_exist("s2").unwrap());
    assert_eq!(code(&client.batch_put_session_finish(&["s2"], true)[0]), Some(ErrorCode::InvalidParams));
    // Get sessions.
    let started = client.batch_get_session_start(&["s1", "missing"]);
    assert_eq!(started.iter().map(code).collect::<Vec<_>>(), [None, Some(ErrorCode::ObjectNotFound)]);
    assert!(client.batch_get_session_start(&[]).is_empty());
    assert!(client.batch_get_session_end(&["s1", "missing"]).is_ok());
    owner.stop();
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

#[test]
fn a_store_shares_an_engine_and_leaves_it_running_after_close() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 64 * MIB);
    let meta = c(&master.metadata());
    // SAFETY: valid NUL-terminated strings for the call.
    let engine = unsafe { createTransferEngine(meta.as_ptr(), c("127.0.0.1").as_ptr(), null(), 0, 1) };
    assert!(!engine.is_null());
    let store = mooncake_store_create();
    let addr = c(&master.addr());
    // SAFETY: live handles, NUL-terminated strings.
    let rc = unsafe {
        mooncake_store_setup_with_engine(store, engine, null(), meta.as_ptr(), 16 * MIB, 16 * MIB, addr.as_ptr())
    };
    assert_eq!(rc, 0);
    // A handle that is no engine is INVALID_PARAMS (-600).
    let other = mooncake_store_create();
    let mut bogus = 0u64;
    // SAFETY: `bogus` is not an engine handle: the call must refuse it without using it.
    let rc = unsafe {
        mooncake_store_setup_with_engine(
            other,
            (&raw mut bogus).cast(),
            null(),
            meta.as_ptr(),
            0,
            16 * MIB,
            addr.as_ptr(),
        )
    };
    assert_eq!(rc, -600);
    mooncake_store_destroy(other);
    // put_from_with_metadata: the object is the metadata, then the data (unregistered memory).
    let data = support::pattern(300_000, 9);
    let meta_bytes = b"0123456789";
    let key = c("with-meta");
    // SAFETY: both buffers are readable for their sizes; NULL config is the default.
    let rc = unsafe {
        mooncake_store_put_from_with_metadata(
            store,
            key.as_ptr(),
            data.as_ptr().cast(),
            meta_bytes.as_ptr().cast(),
            data.len(),
            meta_bytes.len(),
            null(),
        )
    };
    assert_eq!(rc, 0);
    let reader = master.client(0);
    let back = reader.get("with-meta").unwrap();
    assert_eq!(&back[..10], meta_bytes);
    assert_eq!(checksum(&back[10..]), checksum(&data));
    // SAFETY: a NULL data pointer with a size is refused before any read.
    let rc = unsafe {
        mooncake_store_put_from_with_metadata(store, key.as_ptr(), null(), meta_bytes.as_ptr().cast(), 5, 10, null())
    };
    assert_eq!(rc, -600);
    // Batch calls through C: removal, descriptors with a too small array, sessions.
    let keys = [c("with-meta"), c("missing")];
    let mut ptrs: Vec<*const std::ffi::c_char> = keys.iter().map(|k| k.as_ptr()).collect();
    let mut counts = [0 as c_int; 2];
    // SAFETY: two keys, two counts, no descriptor array (capacity 0).
    let total = unsafe {
        mooncake_store_batch_get_replica_desc(store, ptrs.as_mut_ptr(), 2, null_mut(), 0, counts.as_mut_ptr())
    };
    assert_eq!((total, counts), (1, [1, -704]));
    let mut results = [1 as c_int; 2];
    // SAFETY: two keys and two results.
    assert_eq!(unsafe { mooncake_store_batch_remove(store, ptrs.as_mut_ptr(), 2, 1, results.as_mut_ptr()) }, 0);
    assert_eq!(results, [0, -704]);
    // SAFETY: NULL results are refused.
    assert_eq!(unsafe { mooncake_store_batch_remove(store, ptrs.as_mut_ptr(), 2, 0, null_mut()) }, -600);
    // The store's close leaves the engine it shared running.
    // SAFETY: a live store handle, destroyed once.
    mooncake_store_destroy(store);
    let mut buf = vec![0u8; 4096];
    // SAFETY: the engine is live; `buf` outlives its registration (the engine is destroyed below).
    let rc = unsafe { registerLocalMemory(engine, buf.as_mut_ptr().cast::<c_void>(), 4096, c("*").as_ptr(), 0) };
    assert_eq!(rc, 0, "the shared engine no longer works after the store closed");
    // SAFETY: a live engine handle, destroyed once.
    destroyTransferEngine(engine);
    drop(reader);
    owner.stop();
}
