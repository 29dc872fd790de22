//! Failures between two hosts: network namespaces joined by a veth pair (198.51.100.1/24 for
//! the target, 198.51.100.2/24 for the initiator), each engine in its own process.
//!
//! The engines run in this test binary, re-executed under `ip netns exec` with
//! `MC_NETNS_ROLE` naming a role function (`role_target`, `role_initiator`: tests that return at
//! once unless that variable is set) and spoken to over stdin/stdout JSON lines
//! (`netns_support::roles` lists the commands). Each test builds its own uniquely named
//! namespaces and removes them on drop, also when it fails; every process it starts is killed
//! by its PID on drop.
//!
//! Needs root and iproute2; elsewhere the tests print `SKIPPED: …` and pass, unless
//! `MOONCAKE_REQUIRE_NETNS=1` (CI) makes that a failure. Run with
//! `cargo test --release --test netns -- --nocapture` to see the measured times.

mod netns_support;

use std::time::{Duration, Instant};

use netns_support::lab::{Lab, Link};
use netns_support::peer::{Peer, ROLE_VAR};
use netns_support::roles;
use serde_json::{Value, json};

const TARGET_HOST: &str = "198.51.100.1";
const INITIATOR_HOST: &str = "198.51.100.2";
/// The second link of `dropped_link_…`: a third host, reached over another veth pair.
const OTHER_TARGET_HOST: &str = "203.0.113.1";
const OTHER_INITIATOR_CIDR: &str = "203.0.113.2/24";

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Remote offsets in round trips start here, off any alignment.
const ODD: u64 = 3;
const FAILED: i64 = 6;

/// A batch large enough to still be in flight when the test breaks things: 4 GiB in 1 MiB
/// requests, cycling over `[BIG_BASE, BIG_BASE + BIG_SPAN)` on both sides. Round trips use
/// offsets below `BIG_BASE`, so that nothing of a broken big batch can land in what they check.
const BIG_COUNT: usize = 4096;
const BIG_BASE: u64 = 16 * MIB;
const BIG_SPAN: u64 = 48 * MIB;
const BIG_BUF: u64 = BIG_BASE + BIG_SPAN;

const CALL: Duration = Duration::from_secs(30);
const EXIT: Duration = Duration::from_secs(10);

fn role_is(name: &str) -> bool {
    std::env::var(ROLE_VAR).is_ok_and(|r| r == name)
}

/// Role: a target engine (see `netns_support::roles`). Returns at once in a normal test run.
#[test]
fn role_target() {
    if role_is("role_target") {
        roles::target();
    }
}

/// Role: an initiator engine (see `netns_support::roles`). Returns at once in a normal test run.
#[test]
fn role_initiator() {
    if role_is("role_initiator") {
        roles::initiator();
    }
}

fn start_target(ns: &str, host: &str, buf: u64) -> Peer {
    Peer::start(ns, "role_target", &[("MC_NETNS_HOST", host.into()), ("MC_NETNS_BUF", buf.to_string())])
}

fn start_initiator(ns: &str, buf: u64, env: &[(&str, &str)]) -> Peer {
    let mut all = vec![("MC_NETNS_HOST", INITIATOR_HOST.to_string()), ("MC_NETNS_BUF", buf.to_string())];
    all.extend(env.iter().map(|&(k, v)| (k, v.to_string())));
    Peer::start(ns, "role_initiator", &all)
}

fn addr(peer: &Peer) -> u64 {
    peer.ready["addr"].as_u64().expect("addr")
}

