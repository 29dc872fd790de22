use std::time::{Duration, Instant};

use super::*;
use crate::proto::{ErrorCode, ReplicaConfig};

const A: ClientId = 0xa;
const B: ClientId = 0xb;
const BASE_A: u64 = 0x10_0000;
const BASE_B: u64 = 0x90_0000;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn two_clients() -> (MasterState, Instant) {
    let t0 = Instant::now();
    let mut st = MasterState::new(Policy::default());
    st.mount_segment(A, 1, "a:1", BASE_A, 1 << 20, t0).unwrap();
    st.mount_segment(B, 2, "b:1", BASE_B, 1 << 20, t0).unwrap();
    (st, t0)
}

fn replicas(n: u32) -> ReplicaConfig {
    ReplicaConfig { replica_num: n, ..Default::default() }
}

fn put(st: &mut MasterState, client: ClientId, key: &str, size: u64, cfg: &ReplicaConfig, now: Instant) -> PutId {
    let slot = st.put_start(client, key, size, cfg, false, now).unwrap();
    st.put_end(client, key, slot.put_id, now).unwrap();
    slot.put_id
}

#[test]
fn a_put_is_visible_only_after_it_ends() {
    let (mut st, t0) = two_clients();
    let slot = st.put_start(A, "k", 1000, &replicas(1), false, t0).unwrap();
    assert_eq!(slot.replicas.len(), 1);
    assert_eq!(slot.replicas[0].addr % 64, 0);
    assert_eq!(st.get_replicas("k", t0), Err(ErrorCode::ReplicaIsNotReady));
    assert!(!st.exists("k", t0));
    assert_eq!(st.remove("k", false, t0), Err(ErrorCode::ReplicaIsNotReady));
    st.put_end(A, "k", slot.put_id, t0).unwrap();
    let info = st.get_replicas("k", t0).unwrap();
    assert_eq!((info.size, info.lease_ttl_ms), (1000, 10_000));
    assert_eq!(info.replicas, slot.replicas);
    assert!(st.exists("k", t0));
    assert_eq!(st.get_replicas("nope", t0), Err(ErrorCode::ObjectNotFound));
}

#[test]
fn a_second_put_waits_until_the_first_is_discarded() {
    let (mut st, t0) = two_clients();
    let first = st.put_start(A, "k", 4096, &replicas(1), false, t0).unwrap();
    assert_eq!(st.put_start(B, "k", 4096, &replicas(1), false, t0 + secs(29)), Err(ErrorCode::ReplicaIsNotReady));
    let second = st.put_start(B, "k", 4096, &replicas(1), false, t0 + secs(30)).unwrap();
    assert_eq!(st.put_end(A, "k", first.put_id, t0 + secs(31)), Err(ErrorCode::ObjectNotFound));
    // The discarded put's space waits for its release timeout: its writer may still write.
    assert_eq!(st.deferred_bytes(), 4096);
    st.put_end(B, "k", second.put_id, t0 + secs(31)).unwrap();
    st.tick(t0 + secs(599));
    assert_eq!(st.segments().used(), 8192);
    st.tick(t0 + secs(600));
    assert_eq!(st.segments().used(), 4096);
    assert_eq!(st.counters().puts_discarded, 1);
}

#[test]
fn an_existing_key_is_kept_unless_upserted() {
    let (mut st, t0) = two_clients();
    put(&mut st, A, "k", 100, &replicas(1), t0);
    assert_eq!(st.put_start(A, "k", 100, &replicas(1), false, t0), Err(ErrorCode::ObjectAlreadyExists));
    assert!(st.put_start(A, "k", 100, &replicas(1), true, t0).is_ok());
}

#[test]
fn with_upsert_the_last_put_to_end_wins() {
    let (mut st, t0) = two_clients();
    put(&mut st, A, "k", 64, &replicas(1), t0);
    let first = st.put_start(A, "k", 128, &replicas(1), true, t0).unwrap();
    let second = st.put_start(A, "k", 192, &replicas(1), true, t0).unwrap();
    st.put_end(A, "k", second.put_id, t0).unwrap();
    st.put_end(A, "k", first.put_id, t0).unwrap();
    let info = st.get_replicas("k", t0).unwrap();
    assert_eq!(info.size, 128);
    assert_eq!(info.replicas, first.replicas);
    // The replaced versions had no lease: their space is free already.
    assert_eq!(st.segments().used(), 128);
}

