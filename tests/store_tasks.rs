//! Copy and move tasks and extra segments against a real `mooncake_master`, with segment
//! owners in other processes (`support::store::Owner`): the owner of the source replica
//! executes a task through its engine, so a killed owner is a real process death.

mod support;

use std::time::{Duration, Instant};

use mooncake::proto::{ReplicaConfig, Request, Response, TaskId, TaskInfo, TaskKind, TaskState};
use mooncake::store::rpc::MasterClient;
use mooncake::store::{ErrorCode, Store, StoreConfig};
use support::store::{Master, Owner, checksum, owner_main};

#[test]
#[ignore = "runs only as a child of the other tests (support::store::Owner)"]
fn owner_process() {
    owner_main();
}

const MIB: u64 = 1 << 20;

fn on(name: &str) -> ReplicaConfig {
    ReplicaConfig { replica_num: 1, preferred_segments: vec![name.to_string()], ..Default::default() }
}

fn inspector(master: &Master) -> MasterClient {
    MasterClient::connect(&master.addr(), rand::random(), Duration::from_secs(5)).expect("connect")
}

/// The segment names holding `key`'s replicas, sorted.
fn holders(master: &MasterClient, key: &str) -> Vec<String> {
    match master.call(&Request::GetReplicas { key: key.into() }) {
        Ok(Response::Object(info)) => {
            let mut names: Vec<String> = info.replicas.into_iter().map(|r| r.segment_name).collect();
            names.sort();
            names
        }
        other => panic!("GetReplicas {key}: {other:?}"),
    }
}

/// Polls `task` until it finishes (at most 20 s); every state seen, in order, and the last
/// answer.
fn wait_task(client: &Store, task: TaskId) -> (Vec<TaskState>, TaskInfo) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let info = client.query_task(task).expect("query_task");
        if seen.last() != Some(&info.state) {
            seen.push(info.state);
        }
        if matches!(info.state, TaskState::Success | TaskState::Failed) {
            return (seen, info);
        }
        assert!(Instant::now() < deadline, "task still {:?} after 20 s", info.state);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_progress(seen: &[TaskState]) {
    assert_eq!(seen.first(), Some(&TaskState::Pending), "a new task is pending until its owner fetches it: {seen:?}");
    let order = |s: &TaskState| *s as u8;
    let mut ranks: Vec<u8> = seen.iter().map(order).collect();
    // PENDING 0 → PROCESSING 1 → SUCCESS 3, never back.
    ranks.dedup();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "states went backwards: {seen:?}");
}

