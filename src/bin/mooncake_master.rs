//! `mooncake_master`: the Mooncake Store's master, with the wheel's command line (gflags
//! syntax, Mooncake 0.3.13's flags and defaults; see `mooncake::master::flags`). Exits 0 on
//! SIGINT or SIGTERM, 1 on a bad command line (including `--enable_ha=true`, which this build
//! does not implement) or an address that cannot be bound; `--help` exits 1, as gflags does.

use std::process::ExitCode;

use mooncake::master::flags::{self, Command};

fn main() -> ExitCode {
    mooncake::logging::init();
    let command = match flags::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (config, ignored) = match command {
        Command::Run { config, ignored } => (*config, ignored),
        Command::Help(text) => {
            println!("{text}");
            return ExitCode::FAILURE;
        }
        Command::Version(line) => {
            println!("{line}");
            return ExitCode::SUCCESS;
        }
    };
    if !ignored.is_empty() {
        tracing::warn!("flags accepted but not implemented by this build (ignored): {}", ignored.join(" "));
    }
    let served = mooncake::master::run_until_signal(config, |master| {
        tracing::info!(
            "Master service started: rpc {}, metrics {}, http metadata {:?}",
            master.rpc_addr(),
            master.metrics_addr(),
            master.http_metadata_addr()
        );
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mooncake_master: {e}");
            ExitCode::FAILURE
        }
    }
}