/// Opens `target`'s segment on `init`; returns its id.
fn open(init: &mut Peer, target: &Peer) -> i32 {
    let r = init.call(&json!({"cmd": "open", "segment": target.ready["segment"]}), CALL);
    r["id"].as_i64().expect("id") as i32
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn assert_all_completed(r: &Value, what: &str) {
    assert_eq!(r["pending"], 0, "{what}: tasks never ended: {r}");
    assert_eq!(r["completed"], r["tasks"], "{what}: not every task completed: {r}");
    assert_eq!(r["freed"], true, "{what}: batch not freed: {r}");
}

/// Writes `len` bytes from the initiator to the target in `block`-byte requests and checks them
/// on the target; then reads a range the target filled and checks it on the initiator. Both
/// buffers hold at least `2 * len + ODD` bytes. Returns (write, read) milliseconds.
fn round_trip(init: &mut Peer, target: &mut Peer, id: i32, block: u64, len: u64, seed: u64) -> (f64, f64) {
    let count = len / block;
    let remote = addr(target);
    init.call(&json!({"cmd": "fill", "offset": 0, "len": len, "seed": seed}), CALL);
    let w = init.call(
        &json!({"cmd": "run", "id": id, "op": "write", "local": 0, "remote": remote + ODD,
                "block": block, "count": count, "limit_ms": 20_000}),
        CALL,
    );
    assert_all_completed(&w, "write");
    target.call(&json!({"cmd": "verify", "offset": ODD, "len": len, "seed": seed}), CALL);
    target.call(&json!({"cmd": "fill", "offset": len + ODD, "len": len, "seed": seed + 1}), CALL);
    let r = init.call(
        &json!({"cmd": "run", "id": id, "op": "read", "local": len, "remote": remote + len + ODD,
                "block": block, "count": count, "limit_ms": 20_000}),
        CALL,
    );
    assert_all_completed(&r, "read");
    init.call(&json!({"cmd": "verify", "offset": len, "len": len, "seed": seed + 1}), CALL);
    (f64_of(&w["last_end_ms"]), f64_of(&r["last_end_ms"]))
}

/// Starts the big batch (`op`: write, read or mixed) towards `id` and waits until some of it
/// has completed.
fn start_big_batch(init: &mut Peer, target: &Peer, id: i32, op: &str) -> Value {
    init.send(&big_batch(target, id, op, false));
    let p = init.recv(CALL);
    assert_eq!(p["event"], "progress", "the batch ended before the test could break anything: {p}");
    p
}

fn big_batch(target: &Peer, id: i32, op: &str, detach: bool) -> Value {
    json!({"cmd": "run", "id": id, "op": op, "local": BIG_BASE, "remote": addr(target) + BIG_BASE,
           "block": MIB, "count": BIG_COUNT, "local_span": BIG_SPAN, "remote_span": BIG_SPAN,
           "limit_ms": 25_000, "progress_after": 16, "detach": detach})
}

/// Checks the big batch's report: every task ended, some failed, none later than `limit` after
/// the break.
fn check_big_batch_ended(r: &Value, since_break: Duration, limit: Duration, what: &str) {
    assert_eq!(r["reply"], "run", "{r}");
    assert_eq!(r["pending"], 0, "{what}: tasks still in flight {since_break:?} after the break: {r}");
    let (completed, failed) = (r["completed"].as_u64().unwrap(), r["failed"].as_u64().unwrap());
    assert_eq!(completed + failed, BIG_COUNT as u64, "{r}");
    assert!(failed > 0, "{what}: nothing failed; the batch ended before the break: {r}");
    assert!(since_break < limit, "{what}: tasks took {since_break:?} to end (limit {limit:?}): {r}");
    println!(
        "{what}: {completed} completed, {failed} failed; every task ended within {:.1} ms of the break \
         (after submit: progress seen at {} ms, first failure {} ms, last end {} ms)",
        since_break.as_secs_f64() * 1e3,
        r["progress_ms"],
        r["first_fail_ms"],
        r["last_end_ms"]
    );
}

/// Two hosts, target on 198.51.100.1 and initiator on 198.51.100.2.
fn two_hosts(lab: &mut Lab) -> (String, String, Link) {
    let (t_ns, i_ns) = (lab.host("t"), lab.host("i"));
    let link = lab.link(&t_ns, "198.51.100.1/24", &i_ns, "198.51.100.2/24");
    (t_ns, i_ns, link)
}

#[test]
fn transfers_cross_the_veth_link() {
    let Some(mut lab) = Lab::new() else { return };
    let (t_ns, i_ns, _) = two_hosts(&mut lab);
    let len = 6 * MIB;
    let mut target = start_target(&t_ns, TARGET_HOST, 2 * len + 4 * KIB);
    let mut init = start_initiator(&i_ns, 2 * len + 4 * KIB, &[]);
    assert!(target.ready["segment"].as_str().unwrap().starts_with("198.51.100.1:"), "{}", target.ready);
    let id = open(&mut init, &target);
    for (block, seed) in [(64 * KIB, 10), (MIB, 20)] {
        let (w, r) = round_trip(&mut init, &mut target, id, block, len, seed);
        println!("{} KiB blocks: wrote {} MiB in {w} ms, read it back in {r} ms", block / KIB, len / MIB);
    }
    init.finish(EXIT);
    target.finish(EXIT);
}

#[test]
fn killed_peer_fails_in_flight_tasks_at_once() {
    let Some(mut lab) = Lab::new() else { return };
    let (t_ns, i_ns, _) = two_hosts(&mut lab);
    let mut target = start_target(&t_ns, TARGET_HOST, BIG_BUF);
    let mut init = start_initiator(&i_ns, BIG_BUF, &[]);
    let id = open(&mut init, &target);
    start_big_batch(&mut init, &target, id, "mixed");
    let killed = Instant::now();
    target.kill();
    let r = init.recv(CALL);
    check_big_batch_ended(&r, killed.elapsed(), Duration::from_secs(10), "target SIGKILLed");

    // Later work towards the dead segment fails fast too (its host answers: connection refused).
    let dead = init.call(
        &json!({"cmd": "run", "id": id, "op": "write", "local": 0, "remote": addr(&target),
                "block": 64 * KIB, "count": 8, "limit_ms": 20_000}),
        CALL,
    );
    assert_eq!(dead["pending"], 0, "{dead}");
    assert_eq!(dead["statuses"], json!(vec![FAILED; 8]), "{dead}");
    assert!(f64_of(&dead["last_end_ms"]) < 10_000.0, "{dead}");
    println!("new batch to the dead target: all failed within {} ms", dead["last_end_ms"]);

    // The same initiator engine still works with a live target on the same host.
    let mut second = start_target(&t_ns, TARGET_HOST, 8 * MIB + 4 * KIB);
    let id2 = open(&mut init, &second);
    assert_ne!(id2, id);
    let (w, r) = round_trip(&mut init, &mut second, id2, MIB, 4 * MIB, 30);
    println!("second target: wrote 4 MiB in {w} ms, read it back in {r} ms");
    let stop = init.finish(EXIT);
    second.finish(EXIT);
    println!("initiator exited {:.1} ms after its stdin closed", stop.as_secs_f64() * 1e3);
}

#[test]
fn killed_initiator_leaves_the_target_serving() {
    let Some(mut lab) = Lab::new() else { return };
    let (t_ns, i_ns, _) = two_hosts(&mut lab);
    let mut target = start_target(&t_ns, TARGET_HOST, BIG_BUF);
    let mut first = start_initiator(&i_ns, BIG_BUF, &[]);
    let id = open(&mut first, &target);
    start_big_batch(&mut first, &target, id, "mixed");
    first.kill();
    let mut second = start_initiator(&i_ns, 8 * MIB + 4 * KIB, &[]);
    let id = open(&mut second, &target);
    let (w, r) = round_trip(&mut second, &mut target, id, MIB, 4 * MIB, 60);
    println!("after the first initiator was killed: wrote 4 MiB in {w} ms, read it back in {r} ms");
    second.finish(EXIT);
    let stop = target.finish(EXIT);
    println!("target exited {:.1} ms after its stdin closed", stop.as_secs_f64() * 1e3);
}

#[test]
fn dropped_link_fails_in_flight_tasks_within_the_progress_timeout() {
    let Some(mut lab) = Lab::new() else { return };
    let (t_ns, i_ns, link) = two_hosts(&mut lab);
    let o_ns = lab.host("o");
    lab.link(&o_ns, "203.0.113.1/24", &i_ns, OTHER_INITIATOR_CIDR);
    let mut target = start_target(&t_ns, TARGET_HOST, BIG_BUF);
    let mut other = start_target(&o_ns, OTHER_TARGET_HOST, 8 * MIB + 4 * KIB);
    let mut init = start_initiator(&i_ns, BIG_BUF, &[("MC_TCP_PROGRESS_TIMEOUT_SEC", "2")]);
    let id = open(&mut init, &target);
    start_big_batch(&mut init, &target, id, "mixed");
    // The target's end goes down: the initiator's packets vanish and nothing answers. Expect
    // about 2 s; the timeout counts per system call, so a write whose sendmsg still trickles a
    // few bytes into the local socket buffer restarts it (4 s and 6 s seen, now and then).
    let dropped = Instant::now();
    lab.set_link(&link.ns_a, &link.dev, false);
    let r = init.recv(CALL);
    check_big_batch_ended(&r, dropped.elapsed(), Duration::from_secs(15), "link down");

    // Fetching the unreachable peer's descriptor again fails in bounded time; the cached one stays.
    init.send(&json!({"cmd": "open", "segment": target.ready["segment"], "refresh": true}));
    let o = init.recv(CALL);
    assert_eq!(o["ok"], false, "{o}");
    assert!(f64_of(&o["ms"]) < 10_000.0, "{o}");
    println!("refreshing the unreachable segment failed after {} ms: {}", o["ms"], o["error"]);

    // The initiator still works with a peer behind its other link.
    let id2 = open(&mut init, &other);
    let (w, r) = round_trip(&mut init, &mut other, id2, MIB, 4 * MIB, 40);
    println!("other target: wrote 4 MiB in {w} ms, read it back in {r} ms");

    // And with the first target again, once the link is back.
    lab.set_link(&link.ns_a, &link.dev, true);
    let (w, r) = round_trip(&mut init, &mut target, id, MIB, 4 * MIB, 50);
    println!("first target after the link came back: wrote 4 MiB in {w} ms, read it back in {r} ms");
    init.finish(EXIT);
    other.finish(EXIT);
    target.finish(EXIT);
}

#[test]
fn engines_stop_promptly_with_tasks_stuck_on_a_dead_link() {
    let Some(mut lab) = Lab::new() else { return };
    let (t_ns, i_ns, link) = two_hosts(&mut lab);
    let mut target = start_target(&t_ns, TARGET_HOST, BIG_BUF);
    // The default 30 s progress timeout: only stopping the engine can end these tasks soon.
    let mut init = start_initiator(&i_ns, BIG_BUF, &[]);
    let id = open(&mut init, &target);
    init.call(&big_batch(&target, id, "mixed", true), CALL);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = init.call(&json!({"cmd": "status"}), CALL);
        assert_eq!(s["failed"], 0, "{s}");
        if s["completed"].as_u64().unwrap() >= 16 {
            break;
        }
        assert!(Instant::now() < deadline, "the batch made no progress: {s}");
        std::thread::sleep(Duration::from_millis(5));
    }
    lab.set_link(&link.ns_a, &link.dev, false);
    std::thread::sleep(Duration::from_millis(500));
    let s = init.call(&json!({"cmd": "status"}), CALL);
    assert!(s["pending"].as_u64().unwrap() > 0, "the batch ended before the link went down: {s}");
    let took = init.finish(EXIT);
    let stopped = init.recv(Duration::from_secs(1));
    assert_eq!(stopped["event"], "stopped", "{stopped}");
    println!(
        "initiator with {} tasks in flight on a dead link: engine stopped in {} ms, process exited \
         {:.1} ms after its stdin closed",
        s["pending"],
        stopped["ms"],
        took.as_secs_f64() * 1e3
    );
    // The target's connections wait on the dead link too; stopping it must not wait for them.
    let took = target.finish(EXIT);
    println!(
        "target with connections on the dead link exited {:.1} ms after its stdin closed",
        took.as_secs_f64() * 1e3
    );
}

