//! `mooncake-bench`: Mooncake's `transfer_engine_bench`, rebuilt over this crate.