#[test]
fn a_replaced_version_under_lease_is_freed_when_the_lease_ends() {
    let (mut st, t0) = two_clients();
    put(&mut st, A, "k", 64, &replicas(1), t0);
    st.get_replicas("k", t0).unwrap();
    let next = st.put_start(A, "k", 64, &replicas(1), true, t0 + secs(1)).unwrap();
    st.put_end(A, "k", next.put_id, t0 + secs(1)).unwrap();
    assert_eq!((st.segments().used(), st.deferred_bytes()), (128, 64));
    st.tick(t0 + secs(10));
    assert_eq!((st.segments().used(), st.deferred_bytes()), (64, 0));
}

#[test]
fn revoke_frees_the_space_and_checks_the_owner() {
    let (mut st, t0) = two_clients();
    let slot = st.put_start(A, "k", 5000, &replicas(2), false, t0).unwrap();
    assert_eq!(st.segments().used(), 2 * 5056);
    assert_eq!(st.put_end(B, "k", slot.put_id, t0), Err(ErrorCode::IllegalClient));
    assert_eq!(st.put_revoke(A, "other", slot.put_id), Err(ErrorCode::ObjectNotFound));
    st.put_revoke(A, "k", slot.put_id).unwrap();
    assert_eq!(st.segments().used(), 0);
    assert_eq!(st.put_end(A, "k", slot.put_id, t0), Err(ErrorCode::ObjectNotFound));
    assert_eq!(st.get_replicas("k", t0), Err(ErrorCode::ObjectNotFound));
    // The key is free again.
    assert!(st.put_start(A, "k", 5000, &replicas(1), false, t0).is_ok());
}

#[test]
fn a_lease_blocks_remove_and_a_forced_remove_defers_the_free() {
    let (mut st, t0) = two_clients();
    put(&mut st, A, "k", 64, &replicas(1), t0);
    assert_eq!(st.remove("missing", false, t0), Err(ErrorCode::ObjectNotFound));
    st.get_replicas("k", t0).unwrap();
    assert_eq!(st.remove("k", false, t0 + secs(9)), Err(ErrorCode::ObjectHasLease));
    st.remove("k", true, t0 + secs(9)).unwrap();
    assert_eq!(st.get_replicas("k", t0 + secs(9)), Err(ErrorCode::ObjectNotFound));
    assert_eq!(st.segments().used(), 64, "a reader may still be copying");
    st.tick(t0 + secs(10));
    assert_eq!(st.segments().used(), 0);
    // Without a lease the space goes at once.
    put(&mut st, A, "j", 64, &replicas(1), t0 + secs(20));
    st.remove("j", false, t0 + secs(20)).unwrap();
    assert_eq!(st.segments().used(), 0);
}

/// One 6400-byte segment: five 1280-byte objects fill it.
fn small() -> (MasterState, Instant) {
    let t0 = Instant::now();
    let mut st = MasterState::new(Policy::default());
    st.mount_segment(A, 1, "a:1", 0, 6400, t0).unwrap();
    (st, t0)
}

