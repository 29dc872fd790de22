//! Logging as Mooncake v0.3 does it: routine operations are quiet by default, warnings show;
//! `MC_LOG_LEVEL` (Mooncake's level names) and `RUST_LOG` (a tracing filter, which wins) turn
//! verbosity up. Each case runs an engine in a child process and reads its stderr.

mod support;

use std::process::Command;

/// The child role: an engine started, given memory and destroyed, with whatever logging the
/// environment asks for.
#[test]
fn logging_child() {
    if std::env::var_os("MOONCAKE_LOGGING_CHILD").is_none() {
        return;
    }
    let e = support::engine();
    let mut mem = vec![0u8; 4096];
    e.register_memory(mem.as_mut_ptr() as u64, 4096, "cpu:0", true).unwrap();
    e.unregister_memory(mem.as_ptr() as u64).unwrap();
    drop(e);
}

/// The child role of the store case: a client of a real master asks what callers ask every
/// day (a get and a size of a missing key, a remove of an object a get still leases, a put of a
/// key already stored), then makes one real failure (an empty key) through the C interface.
#[test]
fn store_logging_child() {
    if std::env::var_os("MOONCAKE_LOGGING_CHILD").is_none() {
        return;
    }
    use mooncake::ffi::store::*;
    use std::ffi::{CString, c_void};
    use std::ptr::{null, null_mut};
    let master = support::store::Master::start(&[]);
    let c = |s: &str| CString::new(s).unwrap();
    let store = mooncake_store_create();
    let (host, meta, addr) = (c("127.0.0.1"), c(&master.metadata()), c(&master.addr()));
    let (key, missing, empty) = (c("present"), c("missing"), c(""));
    // SAFETY: valid C strings and buffers for each call, a handle this thread created.
    unsafe {
        let rc = mooncake_store_setup(
            store,
            host.as_ptr(),
            meta.as_ptr(),
            16 << 20,
            16 << 20,
            null(),
            null(),
            addr.as_ptr(),
        );
        assert_eq!(rc, 0);
        assert_eq!(mooncake_store_put(store, key.as_ptr(), b"v".as_ptr() as *const c_void, 1, null()), 0);
        assert_eq!(mooncake_store_put(store, key.as_ptr(), b"w".as_ptr() as *const c_void, 1, null()), 0);
        assert_eq!(mooncake_store_get_size(store, missing.as_ptr()), -704);
        let mut buf: *mut mooncake_store_buffer_t = null_mut();
        assert_eq!(mooncake_store_get_buffer(store, missing.as_ptr(), &mut buf), -704);
        assert_eq!(mooncake_store_get_buffer(store, key.as_ptr(), &mut buf), 1);
        mooncake_store_buffer_free(buf);
        assert_eq!(mooncake_store_remove(store, key.as_ptr(), 0), -706, "a fresh get leases the object");
        eprintln!("--- the one real failure follows");
        assert_eq!(mooncake_store_put(store, empty.as_ptr(), b"v".as_ptr() as *const c_void, 1, null()), -600);
        mooncake_store_destroy(store);
    }
}

/// Expected outcomes are not warnings; a failure is one line.
#[test]
fn store_answers_are_quiet_and_a_failure_is_one_line() {
    if std::env::var_os("MOONCAKE_LOGGING_CHILD").is_some() {
        return;
    }
    let err = child_stderr_of("store_logging_child", &[]);
    let (before, after) = err.split_once("--- the one real failure follows").expect("the child ran to the failure");
    assert!(!before.contains("WARN") && !before.contains("ERROR"), "expected outcomes logged:\n{before}");
    let warnings: Vec<&str> = after.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    assert_eq!(warnings.len(), 1, "one failure, one line:\n{after}");
    assert!(warnings[0].contains("mooncake_store_put"), "{}", warnings[0]);
    // The same answers are still there for whoever asks for them.
    let verbose = child_stderr_of("store_logging_child", &[("RUST_LOG", "mooncake=debug")]);
    assert!(verbose.contains("OBJECT_NOT_FOUND") && verbose.contains("OBJECT_HAS_LEASE"), "{verbose}");
}

/// Stderr of the child role under `env` (every logging variable cleared first).
fn child_stderr(env: &[(&str, &str)]) -> String {
    child_stderr_of("logging_child", env)
}

/// Stderr of the child test `role` under `env` (every logging variable cleared first).
fn child_stderr_of(role: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", role, "--test-threads=1", "--nocapture"])
        .env("MOONCAKE_LOGGING_CHILD", "1")
        .env_remove("RUST_LOG")
        .env_remove("MC_LOG_LEVEL")
        .env_remove("MC_MIN_RPC_PORT")
        .env_remove("MC_MAX_RPC_PORT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const ROUTINE: &str = "transfer engine started";
const WARNING: &str = "MC_MIN_RPC_PORT > MC_MAX_RPC_PORT";
const BAD_PORTS: [(&str, &str); 2] = [("MC_MIN_RPC_PORT", "17000"), ("MC_MAX_RPC_PORT", "15000")];

#[test]
fn quiet_by_default_but_warnings_show() {
    if std::env::var_os("MOONCAKE_LOGGING_CHILD").is_some() {
        return;
    }
    let quiet = child_stderr(&[]);
    assert!(!quiet.contains(ROUTINE) && !quiet.contains(" INFO "), "routine logs by default:\n{quiet}");
    let warned = child_stderr(&BAD_PORTS);
    assert!(warned.contains(WARNING) && warned.contains("WARN"), "no warning:\n{warned}");
    assert!(!warned.contains(ROUTINE), "{warned}");
}

#[test]
fn mc_log_level_and_rust_log_raise_verbosity() {
    if std::env::var_os("MOONCAKE_LOGGING_CHILD").is_some() {
        return;
    }
    let info = child_stderr(&[("MC_LOG_LEVEL", "INFO")]);
    assert!(info.contains(ROUTINE), "MC_LOG_LEVEL=INFO shows no routine log:\n{info}");
    // Mooncake's level names: WARNING and ERROR keep routine operations quiet
    let errors_only = child_stderr(&[("MC_LOG_LEVEL", "ERROR"), BAD_PORTS[0], BAD_PORTS[1]]);
    assert!(!errors_only.contains(WARNING) && !errors_only.contains(ROUTINE), "{errors_only}");
    // RUST_LOG wins over MC_LOG_LEVEL
    let rust_log = child_stderr(&[("MC_LOG_LEVEL", "ERROR"), ("RUST_LOG", "mooncake=debug")]);
    assert!(rust_log.contains(ROUTINE) && rust_log.contains("DEBUG"), "RUST_LOG=mooncake=debug:\n{rust_log}");
}
