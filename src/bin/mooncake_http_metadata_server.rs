//! `mooncake_http_metadata_server`: a launcher of [`mooncake::cli::http_metadata_server`], where the tool lives (the wheel's console
//! script runs the same code through `mooncake_cli_main`).

fn main() {
    std::process::exit(mooncake::cli::http_metadata_server::run(std::env::args_os().collect()));
}
