//! The command-line tools, as library code: `mooncake_master`, `mooncake_client`,
//! `mooncake-bench` (`transfer_engine_bench`) and `mooncake_http_metadata_server`.
//!
//! Each tool is a `run(args) -> exit status` function (`args[0]` is the name it was run as,
//! which it names itself by). The executables of `src/bin/` are a line each calling them, and
//! the Python package's console scripts call them through one C entry point,
//! `mooncake_cli_main` (`src/ffi/cli.rs`), so that the wheel ships the library alone.

use std::ffi::OsString;
use std::path::Path;

pub mod bench;
pub mod client;
pub mod http_metadata_server;
pub mod master;

/// The tools [`run`] knows, by the name `mooncake_cli_main` takes.
pub const TOOLS: &[&str] = &["mooncake_master", "mooncake_client", "mooncake-bench", "mooncake_http_metadata_server"];

/// Runs `tool` (one of [`TOOLS`]; `transfer_engine_bench` and `mooncake_bench` are the bench
/// too) with `args`; `None` when the tool is unknown.
pub fn run(tool: &str, args: Vec<OsString>) -> Option<i32> {
    Some(match tool {
        "mooncake_master" => master::run(args),
        "mooncake_client" => client::run(args),
        "mooncake-bench" | "mooncake_bench" | "transfer_engine_bench" => bench::run(args),
        "mooncake_http_metadata_server" => http_metadata_server::run(args),
        _ => return None,
    })
}

/// The command line as strings (a non-UTF-8 argument is converted lossily, as clap would refuse
/// it anyway), with `args[0]` replaced by its file name, or `default` when there is none.
pub fn program_args(args: Vec<OsString>, default: &str) -> (String, Vec<String>) {
    let mut args: Vec<String> = args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default.to_string());
    match args.first_mut() {
        Some(first) => *first = name.clone(),
        None => args.push(name.clone()),
    }
    (name, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_name_is_the_basename_of_argv0() {
        let (name, args) = program_args(vec!["/venv/bin/transfer_engine_bench".into(), "--help".into()], "x");
        assert_eq!(
            (name.as_str(), args),
            ("transfer_engine_bench", vec!["transfer_engine_bench".into(), "--help".into()])
        );
        let (name, args) = program_args(vec![], "mooncake_master");
        assert_eq!((name.as_str(), args), ("mooncake_master", vec!["mooncake_master".to_string()]));
        assert!(run("nope", vec![]).is_none());
    }
}
