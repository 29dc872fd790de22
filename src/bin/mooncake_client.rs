//! `mooncake_client`: the standalone store client (owns a segment, serves dummy clients).
//! Everything lives in `mooncake::store::standalone`; this is its `main`.

fn main() {
    std::process::exit(mooncake::store::standalone::main_with_args(std::env::args().collect()));
}
