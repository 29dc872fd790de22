//! The store when things go wrong: a segment owner killed, a writer that vanishes mid-put,
//! memory pressure, leases, and concurrent writers of one key. Owners run in other processes
//! (`support::store::Owner`) so that killing one is a real process death.

mod support;

use std::time::{Duration, Instant};

use mooncake::proto::{ReplicaConfig, Request, Response};
use mooncake::store::rpc::MasterClient;
use mooncake::store::{ErrorCode, Store};
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

/// The segment names holding `key`'s replicas, straight from the master.
fn holders(master: &MasterClient, key: &str) -> Vec<String> {
    match master.call(&Request::GetReplicas { key: key.into() }) {
        Ok(Response::Object(info)) => info.replicas.into_iter().map(|r| r.segment_name).collect(),
        other => panic!("GetReplicas {key}: {other:?}"),
    }
}

fn inspector(master: &Master) -> MasterClient {
    MasterClient::connect(&master.addr(), rand::random(), Duration::from_secs(5)).expect("connect")
}

#[test]
fn replicas_are_on_distinct_segments_and_survive_a_killed_owner() {
    let master = Master::start(&[]);
    let mut owners: Vec<Owner> = (0..3).map(|_| Owner::start(&master, 32 * MIB)).collect();
    let client = master.client(0);
    let look = inspector(&master);
    let value = support::pattern(MIB as usize, 3);
    client.put_parts("r3", &[&value], &replicas(3), false).unwrap();
    let mut names = holders(&look, "r3");
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "three replicas on three segments: {names:?}");
    for i in 0..30 {
        client.put_parts(&format!("k{i}"), &[&value[..4096]], &replicas(1), false).unwrap();
    }
    let dead = owners[0].hostname.clone();
    let on_dead: Vec<usize> = (0..30).filter(|i| holders(&look, &format!("k{i}")) == [dead.clone()]).collect();
    assert!(!on_dead.is_empty(), "some single-replica keys landed on the first owner");

    owners[0].kill();
    // The master drops the segment when the owner's connections close (at once on SIGKILL).
    let deadline = Instant::now() + Duration::from_secs(15);
    while client.is_exist(&format!("k{}", on_dead[0])).unwrap() {
        assert!(Instant::now() < deadline, "the dead owner's objects are still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..30 {
        let key = format!("k{i}");
        let got = client.get(&key);
        if on_dead.contains(&i) {
            assert_eq!(got.unwrap_err().code, ErrorCode::ObjectNotFound, "{key}");
        } else {
            assert_eq!(got.unwrap(), &value[..4096], "{key} is unharmed");
        }
    }
    assert_eq!(checksum(&client.get("r3").unwrap()), checksum(&value), "the replicated object stays readable");
    assert!(!holders(&look, "r3").contains(&dead));
    // New puts never land in the dead segment.
    for i in 0..30 {
        let key = format!("after{i}");
        client.put_parts(&key, &[&value[..4096]], &replicas(2), false).unwrap();
        assert!(!holders(&look, &key).contains(&dead), "{key} was placed on the dead owner");
    }
    for o in owners.drain(1..) {
        o.stop();
    }
}

#[test]
fn a_writer_that_vanishes_mid_put_has_its_put_revoked_and_space_reclaimed() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 8 * MIB);
    // A writer that reserves 6 MiB and disappears without ending its put.
    let writer = inspector(&master);
    let started = writer.call(&Request::PutStart {
        client: writer.client_id(),
        key: "abandoned".into(),
        size: 6 * MIB,
        config: replicas(1),
        upsert: false,
    });
    assert!(matches!(started, Ok(Response::Put(_))), "{started:?}");
    let client = master.client(0);
    // Mooncake's answer for a key whose only version is still being written.
    assert_eq!(
        client.get("abandoned").unwrap_err().code,
        ErrorCode::ReplicaIsNotReady,
        "an unfinished put is invisible"
    );
    drop(writer);
    // Its space comes back at once: a 6 MiB put fits again, and the key is free for others.
    let value = support::pattern(6 * MIB as usize, 8);
    let t = Instant::now();
    client.put_parts("abandoned", &[&value], &replicas(1), false).unwrap();
    assert!(t.elapsed() < Duration::from_secs(20), "the put waited for the discard timeout");
    assert_eq!(checksum(&client.get("abandoned").unwrap()), checksum(&value));
    owner.stop();
}

