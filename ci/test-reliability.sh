#!/usr/bin/env bash
# The reliability suite's generic cases (issue 18, item 9; docs/RELIABILITY.md):
#  - tests/reliability_peers.rs: a target killed (SIGKILL) or stopped (SIGSTOP) mid-batch,
#    writes and reads, over TCP with our framing, TCP with Mooncake's protocol and the
#    same-host path: every task ends within the progress timeout, the initiator recovers;
#  - tests/reliability_idle.rs: the first transfer after an idle gap whose connections a
#    middlebox closed (cut-off 2 s / gap 4 s; cut-off 30 s / gap 65 s), ours and Mooncake's wheel;
#  - python/tests/test_reliability_peers.py: the same kill/stop with Mooncake's wheel on a side;
#  - python/tests/test_reliability_idle.py: a plain 65 s idle gap, every pairing with the wheel;
#  - python/tests/test_reliability_threads.py: 512 Python threads, one engine, one store;
#  - python/tests/test_reliability_traffic.py: 1 GiB of random traffic per path, checked.
# The suite mostly waits (idle gaps, progress timeouts): it can run beside the other steps of
# ci/test.sh once its `cargo build --release` and `cargo test --release` have run (then nothing
# is compiled here). Wall time on a 2-core VM: about 5.5 minutes, of which about 1.5 minutes
# of CPU (docs/RELIABILITY.md: the figures and their commands).
# Needs Mooncake's wheel (ci/setup-wheel.sh): MOONCAKE_REQUIRE_WHEEL=1 unless set otherwise.
# Work files under target/reliability/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/target/reliability
mkdir -p "$WORK"
step() { printf '\n--- %s\n' "$*"; }

export MOONCAKE_RELIABILITY=1
export MOONCAKE_REQUIRE_WHEEL=${MOONCAKE_REQUIRE_WHEEL:-1}
export MC_TCP_BIND_ADDRESS=127.0.0.1

# The library and mooncake_master come from ci/test.sh's `cargo build --release` (building them
# again here after `cargo test --release` would rebuild the crate: dev-dependencies unify
# features differently); a checkout without them gets them built.
if [[ ! -f target/release/libmooncake.so || ! -x target/release/mooncake_master ]]; then
  step "cargo build --release --lib --bins"
  cargo build --release --lib --bins
fi

step "cargo test: reliability_peers, reliability_idle"
timeout 900 cargo test --release --test reliability_peers --test reliability_idle -- --test-threads=4

step "pytest python/tests/test_reliability_*.py"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q pytest numpy
PYTHONPATH=$ROOT/python MOONCAKE_LIB=$ROOT/target/release/libmooncake.so \
  MOONCAKE_TEST_PYTHON_OURS=$WORK/venv/bin/python MOONCAKE_REQUIRE_OURS=1 \
  MOONCAKE_TEST_MASTER=$ROOT/target/release/mooncake_master MOONCAKE_REQUIRE_MASTER=1 \
  timeout 1200 "$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider -rs \
  python/tests/test_reliability_idle.py python/tests/test_reliability_peers.py \
  python/tests/test_reliability_threads.py \
  python/tests/test_reliability_traffic.py
echo "test-reliability.sh: all passed"
