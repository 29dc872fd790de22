//! Engines behind real etcd and redis servers (cargo features `etcd`, `redis`): two engines
//! find each other and leave no keys; a killed engine's keys expire with its lease; SIGTERM
//! withdraws them at once; a down server fails within the timeout; a server restarted (with
//! its data, or empty) is used again and the engines re-publish; an etcd watch makes a peer
//! follow a segment that changed; a Mooncake wheel engine and ours meet through etcd.
#![cfg(any(feature = "etcd", feature = "redis"))]

mod support;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mooncake::config::Config;
use mooncake::engine::{TransferEngine, TransferRequest};
use mooncake::error::Code;
use mooncake::metadata::KvStore;
use mooncake::transport::Opcode;
use support::servers::{Server, free_port};
use support::*;

const LEASE_TTL: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Etcd,
    Redis,
}

/// The backends this build has.
fn kinds() -> Vec<Kind> {
    let mut k = Vec::new();
    if cfg!(feature = "etcd") {
        k.push(Kind::Etcd);
    }
    if cfg!(feature = "redis") {
        k.push(Kind::Redis);
    }
    k
}

fn start(kind: Kind) -> Option<Server> {
    match kind {
        Kind::Etcd => Server::etcd(),
        Kind::Redis => Server::redis(),
    }
}

fn config() -> Config {
    let mut c = Config::from_env();
    c.bind_address = Some("127.0.0.1".into());
    c.metadata_refresh = Duration::from_millis(100);
    c.metadata_timeout = Duration::from_millis(1500);
    c.metadata_lease_ttl = LEASE_TTL;
    c
}

fn engine_at(url: &str, name: &str) -> mooncake::engine::Result<TransferEngine> {
    engine_behind(url, name, config())
}

/// A plain client of the server, to look at the keys the engines left.
fn raw(kind: Kind, url: &str) -> Box<dyn KvStore> {
    let rt = mooncake::runtime::acquire().unwrap();
    match kind {
        #[cfg(feature = "etcd")]
        Kind::Etcd => Box::new(
            mooncake::metadata::etcd::EtcdKv::connect(rt, url.trim_start_matches("etcd://"), &config()).unwrap(),
        ),
        #[cfg(feature = "redis")]
        Kind::Redis => Box::new(mooncake::metadata::redis::RedisKv::connect(rt, url, &config()).unwrap()),
        #[allow(unreachable_patterns)]
        _ => panic!("{kind:?} is not in this build"),
    }
}

fn keys_of(name: &str) -> [String; 2] {
    [format!("mooncake/rpc_meta/{name}"), format!("mooncake/ram/{name}")]
}

/// Both keys of `name` are there. A failed read counts as "no": a server just restarted may
/// not answer yet (it elects itself leader first), and the callers poll or assert.
fn present(kv: &dyn KvStore, name: &str) -> bool {
    keys_of(name).iter().all(|k| matches!(kv.get(k), Ok(Some(_))))
}

