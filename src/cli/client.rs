//! `mooncake_client`: the standalone store client (owns a segment, serves dummy clients);
//! everything lives in [`crate::store::standalone`].

use std::ffi::OsString;

/// Runs the client with its command line (`args[0]`: the name it was run as); the exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    let (_, args) = super::program_args(args, "mooncake_client");
    crate::store::standalone::main_with_args(args)
}