#[test]
fn eviction_takes_the_least_recently_used_unpinned_object() {
    let (mut st, t0) = small();
    let hard = ReplicaConfig { hard_pin: true, ..replicas(1) };
    let soft = ReplicaConfig { soft_pin: true, ..replicas(1) };
    put(&mut st, A, "hard", 1280, &hard, t0);
    put(&mut st, A, "soft", 1280, &soft, t0 + secs(1));
    put(&mut st, A, "old", 1280, &replicas(1), t0 + secs(2));
    put(&mut st, A, "young", 1280, &replicas(1), t0 + secs(3));
    st.get_replicas("old", t0 + secs(4)).unwrap(); // now "young" is the least recently used
    // The fifth object would take usage past the 90% watermark: one object goes first.
    put(&mut st, A, "e", 1280, &replicas(1), t0 + secs(20));
    assert_eq!(st.get_replicas("young", t0 + secs(20)), Err(ErrorCode::ObjectNotFound));
    for k in ["hard", "soft", "old", "e"] {
        assert!(st.contains(k), "{k}");
    }
    assert_eq!((st.counters().evicted_keys, st.counters().evicted_bytes), (1, 1280));
    // With the unpinned ones leased, the soft-pinned object goes; the hard-pinned one never.
    st.get_replicas("old", t0 + secs(20)).unwrap();
    st.get_replicas("e", t0 + secs(20)).unwrap();
    put(&mut st, A, "f", 1280, &replicas(1), t0 + secs(21));
    assert!(!st.contains("soft"));
    assert!(st.contains("hard") && st.contains("old") && st.contains("e"));
    // Nothing evictable is left and the segment is full.
    for k in ["old", "e", "f"] {
        st.get_replicas(k, t0 + secs(22)).unwrap();
    }
    put(&mut st, A, "g", 1280, &replicas(1), t0 + secs(22));
    st.get_replicas("g", t0 + secs(22)).unwrap();
    assert_eq!(st.put_start(A, "h", 1280, &replicas(1), false, t0 + secs(22)), Err(ErrorCode::NoAvailableHandle));
}

#[test]
fn soft_pinned_objects_stay_unless_allowed_and_until_their_pin_runs_out() {
    let t0 = Instant::now();
    let policy = Policy { allow_evict_soft_pinned: false, ..Policy::default() };
    let mut st = MasterState::new(policy);
    st.mount_segment(A, 1, "a:1", 0, 2560, t0).unwrap();
    let soft = ReplicaConfig { soft_pin: true, soft_pin_ttl_ms: Some(1000), ..replicas(1) };
    put(&mut st, A, "soft", 1280, &soft, t0);
    put(&mut st, A, "plain", 1280, &replicas(1), t0 + secs(1) / 2);
    // The soft-pinned object is older, but pinned: the plain one goes.
    put(&mut st, A, "x", 1280, &replicas(1), t0 + secs(1) / 2);
    assert!(!st.exists("plain", t0 + secs(1) / 2));
    st.get_replicas("x", t0 + secs(1) / 2).unwrap();
    // Pin still on, "x" leased: nothing may go.
    assert_eq!(
        st.put_start(A, "y", 2000, &replicas(1), false, t0 + Duration::from_millis(900)),
        Err(ErrorCode::NoAvailableHandle)
    );
    // Pin expired: "soft" is ordinary, and the least recently used.
    let y = st.put_start(A, "y", 1280, &replicas(1), false, t0 + secs(2)).unwrap();
    st.put_end(A, "y", y.put_id, t0 + secs(2)).unwrap();
    assert!(!st.exists("soft", t0 + secs(2)));
    assert!(st.exists("x", t0 + secs(2)));
}

#[test]
fn the_tick_evicts_above_the_high_watermark() {
    let (mut st, t0) = small();
    let policy_wm = st.policy().high_watermark;
    assert!((policy_wm - 0.90).abs() < 1e-9);
    // Four objects (80%), then a fifth with everything leased: no room is made at put time.
    for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
        put(&mut st, A, k, 1280, &replicas(1), t0 + secs(i as u64));
        st.get_replicas(k, t0 + secs(i as u64)).unwrap();
    }
    put(&mut st, A, "e", 1280, &replicas(1), t0 + secs(5));
    assert_eq!(st.object_count(), 5);
    // Once leases end, the tick brings usage under the watermark, oldest first.
    st.tick(t0 + secs(14));
    assert_eq!(st.object_count(), 4);
    assert!(!st.exists("a", t0 + secs(14)));
}

