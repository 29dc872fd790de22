//! The store client against a real `mooncake_master`: values of every size with checksums,
//! the zero-copy and batch forms, queries, removals and bad input. Owners of segments run in
//! other processes (`support::store::Owner`), so bytes cross process boundaries as in a
//! deployment.

mod support;

use mooncake::store::{ByteRange, ErrorCode, KeyBuffer, ReplicaConfig, Store};
use support::store::{Master, Owner, checksum, owner_main};

#[test]
#[ignore = "runs only as a child of the other tests (support::store::Owner)"]
fn owner_process() {
    owner_main();
}

const MIB: u64 = 1 << 20;

fn one() -> ReplicaConfig {
    ReplicaConfig { replica_num: 1, ..Default::default() }
}

/// Registered memory for the zero-copy calls (leaked: the store keeps pointers to it).
fn registered(store: &Store, len: usize) -> &'static mut [u8] {
    let buf: &'static mut [u8] = vec![0u8; len].leak();
    store.register_buffer(buf.as_ptr() as u64, len as u64).expect("register");
    buf
}

#[test]
fn values_from_one_byte_to_64_mib_survive_a_round_trip_through_another_process() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 256 * MIB);
    let client = master.client(0);
    for (i, size) in [1usize, 7, 4096, 65_536, 1 << 20, 16 << 20, 64 << 20].into_iter().enumerate() {
        let value = support::pattern(size, i as u64);
        let key = format!("size-{size}");
        client.put_parts(&key, &[&value], &one(), false).unwrap_or_else(|e| panic!("put {size}: {e}"));
        let back = client.get(&key).unwrap_or_else(|e| panic!("get {size}: {e}"));
        assert_eq!(back.len(), size);
        assert_eq!(checksum(&back), checksum(&value), "{size} bytes came back different");
        assert_eq!(client.get_size(&key).unwrap(), size as u64);
        assert!(client.is_exist(&key).unwrap());
    }
    assert_eq!(client.remove_all(true).unwrap(), 7);
    owner.stop();
}

#[test]
fn zero_copy_and_batches_move_the_right_bytes_locally_and_remotely() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 128 * MIB);
    // A client with its own segment: some replicas land in this process (memcpy path).
    let client = master.client(64 * MIB);
    let src = registered(&client, 8 * MIB as usize);
    support::fill(src, 5);
    let dst = registered(&client, 8 * MIB as usize);
    let n = 16;
    let piece = (src.len() / n) as u64;
    let keys: Vec<String> = (0..n).map(|i| format!("zc-{i}")).collect();
    let items: Vec<KeyBuffer<'_>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| KeyBuffer { key: k, addr: src.as_ptr() as u64 + i as u64 * piece, len: piece })
        .collect();
    for r in client.batch_put_from(&items, &one(), false) {
        r.unwrap();
    }
    let back: Vec<KeyBuffer<'_>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| KeyBuffer { key: k, addr: dst.as_ptr() as u64 + i as u64 * piece, len: piece })
        .collect();
    for r in client.batch_get_into(&back) {
        assert_eq!(r.unwrap(), piece);
    }
    assert_eq!(checksum(src), checksum(dst));

    // put_batch / get_batch of plain values, with a miss in the middle.
    let values: Vec<Vec<u8>> = (0..8).map(|i| support::pattern(1000 + i * 3000, 40 + i as u64)).collect();
    let pairs: Vec<(String, &[u8])> =
        values.iter().enumerate().map(|(i, v)| (format!("b-{i}"), v.as_slice())).collect();
    let refs: Vec<(&str, &[u8])> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    for r in client.put_batch(&refs, &one(), false) {
        r.unwrap();
    }
    let got = client.get_batch(&["b-0", "missing", "b-7"]);
    assert_eq!(got[0].as_ref().unwrap(), &values[0]);
    assert_eq!(got[1].as_ref().unwrap_err().code, ErrorCode::ObjectNotFound);
    assert_eq!(got[2].as_ref().unwrap(), &values[7]);

    // get_into_ranges: two ranges and one past the end.
    dst.fill(0);
    let ranges = [
        ByteRange { dst: 0, src: 10, len: 100 },
        ByteRange { dst: 200, src: 0, len: 10 },
        ByteRange { dst: 0, src: piece - 5, len: 10 },
    ];
    let out = client.get_into_ranges(dst.as_ptr() as u64, "zc-1", &ranges).unwrap();
    assert_eq!(out[0].as_ref().unwrap(), &100);
    assert_eq!(out[1].as_ref().unwrap(), &10);
    assert_eq!(out[2].as_ref().unwrap_err().code, ErrorCode::InvalidParams);
    let base = piece as usize;
    assert_eq!(&dst[..100], &src[base + 10..base + 110]);
    assert_eq!(&dst[200..210], &src[base..base + 10]);
    owner.stop();
}

