//! `mooncake-bench`: Mooncake's `transfer_engine_bench`, rebuilt over this crate.
//! Everything lives in `mooncake::bench`; this is its `main`.

fn main() {
    std::process::exit(mooncake::bench::main_with_args(std::env::args()));
}
