#!/usr/bin/env bash
# Hostile peers against real processes (issue 18, docs/reliability/i18-frames.md): frames
# announced and never sent, descriptors passed in excess, and floods of idle connections (up to
# 4,096 at a time) to the handshake port, the HTTP metadata servers and mooncake_master's ports.
# About 35 s, mostly waiting; it opens some 12,000 sockets, so run it beside tests that do not.
set -euo pipefail
cd "$(dirname "$0")/.."
export MC_TCP_BIND_ADDRESS=127.0.0.1
# Each test raises its own soft descriptor limit to the hard one; the hard one must allow it.
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 16384 ]; then
    echo "test-hostile-conns: the hard descriptor limit $(ulimit -Hn) is below 16384" >&2
    exit 1
fi
cargo test --release --test hostile_conns
