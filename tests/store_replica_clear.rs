//! `batch_replica_clear` (Mooncake's `BatchReplicaClear`) against a real `mooncake_master`,
//! with a segment owner in another process: whole objects and one segment's replicas, and the
//! keys Mooncake skips (empty, unknown, repeated, another client's, leased, still being
//! written, no replica on the segment, an unknown segment), through Rust and the C entry point.

mod support;

use std::ffi::{CString, c_char, c_int};
use std::ptr::{null, null_mut};
use std::time::Duration;

use mooncake::ffi::store::*;
use mooncake::store::ReplicaConfig;
use support::store::{Master, Owner, owner_main};

#[test]
#[ignore = "runs only as a child of the other tests (support::store::Owner)"]
fn owner_process() {
    owner_main();
}

const MIB: u64 = 1 << 20;
/// The master's read lease in these tests, milliseconds.
const LEASE_MS: u64 = 300;

fn replicas(n: u32) -> ReplicaConfig {
    ReplicaConfig { replica_num: n, ..Default::default() }
}

fn wait_lease() {
    std::thread::sleep(Duration::from_millis(LEASE_MS + 200));
}

#[test]
fn replica_clear_drops_own_unleased_objects_and_skips_the_rest() {
    let lease = format!("--default_kv_lease_ttl={LEASE_MS}");
    let master = Master::start(&[&lease]);
    let owner = Owner::start(&master, 64 * MIB);
    let client = master.client(32 * MIB);
    let other = master.client(0);
    for k in ["c1", "c2", "c3", "leased"] {
        client.put_parts(k, &[b"value"], &replicas(2), false).unwrap();
    }
    other.put_parts("others", &[b"value"], &replicas(1), false).unwrap();
    // As Mooncake's: a fresh put holds no lease, so it can be cleared at once.
    client.put_parts("fresh", &[b"value"], &replicas(1), false).unwrap();
    assert_eq!(client.batch_replica_clear(&["fresh"], "").unwrap(), ["fresh"]);
    assert!(client.batch_replica_clear(&[], "").unwrap().is_empty());
    assert_eq!(client.get("leased").unwrap(), b"value"); // a read lease
    // A put still in progress (a put session) is skipped.
    assert!(client.batch_put_session_start(&["writing"], &[5], &replicas(1)).iter().all(|r| r.is_ok()));
    let cleared = client.batch_replica_clear(&["c1", "missing", "", "others", "leased", "writing", "c1"], "").unwrap();
    assert_eq!(cleared, ["c1"]);
    assert!(!client.is_exist("c1").unwrap());
    assert!(other.is_exist("others").unwrap());
    assert_eq!(client.get("leased").unwrap(), b"value");
    assert!(client.batch_put_session_finish(&["writing"], true)[0].is_ok());
    // By segment name: an unknown one clears nothing; this client's drops only its replica.
    let me = client.hostname();
    assert!(client.batch_replica_clear(&["c2"], "nonexistent_host:99999").unwrap().is_empty());
    wait_lease(); // the leases of is_exist and get run out
    assert_eq!(client.batch_replica_clear(&["c2"], &me).unwrap(), ["c2"]);
    let descs = client.batch_replica_desc(&["c2"]).pop().unwrap().unwrap();
    assert_eq!(descs.len(), 1);
    assert_eq!(other.get("c2").unwrap(), b"value");
    wait_lease();
    // No replica left there: skipped; the owner's segment holds the last one, the object goes.
    assert!(client.batch_replica_clear(&["c2"], &me).unwrap().is_empty());
    assert_eq!(client.batch_replica_clear(&["c2"], &owner.hostname).unwrap(), ["c2"]);
    assert!(!client.is_exist("c2").unwrap());
    // Another client cannot clear this client's objects.
    assert!(other.batch_replica_clear(&["c3", "leased"], "").unwrap().is_empty());
    assert_eq!(client.batch_replica_clear(&["leased", "c3"], "").unwrap(), ["leased", "c3"]);
    assert!(!client.is_exist("leased").unwrap() && !client.is_exist("c3").unwrap());
    drop(other);
    drop(client);
    owner.stop();
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

#[test]
fn replica_clear_through_c_flags_each_key_and_refuses_null() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 64 * MIB);
    let (host, meta, addr, proto) = (c("127.0.0.1"), c(&master.metadata()), c(&master.addr()), c("tcp"));
    let store = mooncake_store_create();
    // SAFETY: a fresh handle and NUL-terminated strings that outlive the call.
    let rc = unsafe {
        mooncake_store_setup(store, host.as_ptr(), meta.as_ptr(), 0, 16 * MIB, proto.as_ptr(), null(), addr.as_ptr())
    };
    assert_eq!(rc, 0);
    let writer = master.client(0);
    writer.put_parts("theirs", &[b"value"], &replicas(1), false).unwrap();
    let mine = c("mine");
    let value = b"value";
    // SAFETY: the key and value are readable; NULL config is the default.
    let rc = unsafe { mooncake_store_put(store, mine.as_ptr(), value.as_ptr().cast(), value.len(), null()) };
    assert_eq!(rc, 0);
    let keys = [c("mine"), c("missing"), c("theirs"), c("mine")];
    let mut ptrs: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
    let mut flags = [7 as c_int; 4];
    // SAFETY: four keys and four flags; NULL segment name is "".
    let n = unsafe { mooncake_store_batch_replica_clear(store, ptrs.as_mut_ptr(), 4, null(), flags.as_mut_ptr()) };
    assert_eq!((n, flags), (1, [1, 0, 0, 0]));
    assert!(writer.is_exist("theirs").unwrap() && !writer.is_exist("mine").unwrap());
    // SAFETY: each call passes one NULL pointer where a value is required, refused before use.
    unsafe {
        assert_eq!(mooncake_store_batch_replica_clear(store, ptrs.as_mut_ptr(), 4, null(), null_mut()), -600);
        assert_eq!(mooncake_store_batch_replica_clear(store, null_mut(), 4, null(), flags.as_mut_ptr()), -600);
        assert_eq!(
            mooncake_store_batch_replica_clear(null_mut(), ptrs.as_mut_ptr(), 4, null(), flags.as_mut_ptr()),
            -600
        );
    }
    // SAFETY: a live store handle, destroyed once.
    mooncake_store_destroy(store);
    drop(writer);
    owner.stop();
}
