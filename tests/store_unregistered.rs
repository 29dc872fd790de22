//! Zero-copy calls on memory that was never registered, as Mooncake's store takes it: put_from,
//! batch_put_from (and their upsert forms), get_into and batch_get_into move 1 B .. 16 MiB
//! between plain heap buffers and replicas in another process and in this one, with checksums
//! and guard bytes around every destination; values larger than the client's local buffer
//! too. A client with `local_buffer_size` 0 fails `put`/`get` of bytes as Mooncake's does
//! (and keeps the zero-copy calls). `close()` after a failed `get_into` returns at once.

mod support;

use std::time::{Duration, Instant};

use mooncake::store::{ByteRange, ErrorCode, KeyBuffer, ReplicaConfig, Store};
use support::store::{Master, Owner, checksum, owner_main};

#[test]
#[ignore = "runs only as a child of the other tests (support::store::Owner)"]
fn owner_process() {
    owner_main();
}

const MIB: u64 = 1 << 20;
const GUARD: usize = 4096;
const SIZES: [usize; 6] = [1, 4095, 65_537, MIB as usize + 3, 5 << 20, 16 << 20];

fn one() -> ReplicaConfig {
    ReplicaConfig { replica_num: 1, ..Default::default() }
}

/// A client with a local buffer of `local_buffer` bytes and a segment of `segment` bytes.
fn client(master: &Master, segment: u64, local_buffer: u64) -> Store {
    let mut config = master.config(segment);
    config.local_buffer_size = local_buffer;
    Store::setup(&config).expect("setup")
}

/// A heap buffer of `len` bytes between two guards; `addr()` is the first byte after the front
/// guard.
struct Guarded(Vec<u8>);

impl Guarded {
    fn new(len: usize) -> Guarded {
        Guarded(vec![0xC3; len + 2 * GUARD])
    }
    fn addr(&self) -> u64 {
        self.0.as_ptr() as u64 + GUARD as u64
    }
    fn body(&self, len: usize) -> &[u8] {
        &self.0[GUARD..GUARD + len]
    }
    /// The guards and everything after `len` bytes of the body are untouched.
    fn intact_beyond(&self, len: usize) -> bool {
        self.0[..GUARD].iter().chain(&self.0[GUARD + len..]).all(|&b| b == 0xC3)
    }
}

/// Every size through put_from / get_into and the batch forms; `client` reads and writes, the
/// replicas are where the master puts them.
fn every_size_both_ways(client: &Store, tag: &str) {
    for (i, size) in SIZES.into_iter().enumerate() {
        let value = support::pattern(size, i as u64 + 40);
        let key = format!("{tag}-{size}");
        client
            .put_from(&key, value.as_ptr() as u64, size as u64, &one(), false)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let out = Guarded::new(size + 100);
        let n = client.get_into(&key, out.addr(), size as u64 + 100).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(n, size as u64);
        assert_eq!(checksum(out.body(size)), checksum(&value), "{key} came back different");
        assert!(out.intact_beyond(size), "{key}: bytes written outside the value");
        // The same bytes through `get` (the staging path) and the upsert form.
        assert_eq!(checksum(&client.get(&key).unwrap()), checksum(&value));
        let newer = support::pattern(size, i as u64 + 90);
        client.put_from(&key, newer.as_ptr() as u64, size as u64, &one(), true).unwrap();
        let out = Guarded::new(size);
        client.get_into(&key, out.addr(), size as u64).unwrap();
        assert_eq!(checksum(out.body(size)), checksum(&newer), "{key} after upsert");
        assert!(out.intact_beyond(size));
    }
    // Batches: one value of each size in one call each way.
    let values: Vec<Vec<u8>> = SIZES.iter().enumerate().map(|(i, &s)| support::pattern(s, i as u64 + 7)).collect();
    let keys: Vec<String> = SIZES.iter().map(|s| format!("{tag}-batch-{s}")).collect();
    let items: Vec<KeyBuffer<'_>> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| KeyBuffer { key: k, addr: v.as_ptr() as u64, len: v.len() as u64 })
        .collect();
    for r in client.batch_put_from(&items, &one(), false) {
        r.unwrap();
    }
    let outs: Vec<Guarded> = SIZES.iter().map(|&s| Guarded::new(s)).collect();
    let into: Vec<KeyBuffer<'_>> = keys
        .iter()
        .zip(&outs)
        .zip(SIZES)
        .map(|((k, o), s)| KeyBuffer { key: k, addr: o.addr(), len: s as u64 })
        .collect();
    let got = client.batch_get_into(&into);
    for (((r, o), v), s) in got.into_iter().zip(&outs).zip(&values).zip(SIZES) {
        assert_eq!(r.unwrap(), s as u64);
        assert_eq!(checksum(o.body(s)), checksum(v), "batch value of {s} bytes");
        assert!(o.intact_beyond(s));
    }
    assert!(client.remove_all(true).unwrap() >= 2 * SIZES.len() as i64);
}

#[test]
fn unregistered_memory_moves_to_and_from_another_process() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 256 * MIB);
    // A 1 MiB local buffer: values up to 16 MiB do not pass through it.
    let reader = client(&master, 0, MIB);
    every_size_both_ways(&reader, "remote");
    reader.close().unwrap();
    owner.stop();
}

