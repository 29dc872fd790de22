//! The same-host transport (`src/transport/shm/`): engines in this process and in child
//! processes (this test binary run again in a child role) copy straight between address spaces.
//! Covered: data in both directions at every size, ranges outside the target's regions refused
//! with the guards intact, unregistering while another process copies in a loop (no byte lands
//! after the call returned), a copier killed mid-copy, a copier stopped mid-copy (cut off after
//! the revoke timeout), another user and another pid namespace falling back to TCP, and
//! `MOONCAKE_SHM=off|require`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mooncake::config::{Config, SameHost};
use mooncake::engine::{EngineOptions, TransferEngine, TransferRequest};
use mooncake::transport::Opcode;
use support::{pattern, run_batch};

const GUARD: usize = 4096;

fn engine_with(same_host: SameHost) -> TransferEngine {
    let mut config = Config::from_env();
    config.same_host = same_host;
    TransferEngine::with_config(EngineOptions::p2p("127.0.0.1"), config).expect("engine")
}

fn engine() -> TransferEngine {
    engine_with(SameHost::Auto)
}

fn req(opcode: Opcode, source: u64, target_id: i32, target_offset: u64, length: u64) -> TransferRequest {
    TransferRequest { opcode, source, target_id, target_offset, length }
}

fn transports(e: &TransferEngine) -> Vec<&'static str> {
    e.links().iter().map(|l| l.transport).collect()
}

fn read_volatile_all(ptr: *const u8, len: usize) -> Vec<u8> {
    // SAFETY: the caller passes a live buffer of `len` bytes it owns (other processes may be
    // writing into it, hence volatile reads).
    (0..len).map(|i| unsafe { std::ptr::read_volatile(ptr.add(i)) }).collect()
}

#[test]
fn same_host_moves_every_size_both_ways() {
    let (a, b) = (engine(), engine());
    let size = 40 << 20;
    let mut src = pattern(size, 3);
    let mut dst = vec![0u8; size];
    let mut back = vec![0u8; size];
    a.register_memory(src.as_mut_ptr() as u64, size as u64, "cpu:0", true).unwrap();
    a.register_memory(back.as_mut_ptr() as u64, size as u64, "cpu:0", true).unwrap();
    b.register_memory(dst.as_mut_ptr() as u64, size as u64, "cpu:0", true).unwrap();
    let seg = a.open_segment(b.server_name(), false).unwrap();
    let d = dst.as_ptr() as u64;
    // Sizes from one byte to several slices (4 MiB each) spread over the copy workers.
    let mut offset = 0u64;
    for len in [1u64, 7, 4095, 4096, 65_537, 1 << 20, (16 << 20) + 3] {
        let s = src.as_ptr() as u64 + offset;
        assert_eq!(run_batch(&a, &[req(Opcode::Write, s, seg, d + offset, len)]), vec![4], "write {len}");
        let r = back.as_ptr() as u64 + offset;
        assert_eq!(run_batch(&a, &[req(Opcode::Read, r, seg, d + offset, len)]), vec![4], "read {len}");
        offset += len + 13;
    }
    // Everything that was written is exactly the source; the read-back matches too.
    let mut o = 0usize;
    for len in [1usize, 7, 4095, 4096, 65_537, 1 << 20, (16 << 20) + 3] {
        assert!(dst[o..o + len] == src[o..o + len], "written bytes at {o}+{len}");
        assert!(back[o..o + len] == src[o..o + len], "read-back bytes at {o}+{len}");
        o += len + 13;
    }
    // A batch of 128 scattered 4 KiB blocks in one submission.
    let blocks = support::scattered(128, size / 4096, 9);
    let reqs: Vec<_> = blocks
        .iter()
        .enumerate()
        .map(|(i, &blk)| {
            req(Opcode::Write, src.as_ptr() as u64 + (i * 4096) as u64, seg, d + (blk * 4096) as u64, 4096)
        })
        .collect();
    assert!(run_batch(&a, &reqs).iter().all(|&s| s == 4));
    for (i, &blk) in blocks.iter().enumerate() {
        assert!(dst[blk * 4096..(blk + 1) * 4096] == src[i * 4096..(i + 1) * 4096], "block {i}");
    }
    assert_eq!(transports(&a), vec!["shm"], "the same-host transport carried it");
}