#[test]
fn a_plain_put_keeps_the_first_value_and_upsert_replaces_it() {
    let master = Master::start(&[]);
    let client = master.client(32 * MIB);
    client.put_parts("k", &[b"first"], &one(), false).unwrap();
    client.put_parts("k", &[b"second"], &one(), false).unwrap();
    assert_eq!(client.get("k").unwrap(), b"first");
    client.put_parts("k", &[b"third value", b"!"], &one(), true).unwrap();
    assert_eq!(client.get("k").unwrap(), b"third value!");
}

#[test]
fn bad_input_gets_the_documented_codes_and_changes_nothing() {
    let master = Master::start(&[]);
    let client = master.client(16 * MIB);
    assert_eq!(client.put_parts("", &[b"x"], &one(), false).unwrap_err().code, ErrorCode::InvalidParams);
    // No part at all: Ok and nothing stored, as Mooncake's put_parts().
    client.put_parts("empty", &[], &one(), false).unwrap();
    assert!(!client.is_exist("empty").unwrap());
    assert_eq!(client.get("nope").unwrap_err().code, ErrorCode::ObjectNotFound);
    assert_eq!(client.get_size("nope").unwrap_err().code, ErrorCode::ObjectNotFound);
    assert_eq!(client.remove("nope", false).unwrap_err().code, ErrorCode::ObjectNotFound);
    assert!(!client.is_exist("nope").unwrap());
    // Larger than the whole pool.
    let huge = vec![1u8; 17 * MIB as usize];
    let e = client.put_parts("huge", &[&huge], &one(), false).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoAvailableHandle, "{e}");
    assert!(!client.is_exist("huge").unwrap());
    // A buffer that is too small (registered or not: tests/store_unregistered.rs has the
    // unregistered forms).
    let loose = vec![0u8; 4096];
    client.put_parts("four-k", &[&loose], &one(), false).unwrap();
    let small = registered(&client, 100);
    let e = client.get_into("four-k", small.as_ptr() as u64, 100).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    let e = client.get_into("four-k", loose.as_ptr() as u64, 4095).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert_eq!(client.get("four-k").unwrap(), loose, "a failed read changes nothing");
    assert_eq!(client.remove_by_regex("(", true).unwrap_err().code, ErrorCode::InvalidParams);
}

#[test]
fn a_master_that_is_down_is_rpc_fail_at_setup_and_later() {
    let mut master = Master::start(&[]);
    let config = master.config(0);
    let client = master.client(0);
    assert_eq!(client.health_check(), 0);
    master.kill();
    assert_eq!(client.health_check(), 2);
    let e = client.put_parts("k", &[b"v"], &one(), false).unwrap_err();
    assert!(matches!(e.code, ErrorCode::RpcFail | ErrorCode::RpcTimeout), "{e}");
    let e = Store::setup(&config).err().expect("setup against a dead master fails");
    assert_eq!(e.code, ErrorCode::RpcFail, "{e}");
    client.close().unwrap_or_default();
    assert_eq!(client.health_check(), 1);
}