/// Neither key of `name` is there (a failed read counts as "no", as above).
fn absent(kv: &dyn KvStore, name: &str) -> bool {
    keys_of(name).iter().all(|k| matches!(kv.get(k), Ok(None)))
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_engines_meet_and_leave_no_keys() {
    for kind in kinds() {
        let Some(srv) = start(kind) else { continue };
        let url = srv.url();
        let kv = raw(kind, &url);
        // etcd: a bare host:port selects it too, and of several endpoints a dead one is skipped
        let (url_a, url_b) = match kind {
            Kind::Etcd => {
                (format!("127.0.0.1:{}", srv.port), format!("etcd://127.0.0.1:{},127.0.0.1:{}", free_port(), srv.port))
            }
            Kind::Redis => (url.clone(), url.clone()),
        };
        let a = engine_at(&url_a, "node-a").unwrap();
        let b = engine_at(&url_b, "node-b").unwrap();
        let mut mem = vec![0u8; 1 << 20];
        b.register_memory(mem.as_mut_ptr() as u64, 1 << 20, "cpu:0", true).unwrap();
        // Mooncake's values: compact JSON ending with a newline
        let desc = String::from_utf8(kv.get("mooncake/ram/node-b").unwrap().unwrap()).unwrap();
        assert!(desc.ends_with("}\n") && !desc.contains(": "), "{kind:?}: {desc:?}");
        assert!(desc.contains(&(mem.as_ptr() as u64).to_string()), "{kind:?}: no buffer in {desc}");
        let rpc = String::from_utf8(kv.get("mooncake/rpc_meta/node-b").unwrap().unwrap()).unwrap();
        assert!(rpc.starts_with("{\"ip_or_host_name\":\"127.0.0.1\",\"rpc_port\":"), "{kind:?}: {rpc:?}");
        write_and_read_back(&a, "node-b", mem.as_ptr() as u64, 1 << 20, 7);
        assert_eq!(&mem[..], &pattern(1 << 20, 7)[..]);
        drop(a);
        drop(b);
        assert!(absent(&*kv, "node-a") && absent(&*kv, "node-b"), "{kind:?}: keys left after destroy");
    }
}

#[test]
fn a_down_server_fails_within_the_timeout() {
    for kind in kinds() {
        let port = free_port();
        let url = match kind {
            Kind::Etcd => format!("etcd://127.0.0.1:{port}"),
            Kind::Redis => format!("redis://127.0.0.1:{port}"),
        };
        let t = Instant::now();
        let err = engine_at(&url, "nobody").err().expect("must fail");
        assert_eq!(err.code, Code::Metadata, "{kind:?}: {}", err.message);
        assert!(t.elapsed() < Duration::from_secs(10), "{kind:?}: took {:?}", t.elapsed());
    }
}

/// A server that stops answering (SIGSTOP: connections stay open, nothing comes back) fails
/// calls with ERR_METADATA within the timeout; once it answers again (SIGCONT) the same engine
/// uses it without being restarted.
#[test]
fn a_stalled_server_times_out_and_is_used_again() {
    for kind in kinds() {
        let Some(srv) = start(kind) else { continue };
        let url = srv.url();
        let a = engine_at(&url, "s-a").unwrap();
        let b = engine_at(&url, "s-b").unwrap();
        let mut mem = vec![0u8; 1 << 16];
        b.register_memory(mem.as_mut_ptr() as u64, 1 << 16, "cpu:0", true).unwrap();
        srv.signal(libc::SIGSTOP);
        let t = Instant::now();
        let err = a.open_segment("s-b", false).unwrap_err();
        let waited = t.elapsed();
        srv.signal(libc::SIGCONT);
        assert_eq!(err.code, Code::Metadata, "{kind:?}: {}", err.message);
        assert!(waited < Duration::from_secs(10), "{kind:?}: took {waited:?}");
        // the stall may have outlasted the lease: then the publisher puts the keys back
        let kv = raw(kind, &url);
        wait_until(&format!("{kind:?}: s-b published after the stall"), Duration::from_secs(15), || {
            present(&*kv, "s-b")
        });
        write_and_read_back(&a, "s-b", mem.as_ptr() as u64, 1 << 16, 41);
    }
}

/// Found by CI (the Python suites behind etcd): notifications of batches completed one after
/// the other arrived out of order, because each completion looked the peer's handshake
/// address up in the service on its own lane thread before sending.
#[test]
fn batch_notifications_arrive_in_order() {
    for kind in kinds() {
        let Some(srv) = start(kind) else { continue };
        let url = srv.url();
        let a = engine_at(&url, "o-a").unwrap();
        let b = engine_at(&url, "o-b").unwrap();
        let mut src = pattern(4096, 51);
        let mut dst = vec![0u8; 4096];
        a.register_memory(src.as_mut_ptr() as u64, 4096, "cpu:0", true).unwrap();
        b.register_memory(dst.as_mut_ptr() as u64, 4096, "cpu:0", true).unwrap();
        let seg = a.open_segment("o-b", false).unwrap();
        const N: usize = 60;
        for i in 0..N {
            let w = TransferRequest {
                opcode: Opcode::Write,
                source: src.as_ptr() as u64,
                target_id: seg,
                target_offset: dst.as_ptr() as u64,
                length: 64,
            };
            let batch = a.allocate_batch(1).unwrap();
            a.submit(batch, &[w], Some((format!("n{i}"), format!("m{i}")))).unwrap();
            assert_eq!(wait_batch(&a, batch, 1, Duration::from_secs(5)), vec![4]);
            a.free_batch(batch).unwrap();
        }
        let mut got = Vec::new();
        wait_until("every notification", Duration::from_secs(10), || {
            got.extend(b.take_notifies());
            got.len() >= N
        });
        let want: Vec<_> = (0..N).map(|i| (format!("n{i}"), format!("m{i}"))).collect();
        assert_eq!(got, want, "{kind:?}");
    }
}

/// The child role of the kill tests: an engine named by MOONCAKE_BACKEND_CHILD
/// (`<url>|<name>`), with graceful shutdown on, that prints READY and waits.
#[test]
fn backend_child() {
    let Ok(spec) = std::env::var("MOONCAKE_BACKEND_CHILD") else { return };
    let (url, name) = spec.split_once('|').unwrap();
    let e = engine_at(url, name).unwrap();
    e.enable_graceful_shutdown().unwrap();
    println!("\nREADY");
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(3);
}

fn spawn_child(url: &str, name: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "backend_child", "--nocapture", "--test-threads=1"])
        .env("MOONCAKE_BACKEND_CHILD", format!("{url}|{name}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
        if line.trim() == "READY" {
            break;
        }
    }
    child
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child by its PID.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn a_killed_engine_disappears_when_its_lease_expires() {
    if std::env::var_os("MOONCAKE_BACKEND_CHILD").is_some() {
        return;
    }
    for kind in kinds() {
        let Some(srv) = start(kind) else { continue };
        let kv = raw(kind, &srv.url());
        let mut child = spawn_child(&srv.url(), "killed");
        assert!(present(&*kv, "killed"), "{kind:?}: the child did not publish");
        // Still there a while after its last keep-alive: the keys outlive it by the TTL, no more.
        std::thread::sleep(LEASE_TTL / 3);
        assert!(present(&*kv, "killed"), "{kind:?}: keys vanished while the child lived");
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        let killed_at = Instant::now();
        wait_until(&format!("{kind:?}: the killed engine's keys expire"), LEASE_TTL * 5, || absent(&*kv, "killed"));
        eprintln!("{kind:?}: keys gone {:?} after SIGKILL (TTL {LEASE_TTL:?})", killed_at.elapsed());
    }
}

#[test]
fn sigterm_withdraws_the_segment_at_once() {
    if std::env::var_os("MOONCAKE_BACKEND_CHILD").is_some() {
        return;
    }
    for kind in kinds() {
        let Some(srv) = start(kind) else { continue };
        let kv = raw(kind, &srv.url());
        let mut child = spawn_child(&srv.url(), "terminated");
        assert!(present(&*kv, "terminated"));
        signal(&child, libc::SIGTERM);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{kind:?}");
        // at once: no waiting for the lease
        assert!(absent(&*kv, "terminated"), "{kind:?}: keys left after SIGTERM");
    }
}

#[test]
fn a_restarted_server_is_used_again_and_engines_republish() {
    for kind in kinds() {
        let Some(mut srv) = start(kind) else { continue };
        let url = srv.url();
        let a = engine_at(&url, "r-a").unwrap();
        let b = engine_at(&url, "r-b").unwrap();
        let mut mem = vec![0u8; 1 << 16];
        b.register_memory(mem.as_mut_ptr() as u64, 1 << 16, "cpu:0", true).unwrap();
        srv.stop();
        let t = Instant::now();
        let err = a.open_segment("r-b", false).unwrap_err();
        assert_eq!(err.code, Code::Metadata, "{kind:?}: {}", err.message);
        assert!(t.elapsed() < Duration::from_secs(10));
        // etcd keeps its data (and the leases) across a restart; then it comes back empty
        // (redis always does, having no persistence here).
        let restarts = if kind == Kind::Etcd { vec![false, true] } else { vec![true] };
        for (i, wipe) in restarts.into_iter().enumerate() {
            if i > 0 {
                srv.stop();
            }
            if wipe && kind == Kind::Etcd {
                srv.wipe();
            }
            srv.start();
            let kv = raw(kind, &url);
            wait_until(&format!("{kind:?} (wiped: {wipe}): both engines re-publish"), Duration::from_secs(15), || {
                present(&*kv, "r-a") && present(&*kv, "r-b")
            });
            let desc = String::from_utf8(kv.get("mooncake/ram/r-b").unwrap().unwrap()).unwrap();
            assert!(desc.contains(&(mem.as_ptr() as u64).to_string()), "{kind:?}: the buffer is missing: {desc}");
            write_and_read_back(&a, "r-b", mem.as_ptr() as u64, 1 << 16, 9 + i as u64);
            // the keys live on under the (new) lease
            std::thread::sleep(LEASE_TTL * 2);
            assert!(present(&*kv, "r-b"), "{kind:?}: keys expired although the engine lives");
        }
        drop(a);
        drop(b);
        let kv = raw(kind, &url);
        assert!(absent(&*kv, "r-a") && absent(&*kv, "r-b"), "{kind:?}: keys left after destroy");
    }
}

/// With etcd, a peer watching the segments follows a segment that was replaced: the engine
/// behind the name restarted on other ports, and the next transfer uses the new descriptor
/// without the initiator reopening it.
#[cfg(feature = "etcd")]
#[test]
fn an_etcd_watch_makes_peers_follow_a_changed_segment() {
    let Some(srv) = start(Kind::Etcd) else { return };
    let url = srv.url();
    let a = engine_at(&url, "w-a").unwrap();
    let mut mem = vec![0u8; 1 << 16];
    let b = engine_at(&url, "w-b").unwrap();
    b.register_memory(mem.as_mut_ptr() as u64, 1 << 16, "cpu:0", true).unwrap();
    write_and_read_back(&a, "w-b", mem.as_ptr() as u64, 4096, 21);
    drop(b);
    let b = engine_at(&url, "w-b").unwrap();
    b.register_memory(mem.as_mut_ptr() as u64, 1 << 16, "cpu:0", true).unwrap();
    // the segment stays open in `a`; its cached descriptor names the old engine's ports
    let seg = a.open_segment("w-b", false).unwrap();
    let mut src = pattern(4096, 22);
    a.register_memory(src.as_mut_ptr() as u64, 4096, "cpu:0", true).unwrap();
    let w = TransferRequest {
        opcode: Opcode::Write,
        source: src.as_ptr() as u64,
        target_id: seg,
        target_offset: mem.as_ptr() as u64,
        length: 4096,
    };
    wait_until("the watch reaches w-a", Duration::from_secs(5), || run_batch(&a, &[w]) == vec![4]);
    assert_eq!(&mem[..4096], &src[..]);
}

/// A Mooncake wheel engine and ours meet through etcd, when the wheel's build has etcd.
#[cfg(feature = "etcd")]
#[test]
fn mixed_fleet_through_etcd() {
    let Some(py) = support::wheel::python() else { return };
    let Some(srv) = start(Kind::Etcd) else { return };
    let url = srv.url();
    let name = format!("wheel-{}", std::process::id());
    let mut wheel = support::wheel::WheelPeer::start_with(
        &py,
        8 << 20,
        &[("MC_TCP_BIND_ADDRESS", "127.0.0.1")],
        &["--metadata", &url, "--name", &name],
    );
    let ours = engine_at(&url, &format!("ours-{}", std::process::id())).unwrap();
    write_and_read_back(&ours, &name, wheel.addr, 1 << 20, 31);
    assert_eq!(wheel.bytes(0, 64), pattern(64, 31));
    let mut mem = vec![0u8; 1 << 20];
    ours.register_memory(mem.as_mut_ptr() as u64, 1 << 20, "cpu:0", true).unwrap();
    wheel.fill(0, 1 << 20, 33);
    assert_eq!(wheel.transfer("write", ours.server_name(), &[0], &[mem.as_ptr() as u64], &[1 << 20]), 0);
    assert_eq!(&mem[..], &pattern(1 << 20, 33)[..]);
}