#[test]
fn ranges_outside_the_targets_regions_are_refused() {
    let (a, b) = (engine(), engine());
    let mut src = pattern(1 << 20, 5);
    a.register_memory(src.as_mut_ptr() as u64, 1 << 20, "cpu:0", true).unwrap();
    let mut mem = vec![0xEEu8; (1 << 20) + 2 * GUARD];
    let base = mem.as_mut_ptr() as u64 + GUARD as u64;
    let half = 1u64 << 19;
    b.register_memory(base, half, "cpu:0", true).unwrap();
    b.register_memory(base + half, half, "cpu:0", true).unwrap();
    let mut private = vec![0xEEu8; 4096];
    b.register_memory(private.as_mut_ptr() as u64, 4096, "cpu:0", false).unwrap();
    let seg = a.open_segment(b.server_name(), false).unwrap();
    let s = src.as_ptr() as u64;
    let refused = [
        (base - 16, 64),                 // starts in the front guard
        (base + (1 << 20) - 16, 64),     // runs into the back guard
        (base + (1 << 20), 16),          // entirely behind
        (base + half - 8, 16),           // spans the two adjacent registrations
        (private.as_ptr() as u64, 4096), // registered, but not remotely accessible
        (u64::MAX - 8, 8),               // nowhere
    ];
    for (addr, len) in refused {
        assert_eq!(run_batch(&a, &[req(Opcode::Write, s, seg, addr, len)]), vec![6], "write {addr:#x}+{len}");
        assert_eq!(run_batch(&a, &[req(Opcode::Read, s, seg, addr, len)]), vec![6], "read {addr:#x}+{len}");
    }
    // One refused entry fails alone; the good ones of the same batch complete.
    let mixed = [req(Opcode::Write, s, seg, base, 4096), req(Opcode::Write, s, seg, base - 16, 64)];
    assert_eq!(run_batch(&a, &mixed), vec![4, 6]);
    assert!(mem[..GUARD].iter().all(|&b| b == 0xEE), "front guard changed");
    assert!(mem[GUARD + (1 << 20)..].iter().all(|&b| b == 0xEE), "back guard changed");
    assert!(mem[GUARD + 4096..GUARD + (1 << 20)].iter().all(|&b| b == 0xEE), "a refused write landed");
    assert!(private.iter().all(|&b| b == 0xEE), "the private region changed");
    assert_eq!(&mem[GUARD..GUARD + 4096], &src[..4096]);
    assert_eq!(transports(&a), vec!["shm"]);
}

#[test]
fn off_uses_tcp_and_require_refuses_a_peer_without_the_offer() {
    let target = engine_with(SameHost::Off);
    target.install_transport("tcp").unwrap();
    let mut dst = vec![0u8; 4096];
    target.register_memory(dst.as_mut_ptr() as u64, 4096, "cpu:0", true).unwrap();
    assert!(target.local_descriptor().extensions.shm.is_none(), "off: nothing offered");
    let auto = engine();
    support::write_and_read_back(&auto, target.server_name(), dst.as_ptr() as u64, 4096, 2);
    assert_eq!(transports(&auto), vec!["tcp"]);
    let strict = engine_with(SameHost::Require);
    let mut src = vec![1u8; 4096];
    strict.register_memory(src.as_mut_ptr() as u64, 4096, "cpu:0", true).unwrap();
    let seg = strict.open_segment(target.server_name(), false).unwrap();
    let b = strict.allocate_batch(1).unwrap();
    let err =
        strict.submit(b, &[req(Opcode::Write, src.as_ptr() as u64, seg, dst.as_ptr() as u64, 4096)], None).unwrap_err();
    assert_eq!(err.code, mooncake::error::Code::NotSupportedTransport, "{err:?}");
    // A client that turned it off does not use it either, even towards a target offering it.
    let offering = engine();
    offering.install_transport("tcp").unwrap();
    let mut dst2 = vec![0u8; 4096];
    offering.register_memory(dst2.as_mut_ptr() as u64, 4096, "cpu:0", true).unwrap();
    let off = engine_with(SameHost::Off);
    support::write_and_read_back(&off, offering.server_name(), dst2.as_ptr() as u64, 4096, 4);
    assert_eq!(transports(&off), vec!["tcp"]);
}