#[test]
fn eviction_makes_room_and_spares_pinned_and_recent_objects() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 16 * MIB);
    let client = master.client(0);
    let value = support::pattern(MIB as usize, 1);
    let pinned = ReplicaConfig { replica_num: 1, hard_pin: true, ..Default::default() };
    client.put_parts("pinned", &[&value], &pinned, false).unwrap();
    for i in 0..64 {
        client.put_parts(&format!("e{i}"), &[&value], &replicas(1), false).unwrap_or_else(|e| panic!("put e{i}: {e}"));
    }
    let present: Vec<bool> = (0..64).map(|i| client.is_exist(&format!("e{i}")).unwrap()).collect();
    assert!(present.iter().filter(|p| !**p).count() >= 48, "old objects were evicted: {present:?}");
    assert!(present[63], "the newest object stays");
    assert_eq!(checksum(&client.get("pinned").unwrap()), checksum(&value), "a hard-pinned object is never evicted");
    owner.stop();
}

#[test]
fn a_read_lease_keeps_an_object_from_removal_until_it_runs_out() {
    let master = Master::start(&["--default_kv_lease_ttl=1500"]);
    let client = master.client(16 * MIB);
    client.put_parts("leased", &[b"value"], &replicas(1), false).unwrap();
    assert_eq!(client.remove("leased", false), Ok(()), "put grants no lease");
    client.put_parts("leased", &[b"value"], &replicas(1), false).unwrap();
    assert_eq!(client.get("leased").unwrap(), b"value");
    assert_eq!(client.remove("leased", false).unwrap_err().code, ErrorCode::ObjectHasLease);
    assert_eq!(client.remove_all(false).unwrap(), 0, "remove_all skips leased objects");
    std::thread::sleep(Duration::from_millis(1700));
    assert_eq!(client.remove("leased", false), Ok(()));
    client.put_parts("forced", &[b"v"], &replicas(1), false).unwrap();
    assert!(client.is_exist("forced").unwrap());
    assert_eq!(client.remove("forced", true), Ok(()), "force ignores the lease");
    assert!(!client.is_exist("forced").unwrap());
}

#[test]
fn concurrent_writers_of_one_key_leave_exactly_one_whole_value() {
    let master = Master::start(&[]);
    let owner = Owner::start(&master, 64 * MIB);
    let values: Vec<Vec<u8>> = (0..6).map(|i| support::pattern(2 * MIB as usize, 100 + i)).collect();
    let sums: Vec<u64> = values.iter().map(|v| checksum(v)).collect();
    for upsert in [false, true] {
        let key = format!("contended-{upsert}");
        let stores: Vec<Store> = (0..values.len()).map(|_| master.client(0)).collect();
        std::thread::scope(|s| {
            for (store, v) in stores.iter().zip(&values) {
                let key = key.clone();
                s.spawn(move || store.put_parts(&key, &[v], &replicas(1), upsert).expect("every writer succeeds"));
            }
        });
        let got = checksum(&stores[0].get(&key).unwrap());
        assert!(sums.contains(&got), "upsert={upsert}: the value is one writer's, whole");
        if !upsert {
            // Plain puts: the first writer's value stays; later puts change nothing.
            stores[1].put_parts(&key, &[&values[5]], &replicas(1), false).unwrap();
            assert_eq!(checksum(&stores[2].get(&key).unwrap()), got);
        }
    }
    owner.stop();
}
