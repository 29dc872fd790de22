//! `enableGracefulShutdown`: SIGTERM/SIGINT shut the engine down, then the process ends by the
//! signal as it would have without the handler.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::ffi::*;

fn child_role() -> bool {
    if std::env::var_os("MOONCAKE_GRACEFUL_CHILD").is_none() {
        return false;
    }
    let e = create();
    enableGracefulShutdown(e);
    println!("\nNAME {}", name_of(e));
    std::thread::sleep(Duration::from_secs(30));
    true
}

#[test]
fn graceful_child() {
    if child_role() {
        std::process::exit(3); // never reached when the signal ends the process
    }
}

fn run(signal: i32) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "graceful_child", "--nocapture", "--test-threads=1"])
        .env("MOONCAKE_GRACEFUL_CHILD", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let name = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
        if let Some(name) = line.strip_prefix("NAME ") {
            break name.trim().to_string();
        }
    };
    let port: u16 = name.rsplit(':').next().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "handshake port is open");
    // SAFETY: sending a signal to our own child by its PID.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "child did not exit after signal {signal}");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(signal), "the process must end by the signal: {status:?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "handshake port still open");
}

#[test]
fn sigterm_shuts_down_and_ends_the_process() {
    if std::env::var_os("MOONCAKE_GRACEFUL_CHILD").is_some() || std::env::var_os("MOONCAKE_GRACEFUL_WRITER").is_some() {
        return;
    }
    run(libc::SIGTERM);
}

#[test]
fn sigint_shuts_down_and_ends_the_process() {
    if std::env::var_os("MOONCAKE_GRACEFUL_CHILD").is_some() || std::env::var_os("MOONCAKE_GRACEFUL_WRITER").is_some() {
        return;
    }
    run(libc::SIGINT);
}

/// The writer role: graceful shutdown on, a 256 MiB write in flight when the signal comes.
#[test]
fn graceful_writer_child() {
    let Ok(target) = std::env::var("MOONCAKE_GRACEFUL_WRITER") else { return };
    let (name, addr) = target.split_once(' ').unwrap();
    let e = support::engine();
    e.enable_graceful_shutdown().unwrap();
    let mut src = support::pattern(WRITE_LEN, 3);
    e.register_memory(src.as_mut_ptr() as u64, WRITE_LEN as u64, "cpu:0", true).unwrap();
    let seg = e.open_segment(name, false).unwrap();
    let addr: u64 = addr.parse().unwrap();
    let reqs: Vec<_> = (0..WRITE_LEN as u64 / MIB)
        .map(|i| mooncake::engine::TransferRequest {
            opcode: mooncake::transport::Opcode::Write,
            source: src.as_ptr() as u64 + i * MIB,
            target_id: seg,
            target_offset: addr + i * MIB,
            length: MIB,
        })
        .collect();
    let batch = e.allocate_batch(reqs.len()).unwrap();
    e.submit(batch, &reqs, None).unwrap();
    println!("\nSUBMITTED");
    std::thread::sleep(Duration::from_secs(30));
    std::process::exit(3);
}

const MIB: u64 = 1 << 20;
const WRITE_LEN: usize = 256 << 20;

/// SIGTERM while a write is in flight: the write still lands whole before the process ends.
#[test]
fn sigterm_lets_tasks_in_flight_finish() {
    if std::env::var_os("MOONCAKE_GRACEFUL_CHILD").is_some() || std::env::var_os("MOONCAKE_GRACEFUL_WRITER").is_some() {
        return;
    }
    let target = support::engine();
    let mut dst = vec![0u8; WRITE_LEN];
    target.register_memory(dst.as_mut_ptr() as u64, WRITE_LEN as u64, "cpu:0", true).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "graceful_writer_child", "--nocapture", "--test-threads=1"])
        .env("MOONCAKE_GRACEFUL_WRITER", format!("{} {}", target.server_name(), dst.as_ptr() as u64))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
        if line.trim() == "SUBMITTED" {
            break;
        }
    }
    // SAFETY: signalling our own child by its PID.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "child did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    let expect = support::pattern(WRITE_LEN, 3);
    let first_bad = dst.iter().zip(&expect).position(|(a, b)| a != b);
    assert_eq!(first_bad, None, "the write in flight at SIGTERM did not land whole");
}