// ---------------------------------------------------------------------------------------------
// Child processes: this binary, run again as a writer.

/// The writer role: writes `MC_CHILD_LEN` bytes of pattern `MC_CHILD_SEED` to `MC_CHILD_ADDR`
/// of segment `MC_CHILD_TARGET` in a loop, prints `FIRST_OK <transport>` after the first
/// success, and stops when stdin closes (or after 60 s).
#[test]
fn shm_writer_child() {
    let Ok(target) = std::env::var("MC_CHILD_TARGET") else { return };
    let num = |k: &str| std::env::var(k).unwrap().parse::<u64>().unwrap();
    let (addr, len, seed) = (num("MC_CHILD_ADDR"), num("MC_CHILD_LEN"), num("MC_CHILD_SEED"));
    let e = TransferEngine::new(EngineOptions::p2p("127.0.0.1")).unwrap();
    e.install_transport("tcp").unwrap();
    let mut src = pattern(len as usize, seed);
    e.register_memory(src.as_mut_ptr() as u64, len, "cpu:0", true).unwrap();
    let seg = e.open_segment(&target, false).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink); // EOF or a line: stop
        stop2.store(true, std::sync::atomic::Ordering::Release);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first = true;
    let w = [req(Opcode::Write, src.as_ptr() as u64, seg, addr, len)];
    while !stop.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
        let outcome = e.transfer_sync(&w, None, Duration::from_secs(10));
        let ok = matches!(outcome, Ok(mooncake::engine::BatchOutcome::Completed));
        if first && !ok {
            eprintln!("writer: {outcome:?}");
        }
        if ok && first {
            first = false;
            let t = e.links().iter().map(|l| l.transport).collect::<Vec<_>>().join(",");
            println!("FIRST_OK {t}");
            std::io::stdout().flush().unwrap();
        }
    }
    drop(src);
    std::process::exit(0);
}

struct Writer {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Writer {
    fn spawn(exe: &std::path::Path, target: &str, addr: u64, len: u64, as_nobody: bool) -> Writer {
        Writer::spawn_in(Command::new(exe), target, addr, len, as_nobody)
    }

    /// `cmd` runs this test binary (directly, or through a wrapper such as `unshare`).
    fn spawn_in(mut cmd: Command, target: &str, addr: u64, len: u64, as_nobody: bool) -> Writer {
        cmd.args(["--exact", "shm_writer_child", "--nocapture", "--test-threads=1"])
            .env("MC_CHILD_TARGET", target)
            .env("MC_CHILD_ADDR", addr.to_string())
            .env("MC_CHILD_LEN", len.to_string())
            .env("MC_CHILD_SEED", "11")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if as_nobody {
            use std::os::unix::process::CommandExt;
            cmd.uid(65534).gid(65534);
        }
        let mut child = cmd.spawn().expect("spawn writer");
        let out = BufReader::new(child.stdout.take().unwrap());
        Writer { child, out }
    }

