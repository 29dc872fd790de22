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

/// Stderr of the child role under `env` (every logging variable cleared first).
fn child_stderr(env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "logging_child", "--test-threads=1"])
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