#[test]
fn unregistered_memory_moves_to_and_from_this_process_segment() {
    let master = Master::start(&[]);
    let local = client(&master, 256 * MIB, MIB);
    every_size_both_ways(&local, "local");
    local.close().unwrap();
}

#[test]
fn a_zero_local_buffer_fails_put_and_get_of_bytes_and_keeps_zero_copy() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 64 * MIB);
    for segment in [0, 16 * MIB] {
        let zero = client(&master, segment, 0);
        let e = zero.put_parts("zero-put", &[b"test_zero_buffer_value"], &one(), false).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams, "{e}");
        assert!(!zero.is_exist("zero-put").unwrap(), "a failed put leaves no key");
        let e = zero.put_batch(&[("zero-batch", b"v")], &one(), false).pop().unwrap().unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        // Zero copy needs no local buffer (the wheel: put_from and get_into answer as usual).
        let value = support::pattern(3 * MIB as usize, 3);
        zero.put_from("zero-zc", value.as_ptr() as u64, value.len() as u64, &one(), false).unwrap();
        assert!(zero.is_exist("zero-zc").unwrap());
        let out = Guarded::new(value.len());
        assert_eq!(zero.get_into("zero-zc", out.addr(), value.len() as u64).unwrap(), value.len() as u64);
        assert_eq!(checksum(out.body(value.len())), checksum(&value));
        assert!(out.intact_beyond(value.len()));
        assert_eq!(zero.get("zero-zc").unwrap_err().code, ErrorCode::InvalidParams, "get of bytes needs the buffer");
        zero.remove("zero-zc", true).unwrap();
        zero.close().unwrap();
    }
    owner.stop();
}

#[test]
fn empty_zero_copy_puts_answer_ok_and_store_nothing() {
    let master = Master::start(&[]);
    let c = client(&master, 16 * MIB, MIB);
    let byte = [1u8];
    c.put_from("empty-zc", byte.as_ptr() as u64, 0, &one(), false).unwrap();
    assert!(!c.is_exist("empty-zc").unwrap());
    c.put_parts("no-parts", &[], &one(), false).unwrap();
    assert!(!c.is_exist("no-parts").unwrap());
    assert_eq!(c.put_from("null", 0, 16, &one(), false).unwrap_err().code, ErrorCode::InvalidParams);
    assert_eq!(c.get_into("null", 0, 16).unwrap_err().code, ErrorCode::ObjectNotFound);
    c.close().unwrap();
}

#[test]
fn get_into_ranges_needs_a_registered_buffer_as_the_wheel() {
    let master = Master::start(&[]);
    let c = client(&master, 16 * MIB, MIB);
    let value = support::pattern(4096, 1);
    c.put_from("ranges", value.as_ptr() as u64, 4096, &one(), false).unwrap();
    let out = Guarded::new(4096);
    let ranges = [ByteRange { dst: 0, src: 10, len: 50 }];
    let got = c.get_into_ranges(out.addr(), "ranges", &ranges).unwrap();
    assert_eq!(got[0].as_ref().unwrap_err().code, ErrorCode::InvalidParams);
    assert!(out.intact_beyond(0), "a refused range wrote nothing");
    c.register_buffer(out.addr(), 4096).unwrap();
    let got = c.get_into_ranges(out.addr(), "ranges", &ranges).unwrap();
    assert_eq!(*got[0].as_ref().unwrap(), 50);
    assert_eq!(out.body(50), &value[10..60]);
    assert!(out.intact_beyond(50));
    c.unregister_buffer(out.addr()).unwrap();
    c.close().unwrap();
}

#[test]
fn close_after_a_failed_get_into_does_not_wait_out_the_read_lease() {
    // The master's default read lease is 10 s (Mooncake's): a closing client that waited for
    // its own finished reads would take that long.
    let master = Master::start(&[]);
    let c = client(&master, 16 * MIB, MIB);
    let value = support::pattern(4096, 2);
    c.put_from("lease", value.as_ptr() as u64, 4096, &one(), false).unwrap();
    let small = Guarded::new(16);
    assert_eq!(c.get_into("lease", small.addr(), 16).unwrap_err().code, ErrorCode::InvalidParams);
    assert!(small.intact_beyond(0), "a failed get_into wrote nothing");
    assert_eq!(c.get("lease").unwrap(), value);
    let started = Instant::now();
    c.close().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "close took {took:?}");

    // A reader without a segment closes right after reading from another client's segment:
    // its finished read must not hold that segment's unmount for the lease either.
    let owner = client(&master, 16 * MIB, MIB);
    let reader = client(&master, 0, 0);
    reader.put_from("lease2", value.as_ptr() as u64, 4096, &one(), false).unwrap();
    let out = Guarded::new(4096);
    assert_eq!(reader.get_into("lease2", out.addr(), 4096).unwrap(), 4096);
    reader.close().unwrap();
    let started = Instant::now();
    owner.close().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the owner's close took {took:?} after the reader's close");
}