#[test]
fn puts_older_than_the_release_timeout_are_revoked() {
    let (mut st, t0) = two_clients();
    let slot = st.put_start(A, "k", 64, &replicas(1), false, t0).unwrap();
    st.tick(t0 + secs(599));
    assert_eq!(st.segments().used(), 64);
    st.tick(t0 + secs(600));
    assert_eq!(st.segments().used(), 0);
    assert_eq!(st.put_end(A, "k", slot.put_id, t0 + secs(600)), Err(ErrorCode::ObjectNotFound));
}

#[test]
fn an_expired_client_loses_its_segments_and_others_keep_their_replicas() {
    let (mut st, t0) = two_clients();
    st.hello(A, t0);
    st.hello(B, t0);
    put(&mut st, B, "both", 100, &replicas(2), t0);
    let only_a = ReplicaConfig { preferred_segments: vec!["a:1".into()], ..replicas(1) };
    put(&mut st, B, "only-a", 100, &only_a, t0);
    assert!(st.ping(A, t0 + secs(5)));
    assert!(st.ping(B, t0 + secs(9)));
    assert!(st.expire_clients(t0 + secs(14)).is_empty());
    assert_eq!(st.expire_clients(t0 + secs(15)), vec![A]);
    assert_eq!(st.get_replicas("only-a", t0 + secs(15)), Err(ErrorCode::ObjectNotFound));
    let info = st.get_replicas("both", t0 + secs(15)).unwrap();
    assert_eq!(info.replicas.len(), 1);
    assert_eq!(info.replicas[0].segment_name, "b:1");
    // A comes back: it is told once, mounts again, and is known.
    assert!(!st.ping(A, t0 + secs(16)));
    st.mount_segment(A, 1, "a:1", BASE_A, 1 << 20, t0 + secs(16)).unwrap();
    assert!(st.ping(A, t0 + secs(17)));
    assert_eq!(st.counters().expired_clients, 1);
}

/// Runs the housekeeping ticker's expiry every 100 ms over `[from, to)`, as the server does.
fn tick_through(st: &mut MasterState, from: Instant, to: Instant) -> Vec<ClientId> {
    let mut expired = Vec::new();
    let mut t = from;
    while t < to {
        expired.extend(st.expire_clients(t));
        t += Duration::from_millis(100);
    }
    expired
}

#[test]
fn a_stalled_master_counts_only_the_time_it_was_awake() {
    let (mut st, t0) = two_clients();
    st.hello(A, t0);
    st.hello(B, t0);
    put(&mut st, B, "k", 100, &replicas(2), t0);
    assert!(tick_through(&mut st, t0, t0 + secs(2)).is_empty());
    // Stopped for 30 s (three client_ttl): nobody could be heard meanwhile.
    assert!(st.expire_clients(t0 + secs(32)).is_empty());
    assert_eq!(st.counters().master_stalls, 1);
    assert!(st.exists("k", t0 + secs(32)));
    // B heartbeats again; A does not, and expires once it was silent for 10 s of awake time
    // (1.9 s before the stall, up to its last tick, and 8.1 s after it).
    assert!(st.ping(B, t0 + secs(33)));
    assert!(tick_through(&mut st, t0 + secs(32), t0 + secs(40)).is_empty());
    assert_eq!(st.expire_clients(t0 + secs(40) + Duration::from_millis(100)), vec![A]);
    assert!(st.ping(B, t0 + secs(41)));
    assert!(tick_through(&mut st, t0 + secs(41), t0 + secs(50)).is_empty());
    assert!(st.is_known(B));
    assert_eq!(st.get_replicas("k", t0 + secs(50)).unwrap().replicas.len(), 1);
}

