//! `mooncake-bench` (`transfer_engine_bench` in Mooncake's wheel): everything lives in
//! [`crate::bench`]; this names the tool by `args[0]`.

use std::ffi::OsString;
use std::path::Path;

/// Runs the bench with its command line (`args[0]`: the name it was run as); the exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    // `bench store` starts itself again (and finds the master next to itself): by `args[0]`
    // when it is a path, since inside Python the current executable is the interpreter.
    if let Some(path) = args.first().map(Path::new).filter(|p| p.components().count() > 1 && p.is_file()) {
        crate::bench::store::set_launcher(path.to_path_buf());
    }
    let (_, args) = super::program_args(args, "mooncake-bench");
    crate::bench::main_with_args(args)
}