/// A write task reported FAILED must not land in the target's memory later. Two things could
/// deliver its bytes after the failure: the initiator's socket, if a failed connection were
/// closed gracefully (the kernel would keep retransmitting the unsent rest of the request once
/// the path is back; lanes now abort such connections with `SO_LINGER` 0), and segments that
/// had already left the socket and wait in a device queue of the dead link. Those can only be
/// refused by the target's own connection: with the same `MC_TCP_PROGRESS_TIMEOUT_SEC` on both
/// sides (as deployments set it), the target's connection has timed out and closed by the time
/// the link returns, and its kernel answers late segments with a reset.
#[test]
fn failed_write_does_not_land_after_the_link_returns() {
    failed_write_after_link_returns(Some("2"), 0);
}

/// The initiator's part alone: the target keeps its default 30 s timeout, so its connection is
/// still open when the link returns. Only segments that had already left the initiator's
/// socket (at most a few, from device queues) may land; a failed connection closed gracefully
/// used to deliver the whole unsent rest of its request (up to its ~1 MiB send queue).
#[test]
fn failed_write_leaves_no_socket_retransmitting_it() {
    failed_write_after_link_returns(None, 64 << 10);
}

/// Breaks the link during a large write batch, waits until every task has ended, has the
/// target store new data, brings the link back, and checks for 5 s that at most
/// `tolerated` bytes of the failed batch's data land over it.
fn failed_write_after_link_returns(target_timeout: Option<&str>, tolerated: u64) {
    let Some(mut lab) = Lab::new() else { return };
    let (t_ns, i_ns, link) = two_hosts(&mut lab);
    let mut env = vec![("MC_NETNS_HOST", TARGET_HOST.to_string()), ("MC_NETNS_BUF", BIG_BUF.to_string())];
    if let Some(t) = target_timeout {
        env.push(("MC_TCP_PROGRESS_TIMEOUT_SEC", t.to_string()));
    }
    let mut target = Peer::start(&t_ns, "role_target", &env);
    let mut init = start_initiator(&i_ns, BIG_BUF, &[("MC_TCP_PROGRESS_TIMEOUT_SEC", "2")]);
    let id = open(&mut init, &target);
    init.call(&json!({"cmd": "fill", "offset": BIG_BASE, "len": BIG_SPAN, "seed": 5}), CALL);
    start_big_batch(&mut init, &target, id, "write");
    let dropped = Instant::now();
    lab.set_link(&link.ns_a, &link.dev, false);
    let r = init.recv(CALL);
    let ended = Instant::now();
    check_big_batch_ended(&r, dropped.elapsed(), Duration::from_secs(15), "link down");
    // Every task has ended. The target now stores new data where the batch wrote.
    target.call(&json!({"cmd": "fill", "offset": BIG_BASE, "len": BIG_SPAN, "seed": 77}), CALL);
    // The link stays down a little longer than a 2 s target timeout.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(dropped.elapsed()));
    lab.set_link(&link.ns_a, &link.dev, true);
    let up = Instant::now();
    let check = json!({"cmd": "verify", "offset": BIG_BASE, "len": BIG_SPAN, "seed": 77, "old_seed": 5});
    while up.elapsed() < Duration::from_secs(5) {
        target.send(&check);
        let v = target.recv(CALL);
        let changed = v["mismatches"].as_u64().unwrap_or(0);
        assert!(
            changed <= tolerated,
            "{:?} after the link came back (and {:?} after every task had ended), {} bytes of the \
             target's buffer changed (offsets {}..={} past {BIG_BASE}), {} of them the failed batch's data \
             (tolerated: {tolerated}): {v}",
            up.elapsed(),
            ended.elapsed(),
            v["mismatches"],
            v["mismatch"],
            v["last_mismatch"],
            v["old"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    init.finish(EXIT);
    target.finish(EXIT);
}