#[test]
fn connections_closing_right_after_a_stall_leave_the_client_to_its_ttl() {
    let (mut st, t0) = two_clients();
    st.hello(A, t0);
    st.hello(B, t0);
    put(&mut st, A, "on-a", 100, &ReplicaConfig { preferred_segments: vec!["a:1".into()], ..replicas(1) }, t0);
    assert!(tick_through(&mut st, t0, t0 + secs(1)).is_empty());
    // The master resumes after 20 s and first finds both clients' connections closed (their
    // requests timed out while it was stopped); the connection task runs before the ticker.
    st.connection_closed(A, t0 + secs(21));
    st.connection_closed(B, t0 + secs(21));
    assert!(st.exists("on-a", t0 + secs(21)));
    // A reconnects and heartbeats; B never comes back and expires after a full client_ttl.
    st.hello(A, t0 + secs(22));
    assert!(st.ping(A, t0 + secs(22)));
    let expired = tick_through(&mut st, t0 + secs(21), t0 + secs(31) + Duration::from_millis(100));
    assert_eq!(expired, vec![B]);
    assert!(st.exists("on-a", t0 + secs(31)));
    // After the grace, a last connection closing drops the client at once again.
    assert!(st.ping(A, t0 + secs(31)));
    st.connection_closed(A, t0 + secs(32));
    assert!(!st.exists("on-a", t0 + secs(32)));
}

#[test]
fn the_last_connection_closing_drops_the_client() {
    let (mut st, t0) = two_clients();
    st.hello(A, t0);
    st.hello(A, t0);
    put(&mut st, A, "k", 100, &replicas(1), t0);
    let pending = st.put_start(A, "p", 100, &replicas(1), false, t0).unwrap();
    let on_a = ReplicaConfig { preferred_segments: vec!["a:1".into()], ..replicas(1) };
    put(&mut st, B, "on-a", 100, &on_a, t0);
    st.connection_closed(A, t0);
    assert!(st.exists("on-a", t0));
    st.connection_closed(A, t0);
    assert!(!st.exists("on-a", t0));
    assert!(!st.is_known(A));
    assert_eq!(st.segments().len(), 1);
    assert_eq!(st.put_end(A, "p", pending.put_id, t0), Err(ErrorCode::ObjectNotFound));
    // Its pending put on B's segment was freed at once: no writer is left.
    assert_eq!(st.deferred_bytes(), 0);
}

#[test]
fn ping_says_known_once_mounted_or_told() {
    let t0 = Instant::now();
    let mut st = MasterState::new(Policy::default());
    st.hello(A, t0);
    assert!(!st.ping(A, t0), "a Hello alone could be a master restart");
    assert!(st.ping(A, t0));
    st.hello(B, t0);
    st.mount_segment(B, 2, "b:1", BASE_B, 4096, t0).unwrap();
    assert!(st.ping(B, t0));
    assert_eq!(st.known_clients(), 2);
}

#[test]
fn replicas_go_to_distinct_names() {
    let t0 = Instant::now();
    let mut st = MasterState::new(Policy::default());
    st.mount_segment(A, 1, "a:1", BASE_A, 1 << 20, t0).unwrap();
    st.mount_segment(A, 3, "a:1", BASE_A + (2 << 20), 1 << 20, t0).unwrap();
    st.mount_segment(B, 2, "b:1", BASE_B, 1 << 20, t0).unwrap();
    for i in 0..20 {
        let n = if i == 0 { u32::MAX } else { 3 };
        let slot = st.put_start(A, &format!("k{i}"), 1000, &replicas(n), false, t0).unwrap();
        let mut names: Vec<&str> = slot.replicas.iter().map(|r| r.segment_name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["a:1", "b:1"]);
    }
}

#[test]
fn preferred_segments_come_first_in_order() {
    let (mut st, t0) = two_clients();
    let cfg = ReplicaConfig { preferred_segments: vec!["b:1".into()], ..replicas(1) };
    let slot = st.put_start(A, "x", 64, &cfg, false, t0).unwrap();
    assert_eq!(slot.replicas[0].segment_name, "b:1");
    assert!(slot.replicas[0].addr >= BASE_B);
    let cfg = ReplicaConfig { preferred_segments: vec!["nowhere".into(), "a:1".into(), "b:1".into()], ..replicas(2) };
    let slot = st.put_start(A, "y", 64, &cfg, false, t0).unwrap();
    let names: Vec<&str> = slot.replicas.iter().map(|r| r.segment_name.as_str()).collect();
    assert_eq!(names, ["a:1", "b:1"]);
    // Without preference the emptier segment is taken.
    let slot = st.put_start(A, "z", 64, &replicas(1), false, t0).unwrap();
    assert_eq!(slot.replicas[0].segment_name, "a:1");
}