#[test]
fn a_copy_task_adds_a_replica_that_survives_the_source_owner() {
    let master = Master::start(&[]);
    let mut a = Owner::start(&master, 32 * MIB);
    let b = Owner::start(&master, 32 * MIB);
    let client = master.client(0);
    let look = inspector(&master);
    let value = support::pattern(3 * MIB as usize + 17, 5);
    client.put_parts("copied", &[&value], &on(&a.hostname), false).unwrap();
    assert_eq!(holders(&look, "copied"), vec![a.hostname.clone()]);

    let task = client.create_copy_task("copied", &[&b.hostname]).expect("create_copy_task");
    assert_ne!(task, 0);
    let (seen, info) = wait_task(&client, task);
    check_progress(&seen);
    assert_eq!(info.state, TaskState::Success, "{info:?}");
    assert_eq!(info.kind, TaskKind::ReplicaCopy);
    assert_eq!(info.id, task);
    assert_ne!(info.assigned_client, 0);
    assert!(info.created_ms > 0 && info.updated_ms >= info.created_ms, "{info:?}");
    let mut both = vec![a.hostname.clone(), b.hostname.clone()];
    both.sort();
    assert_eq!(holders(&look, "copied"), both);

    // A second copy to a segment that already holds a replica succeeds without a new one.
    let again = client.create_copy_task("copied", &[&b.hostname]).unwrap();
    assert_eq!(wait_task(&client, again).1.state, TaskState::Success);
    assert_eq!(holders(&look, "copied"), both);

    a.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    while holders(&look, "copied").contains(&a.hostname) {
        assert!(Instant::now() < deadline, "the dead owner's replica is still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(checksum(&client.get("copied").unwrap()), checksum(&value), "read from the copy");
    drop(b);
}

#[test]
fn a_move_task_moves_the_replica() {
    let master = Master::start(&[]);
    let a = Owner::start(&master, 32 * MIB);
    let b = Owner::start(&master, 32 * MIB);
    let client = master.client(0);
    let look = inspector(&master);
    let value = support::pattern(MIB as usize, 9);
    client.put_parts("moved", &[&value], &on(&a.hostname), false).unwrap();
    let task = client.create_move_task("moved", &a.hostname, &b.hostname).expect("create_move_task");
    let (seen, info) = wait_task(&client, task);
    check_progress(&seen);
    assert_eq!((info.state, info.kind), (TaskState::Success, TaskKind::ReplicaMove), "{info:?}");
    assert_eq!(holders(&look, "moved"), vec![b.hostname.clone()]);
    // The source owner leaves; the value lives on its new segment.
    a.stop();
    assert_eq!(client.get("moved").unwrap(), value);
    // Moving it from a segment that holds no replica of it is refused.
    let e = client.create_move_task("moved", "127.0.0.1:1", &b.hostname).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    drop(b);
}

#[test]
fn bad_task_input_gets_mooncakes_codes() {
    let master = Master::start(&[]);
    let a = Owner::start(&master, 16 * MIB);
    let b = Owner::start(&master, 16 * MIB);
    let client = master.client(0);
    client.put_parts("k", &[b"value"], &on(&a.hostname), false).unwrap();
    let code = |r: Result<TaskId, mooncake::store::StoreError>| r.unwrap_err().code;
    assert_eq!(code(client.create_copy_task("nokey", &[&b.hostname])), ErrorCode::ObjectNotFound);
    assert_eq!(code(client.create_copy_task("k", &[])), ErrorCode::InvalidParams);
    assert_eq!(code(client.create_copy_task("k", &["127.0.0.1:1"])), ErrorCode::InvalidParams);
    assert_eq!(code(client.create_move_task("nokey", &a.hostname, &b.hostname)), ErrorCode::ObjectNotFound);
    assert_eq!(code(client.create_move_task("k", &a.hostname, &a.hostname)), ErrorCode::InvalidParams);
    assert_eq!(code(client.create_move_task("k", &a.hostname, "127.0.0.1:1")), ErrorCode::InvalidParams);
    assert_eq!(code(client.create_move_task("k", &b.hostname, &a.hostname)), ErrorCode::InvalidParams);
    assert_eq!(client.query_task(12345).unwrap_err().code, ErrorCode::TaskNotFound);
    // Nothing moved.
    assert_eq!(holders(&inspector(&master), "k"), vec![a.hostname.clone()]);
    drop((a, b));
}

fn temp_file(len: u64) -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
    let path = dir.join(format!("mooncake-store-tasks-{}-{}", std::process::id(), rand::random::<u32>()));
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(len).unwrap();
    path
}

#[test]
fn extra_segments_hold_data_and_unmount_with_and_without_grace() {
    let master = Master::start(&[]);
    let other = Owner::start(&master, 16 * MIB);
    let look = inspector(&master);
    let d = master.client(0);
    let client = master.client(0);
    let path = temp_file(8 * MIB);

    // A file segment: what the store writes there lands in the file.
    let ids = d.mount_file_segment(path.to_str().unwrap(), 4 * MIB, 4 * MIB, "tcp", "").expect("mount_segment");
    assert_eq!(ids.len(), 1);
    let (hi, lo) = ids[0].split_once('-').expect("Mooncake's id text");
    assert!(hi.parse::<u64>().is_ok() && lo.parse::<u64>().is_ok(), "{ids:?}");
    let marker = support::pattern(64 * 1024, 77);
    client.put_parts("in-file", &[&marker], &on(&d.hostname()), false).unwrap();
    assert_eq!(holders(&look, "in-file"), vec![d.hostname()]);
    let file = std::fs::read(&path).unwrap();
    assert!(
        file[4 * MIB as usize..].windows(marker.len()).any(|w| w == marker),
        "the value is in the file's mounted range"
    );
    assert!(file[..4 * MIB as usize].iter().all(|&b| b == 0), "nothing before the offset");
    assert_eq!(client.get("in-file").unwrap(), marker);

    // Mooncake's refusals: beyond the file, an unaligned offset, a missing path; size 0 mounts nothing.
    let fail = |r: Result<Vec<String>, mooncake::store::StoreError>| r.unwrap_err().code;
    let p = path.to_str().unwrap();
    assert_eq!(fail(d.mount_file_segment(p, 8 * MIB, 4096, "tcp", "")), ErrorCode::InternalError);
    assert_eq!(fail(d.mount_file_segment(p, 4096, 100, "tcp", "")), ErrorCode::InternalError);
    assert_eq!(fail(d.mount_file_segment("/nonexistent/mooncake", 4096, 0, "tcp", "")), ErrorCode::InternalError);
    assert_eq!(d.mount_file_segment(p, 0, 0, "tcp", "").unwrap(), Vec::<String>::new());
    assert_eq!(d.allocate_and_mount_segment(0, "tcp", "").unwrap_err().code, ErrorCode::InternalError);

    // An allocated segment, rounded to whole 16 MiB slabs (the wheel answers 16 MiB for 5).
    let (alloc_ids, allocated) = d.allocate_and_mount_segment(5 * MIB, "tcp", "").expect("allocate_and_mount_segment");
    assert_eq!((alloc_ids.len(), allocated), (1, 16 * MIB));

    // Ids of the wrong kind or that do not parse are -1; the file segment goes at once.
    assert_eq!(d.unmount_segment(&["not-an-id"], 0), -1);
    assert_eq!(d.unmount_segment(&[alloc_ids[0].as_str()], 0), -1);
    assert_eq!(d.unmount_and_free_segment(&[ids[0].as_str()], 0), -1);
    assert_eq!(d.unmount_segment(&[ids[0].as_str()], 0), 0);
    assert_eq!(client.get("in-file").unwrap_err().code, ErrorCode::ObjectNotFound);
    assert_eq!(d.unmount_segment(&[ids[0].as_str()], 0), -1, "already unmounted");

    // Data on the allocated segment, then a graceful unmount: readable during the grace
    // period, nothing new placed there, gone after it.
    let value = support::pattern(2 * MIB as usize, 4);
    client.put_parts("in-alloc", &[&value], &on(&d.hostname()), false).unwrap();
    assert_eq!(holders(&look, "in-alloc"), vec![d.hostname()]);
    let started = Instant::now();
    assert_eq!(d.unmount_and_free_segment(&[alloc_ids[0].as_str()], 2), 0);
    assert_eq!(
        d.unmount_and_free_segment(&[alloc_ids[0].as_str()], 0),
        -600,
        "already being unmounted (the wheel's -600)"
    );
    assert_eq!(client.get("in-alloc").unwrap(), value, "readable during the grace period");
    client.put_parts("later", &[&value[..4096]], &on(&d.hostname()), false).unwrap();
    assert_eq!(holders(&look, "later"), vec![other.hostname.clone()], "a draining segment takes nothing new");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client.get("in-alloc") {
            Ok(v) => assert_eq!(v, value),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::ObjectNotFound);
                break;
            }
        }
        assert!(Instant::now() < deadline, "the segment outlived its grace period");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "unmounted before the grace period ended");
    std::fs::remove_file(&path).unwrap();
    drop(other);
}

#[test]
fn a_closed_client_refuses_segment_calls() {
    let master = Master::start(&[]);
    let d = Store::setup(&StoreConfig { global_segment_size: 0, ..master.config(0) }).unwrap();
    d.close().unwrap();
    assert_eq!(d.allocate_and_mount_segment(MIB, "tcp", "").unwrap_err().code, ErrorCode::InvalidParams);
    assert_eq!(d.unmount_segment(&["1-2"], 0), -1);
    assert_eq!(d.create_copy_task("k", &["x"]).unwrap_err().code, ErrorCode::InvalidParams);
}
