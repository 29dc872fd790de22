//! `mooncake-bench`: a launcher of [`mooncake::cli::bench`], where the tool lives (the wheel's console
//! script runs the same code through `mooncake_cli_main`).

fn main() {
    std::process::exit(mooncake::cli::bench::run(std::env::args_os().collect()));
}
