#!/usr/bin/env bash
# Issue 18, items 3, 4 (notifications) and 6: a paused master keeps its clients' objects, a
# silent client still expires, memfds that can shrink are refused (a truncating dummy cannot
# kill mooncake_client), a notification flood stays within the inbox's limits.
# Real processes on loopback; about 20 s, mostly waiting (SIGSTOP and client_ttl), so it can run
# beside other steps. Run after `cargo build --release --lib --bins`.
set -euo pipefail
cd "$(dirname "$0")/.."
export MC_TCP_BIND_ADDRESS=127.0.0.1
cargo test --release --lib -- master::state:: sys::mapping:: transport::shm::control:: engine::notify::
cargo test --release --test store_liveness --test store_dummy_memfd --test notify_flood