    /// The transport the child's first successful write went over.
    fn first_ok(&mut self) -> String {
        loop {
            let mut line = String::new();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "writer exited before its first write");
            // libtest prints `test shm_writer_child ... ` without a newline first.
            if let Some((_, t)) = line.split_once("FIRST_OK ") {
                return t.trim().to_string();
            }
            eprint!("writer: {line}");
        }
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("writer did not stop");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit` (a hang).
fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

#[test]
fn unregister_while_another_process_copies_in_a_loop() {
    let target = std::sync::Arc::new(engine());
    let len = 1usize << 20;
    let mut mem = vec![0u8; len];
    let base = mem.as_mut_ptr() as u64;
    target.register_memory(base, len as u64, "cpu:0", true).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut writer = Writer::spawn(&exe, target.server_name(), base, 64 << 10, false);
    assert_eq!(writer.first_ok(), "shm", "the writer must use the same-host path");
    for round in 0..100 {
        // Wait (bounded) until the writer's bytes land again after the last re-registration.
        let deadline = Instant::now() + Duration::from_secs(10);
        while read_volatile_all(mem.as_ptr(), 64).iter().all(|&b| b == 0) {
            assert!(Instant::now() < deadline, "round {round}: the writer's bytes never landed");
            std::thread::sleep(Duration::from_micros(200));
        }
        let t = target.clone();
        within(Duration::from_secs(20), "unregister", move || t.unregister_memory(base)).unwrap();
        // From here on, no byte may land: clear the region and watch it.
        for i in 0..len {
            // SAFETY: our own live buffer.
            unsafe { std::ptr::write_volatile(mem.as_mut_ptr().add(i), 0) };
        }
        std::thread::sleep(Duration::from_millis(10));
        let landed = read_volatile_all(mem.as_ptr(), len).iter().filter(|&&b| b != 0).count();
        assert_eq!(landed, 0, "round {round}: {landed} bytes landed after unregister returned");
        target.register_memory(base, len as u64, "cpu:0", true).unwrap();
    }
    writer.stop();
}

#[test]
fn a_copier_killed_mid_copy_does_not_hold_up_the_target() {
    let target = std::sync::Arc::new(engine());
    let len = 64usize << 20;
    let mut mem = vec![0u8; len];
    let base = mem.as_mut_ptr() as u64;
    target.register_memory(base, len as u64, "cpu:0", true).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut writer = Writer::spawn(&exe, target.server_name(), base, len as u64, false);
    assert_eq!(writer.first_ok(), "shm");
    std::thread::sleep(Duration::from_millis(15)); // well inside a later 64 MiB copy
    writer.child.kill().unwrap(); // SIGKILL
    writer.child.wait().unwrap();
    let t = target.clone();
    // A dead copier's slot is free at once (the kernel dropped its lock): no revoke timeout.
    within(Duration::from_secs(20), "unregister after the copier died", move || t.unregister_memory(base)).unwrap();
    target.register_memory(base, len as u64, "cpu:0", true).unwrap();
    // The target serves new copiers, in other processes and in this one.
    let mut again = Writer::spawn(&exe, target.server_name(), base, 4096, false);
    assert_eq!(again.first_ok(), "shm");
    again.stop();
    let other = engine();
    support::write_and_read_back(&other, target.server_name(), base + 4096, 4096, 6);
}

/// A copy of this test binary that every user may run (the build directory may not be).
fn world_executable_copy() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mooncake-shm-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("shm-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tcp-capable target with 1 MiB registered; the writer `spawn` starts (given the target's
/// name and address) must end up on tcp, and its bytes must arrive intact.
fn falls_back_to_tcp(why: &str, spawn: impl FnOnce(&str, u64, u64) -> Writer) {
    let target = engine();
    target.install_transport("tcp").unwrap();
    let len = 1usize << 20;
    let mut mem = vec![0u8; len];
    let base = mem.as_mut_ptr() as u64;
    target.register_memory(base, len as u64, "cpu:0", true).unwrap();
    let mut writer = spawn(target.server_name(), base, len as u64);
    assert_eq!(writer.first_ok(), "tcp", "{why}");
    writer.stop();
    assert!(mem == pattern(len, 11), "the bytes came over tcp intact");
}

#[test]
fn another_user_falls_back_to_tcp() {
    if !is_root() {
        eprintln!("skipped: needs root to start a process of another user");
        return;
    }
    let exe = world_executable_copy();
    falls_back_to_tcp("another user's process may not copy into ours", |name, base, len| {
        Writer::spawn(&exe, name, base, len, true)
    });
    let _ = std::fs::remove_dir_all(exe.parent().unwrap());
}

#[test]
fn another_pid_namespace_falls_back_to_tcp() {
    if !is_root() || Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and unshare(1) to start a process in a new pid namespace");
        return;
    }
    falls_back_to_tcp("a process in another pid namespace cannot prove who the target is", |name, base, len| {
        // A container's view: its own pid namespace and /proc, the same kernel and network.
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"]).arg(std::env::current_exe().unwrap());
        Writer::spawn_in(cmd, name, base, len, false)
    });
}

/// The target role for the cut-off test: an engine (run as an unprivileged user) with a 64 MiB
/// region, driven over stdin: `unregister` (prints `UNREGISTERED <ms>`, then clears the region,
/// waits 200 ms while the copier runs on, and prints `LANDED <bytes>`), `dumpable` (prints
/// `DUMPABLE <n>`), `quit`.
#[test]
fn shm_target_child() {
    if std::env::var_os("MC_CHILD_TARGET_ROLE").is_none() {
        return;
    }
    let e = TransferEngine::new(EngineOptions::p2p("127.0.0.1")).unwrap();
    e.install_transport("tcp").unwrap();
    let len = 64usize << 20;
    let mut mem = vec![0u8; len];
    let base = mem.as_mut_ptr() as u64;
    e.register_memory(base, len as u64, "cpu:0", true).unwrap();
    println!("\nTARGET {} {base}", e.server_name());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    while {
        line.clear();
        std::io::stdin().read_line(&mut line).unwrap_or(0) > 0
    } {
        match line.trim() {
            "unregister" => {
                let start = Instant::now();
                e.unregister_memory(base).unwrap();
                println!("UNREGISTERED {}", start.elapsed().as_millis());
                std::io::stdout().flush().unwrap();
                for i in 0..len {
                    // SAFETY: our own live buffer.
                    unsafe { std::ptr::write_volatile(mem.as_mut_ptr().add(i), 0) };
                }
                std::thread::sleep(Duration::from_millis(200));
                let landed = read_volatile_all(mem.as_ptr(), len).iter().filter(|&&b| b != 0).count();
                println!("LANDED {landed}");
            }
            "dumpable" => {
                // SAFETY: prctl with integer arguments.
                println!("DUMPABLE {}", unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) });
            }
            _ => break,
        }
        std::io::stdout().flush().unwrap();
    }
    drop(mem);
    std::process::exit(0);
}

fn read_tagged(out: &mut BufReader<std::process::ChildStdout>, tag: &str) -> String {
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited before printing {tag}");
        if let Some((_, rest)) = line.split_once(tag) {
            return rest.trim().to_string();
        }
    }
}

/// A copier stopped (SIGSTOP) in the middle of a copy holds its slot busy: unregistering waits
/// the revoke timeout, cuts it off (the target turns non-dumpable, so the kernel refuses the
/// unprivileged copier), and returns; after SIGCONT no byte lands, the copier goes on over TCP,
/// and the target becomes dumpable again once the copier's op is over.
#[test]
fn a_stalled_copier_is_cut_off() {
    if !is_root() {
        eprintln!("skipped: needs root to run both sides as an unprivileged user");
        return;
    }
    use std::os::unix::process::CommandExt;
    let exe = world_executable_copy();
    let mut tcmd = Command::new(&exe);
    tcmd.args(["--exact", "shm_target_child", "--nocapture", "--test-threads=1"])
        .env("MC_CHILD_TARGET_ROLE", "1")
        .env("MOONCAKE_SHM_REVOKE_TIMEOUT_MS", "300")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .uid(65534)
        .gid(65534);
    let mut target = tcmd.spawn().expect("spawn target");
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut tout = BufReader::new(target.stdout.take().unwrap());
    let mut tin = target.stdin.take().unwrap();
    let _target = KillOnDrop(target);
    let line = read_tagged(&mut tout, "TARGET ");
    let (name, base) = line.split_once(' ').unwrap();
    let base: u64 = base.parse().unwrap();
    let mut writer = Writer::spawn(&exe, name, base, 64 << 20, true);
    assert_eq!(writer.first_ok(), "shm");
    std::thread::sleep(Duration::from_millis(30));
    let pid = writer.child.id() as i32;
    // SAFETY: signals to our own child, by its PID.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_millis(50));
    writeln!(tin, "unregister").unwrap();
    let waited: u64 = read_tagged(&mut tout, "UNREGISTERED ").parse().unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let landed: u64 = read_tagged(&mut tout, "LANDED ").parse().unwrap();
    assert_eq!(landed, 0, "bytes landed after unregister returned (it waited {waited} ms)");
    // The stop lands at the end of a copy (before the copier marks its op over) nearly always;
    // then the unregister had to wait for the timeout and cut the copier off.
    assert!(waited >= 300, "unregister returned after {waited} ms: the copier was not caught mid-copy");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        writeln!(tin, "dumpable").unwrap();
        if read_tagged(&mut tout, "DUMPABLE ") == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "the target stayed non-dumpable after the copier resumed");
        std::thread::sleep(Duration::from_millis(50));
    }
    writeln!(tin, "quit").unwrap();
    writer.stop();
    let _ = std::fs::remove_dir_all(exe.parent().unwrap());
}