#[test]
fn remove_by_regex_and_remove_all_count_and_skip_leased_keys() {
    let (mut st, t0) = two_clients();
    for k in ["x/1", "x/2", "y/1", "y/2"] {
        put(&mut st, A, k, 64, &replicas(1), t0);
    }
    st.get_replicas("x/2", t0).unwrap();
    st.put_start(A, "x/3", 64, &replicas(1), false, t0).unwrap();
    assert_eq!(st.remove_by_regex("(", false, t0), Err(ErrorCode::InvalidParams));
    assert_eq!(st.remove_by_regex("^x/", false, t0), Ok(1));
    assert_eq!(st.remove_by_regex("x/", true, t0), Ok(1));
    assert_eq!(st.remove_by_regex("2$", false, t0), Ok(1));
    st.get_replicas("y/1", t0).unwrap();
    assert_eq!(st.remove_all(false, t0), 0);
    assert_eq!(st.remove_all(true, t0), 1);
    assert_eq!(st.object_count(), 0);
}

#[test]
fn unmount_reports_the_longest_lease_left_and_revokes_puts_there() {
    let (mut st, t0) = two_clients();
    let only_b = ReplicaConfig { preferred_segments: vec!["b:1".into()], ..replicas(1) };
    put(&mut st, A, "k", 64, &only_b, t0);
    st.get_replicas("k", t0).unwrap();
    let pending = st.put_start(A, "p", 64, &replicas(2), false, t0).unwrap();
    assert_eq!(st.unmount_segment(A, 2, t0), Err(ErrorCode::IllegalClient));
    assert_eq!(st.unmount_segment(B, 2, t0 + secs(4)), Ok(6000));
    assert_eq!(st.unmount_segment(B, 2, t0 + secs(4)), Err(ErrorCode::SegmentNotFound));
    assert_eq!(st.get_replicas("k", t0 + secs(4)), Err(ErrorCode::ObjectNotFound));
    assert_eq!(st.put_end(A, "p", pending.put_id, t0 + secs(4)), Err(ErrorCode::ObjectNotFound));
    // Its replica on A's segment waits for the writer's release timeout.
    assert_eq!(st.deferred_bytes(), 64);
    assert_eq!(st.unmount_segment(A, 1, t0 + secs(5)), Ok(0));
    assert_eq!(st.deferred_bytes(), 0);
}

#[test]
fn bad_puts_get_mooncakes_codes() {
    let t0 = Instant::now();
    let mut st = MasterState::new(Policy::default());
    assert_eq!(st.put_start(A, "k", 64, &replicas(1), false, t0), Err(ErrorCode::NoAvailableHandle));
    st.mount_segment(A, 1, "a:1", 0, 4096, t0).unwrap();
    assert_eq!(st.put_start(A, "", 64, &replicas(1), false, t0), Err(ErrorCode::InvalidParams));
    assert_eq!(st.put_start(A, "k", 0, &replicas(1), false, t0), Err(ErrorCode::InvalidParams));
    let long = "k".repeat(MAX_KEY_LEN + 1);
    assert_eq!(st.put_start(A, &long, 64, &replicas(1), false, t0), Err(ErrorCode::InvalidKey));
    assert!(st.put_start(A, &long[..MAX_KEY_LEN], 64, &replicas(0), false, t0).is_ok());
    assert_eq!(st.put_start(A, "big", 4097, &replicas(1), false, t0), Err(ErrorCode::NoAvailableHandle));
    assert_eq!(st.counters().put_start_failures, 5);
}

#[test]
fn mount_is_idempotent_for_the_same_segment_only() {
    let t0 = Instant::now();
    let mut st = MasterState::new(Policy::default());
    st.mount_segment(A, 1, "a:1", 0, 4096, t0).unwrap();
    st.mount_segment(A, 1, "a:1", 0, 4096, t0).unwrap();
    assert_eq!(st.mount_segment(B, 1, "b:1", 0, 4096, t0), Err(ErrorCode::SegmentAlreadyExists));
    assert_eq!(st.mount_segment(A, 1, "a:1", 0, 8192, t0), Err(ErrorCode::SegmentAlreadyExists));
    assert_eq!(st.mount_segment(A, 2, "a:1", 0, 0, t0), Err(ErrorCode::InvalidParams));
    assert_eq!(st.segments().len(), 1);
}

