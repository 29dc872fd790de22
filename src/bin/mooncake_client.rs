//! `mooncake_client`: a launcher of [`mooncake::cli::client`], where the tool lives (the wheel's console
//! script runs the same code through `mooncake_cli_main`).

fn main() {
    std::process::exit(mooncake::cli::client::run(std::env::args_os().collect()));
}
