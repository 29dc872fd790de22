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
    if std::env::var_os("MOONCAKE_GRACEFUL_CHILD").is_some() {
        return;
    }
    run(libc::SIGTERM);
}

#[test]
fn sigint_shuts_down_and_ends_the_process() {
    if std::env::var_os("MOONCAKE_GRACEFUL_CHILD").is_some() {
        return;
    }
    run(libc::SIGINT);
}