#[test]
fn dispatch_answers_in_kind() {
    use crate::proto::{Request, Response};
    let (mut st, t0) = two_clients();
    let r = st.handle(
        A,
        Request::PutStart { client: A, key: "k".into(), size: 64, config: replicas(1), upsert: false },
        t0,
    );
    let Response::Put(slot) = r else { panic!("{r:?}") };
    let r =
        st.handle(A, Request::BatchPutFinish { client: A, puts: vec![("k".into(), slot.put_id)], revoke: false }, t0);
    assert_eq!(r, Response::Codes(vec![Ok(())]));
    let r = st.handle(A, Request::BatchExists { keys: vec!["k".into(), "j".into()] }, t0);
    assert_eq!(r, Response::Flags(vec![Ok(true), Ok(false)]));
    let r = st.handle(A, Request::BatchGetReplicas { keys: vec!["k".into(), "j".into()] }, t0);
    let Response::Objects(objs) = r else { panic!("{r:?}") };
    assert!(objs[0].is_ok() && objs[1] == Err(ErrorCode::ObjectNotFound));
    assert_eq!(st.handle(A, Request::Remove { key: "k".into(), force: true }, t0), Response::Done);
    assert_eq!(st.handle(A, Request::Health, t0), Response::Done);
    assert_eq!(st.handle(A, Request::RemoveAll { force: false }, t0), Response::Count(0));
}

#[test]
fn a_removed_version_is_freed_when_its_last_reader_is_done_not_before() {
    let (mut st, t0) = two_clients();
    put(&mut st, A, "k", 4096, &replicas(1), t0);
    let first = st.get_replicas("k", t0).unwrap();
    let second = st.get_replicas("k", t0).unwrap();
    assert_eq!(first.read_id, second.read_id);
    assert_eq!(st.remove("k", true, t0), Ok(()));
    assert_eq!(st.deferred_bytes(), 4096, "two readers may still be copying");
    st.reads_done(&[("k".into(), first.read_id)]);
    assert_eq!(st.deferred_bytes(), 4096, "one reader is still copying");
    st.reads_done(&[("k".into(), second.read_id)]);
    assert_eq!((st.deferred_bytes(), st.segments().used()), (0, 0), "the last reader frees the space");
    // A version nobody read is freed at once, even while its lease (from `exists`) lasts.
    put(&mut st, A, "k", 4096, &replicas(1), t0);
    assert!(st.exists("k", t0));
    assert_eq!(st.remove("k", false, t0), Err(ErrorCode::ObjectHasLease), "the lease still blocks a plain remove");
    assert_eq!(st.remove("k", true, t0), Ok(()));
    assert_eq!(st.segments().used(), 0);
    // A reader that never says it is done holds the space until its lease runs out.
    put(&mut st, A, "k", 4096, &replicas(1), t0);
    let lost = st.get_replicas("k", t0).unwrap();
    assert_eq!(st.remove("k", true, t0), Ok(()));
    st.tick(t0 + st.policy().lease_ttl + secs(1));
    assert_eq!(st.segments().used(), 0);
    st.reads_done(&[("k".into(), lost.read_id)]);
    assert_eq!(st.segments().used(), 0, "a late ReadsDone changes nothing");
}

#[test]
fn unmount_does_not_wait_for_leases_whose_readers_finished() {
    let (mut st, t0) = two_clients();
    let only_b = ReplicaConfig { preferred_segments: vec!["b:1".into()], ..replicas(1) };
    put(&mut st, B, "k", 64, &only_b, t0);
    let info = st.get_replicas("k", t0).unwrap();
    st.reads_done(&[("k".into(), info.read_id)]);
    assert_eq!(st.unmount_segment(B, 2, t0 + secs(1)), Ok(0), "the lease's only reader said ReadsDone");
}
