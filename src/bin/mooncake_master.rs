//! `mooncake_master`: a launcher of [`mooncake::cli::master`], where the tool lives (the wheel's console
//! script runs the same code through `mooncake_cli_main`).

fn main() {
    std::process::exit(mooncake::cli::master::run(std::env::args_os().collect()));
}
