//! `mooncake_master`: the Mooncake Store's master, with the wheel's command line (gflags
//! syntax, Mooncake 0.3.13's flags and defaults; see `mooncake::master::flags`). Exits 0 on
//! SIGINT or SIGTERM, 1 on a bad command line (including `--enable_ha=true`, which this build
//! does not implement) or an address that cannot be bound; `--help` exits 1, as gflags does.
//! Once listening it prints one line on stderr saying where.

use std::ffi::OsString;

use crate::master::flags::{self, Command};

/// Runs the master with its command line (`args[0]`: the name it was run as, which the help,
/// version and listening lines use); the exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    let (name, args) = super::program_args(args, "mooncake_master");
    crate::logging::init();
    let command = match flags::parse(args.into_iter().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let (config, ignored) = match command {
        Command::Run { config, ignored } => (*config, ignored),
        Command::Help(text) => {
            println!("{}", text.replacen("mooncake_master", &name, 2));
            return 1;
        }
        Command::Version(line) => {
            println!("{}", line.replacen("mooncake_master", &name, 1));
            return 0;
        }
    };
    if !ignored.is_empty() {
        tracing::warn!("flags accepted but not implemented by this build (ignored): {}", ignored.join(" "));
    }
    let served = crate::master::run_until_signal(config, |master| {
        let http = master.http_metadata_addr().map(|a| format!(", http metadata http://{a}")).unwrap_or_default();
        eprintln!("{name}: listening on {} (metrics http://{}{http})", master.rpc_addr(), master.metrics_addr());
    });
    match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: {e}");
            1
        }
    }
}
