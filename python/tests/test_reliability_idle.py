"""Reliability suite (issue 18): an idle gap of 65 s between transfers. Pooled data connections
sit idle for longer than a minute (the span after which servers and middleboxes commonly drop
idle connections); the first transfer after the gap must succeed, on its first try, and move
the right bytes.

Every pairing is set up and warmed up first (a scattered batch written and read back, which
opens every lane), then all of them wait out one shared gap, then each does the same transfers
again: ours to ours over the same-host path, over TCP with our framing and with Mooncake's
protocol (MOONCAKE_TCP_FRAMING=0), ours to Mooncake's wheel and the wheel to ours. Wheel to
wheel runs beside them as the reference and is only recorded (RESULT line), not asserted.

The gap is RELIABILITY_IDLE_GAP_S (default 65). Bounded: about the gap plus 20 s; the test
mostly sleeps (about 2 s of CPU)."""
import os
import time

import pytest

from conftest import python_of
from harness import A, truthy

GAP_S = float(os.environ.get("RELIABILITY_IDLE_GAP_S", "65"))
# Warm-up and the wheel's initiators: 64 blocks of 16 KiB. Our initiators' first batch after
# the gap is 4,096 blocks of 4 KiB (the shape of the KV-cache batch in Mooncake's report of a
# first transfer failing after a gap; the wheel refuses a batch of that many slices even
# without a gap: its lane queue is full, see docs/RELIABILITY.md).
SMALL = (64, 16 << 10)
LARGE = (4096, 4 << 10)
LEN = 33 << 20

TCP = {"MOONCAKE_SHM": "off"}
MOONCAKE_TCP = {"MOONCAKE_SHM": "off", "MOONCAKE_TCP_FRAMING": "0"}
CASES = [
    ("ours", "ours", {}, "same-host", True),
    ("ours", "ours", TCP, "tcp-framed", True),
    ("ours", "ours", MOONCAKE_TCP, "tcp-mooncake", True),
    ("ours", "wheel", {}, "tcp", True),
    ("wheel", "ours", {}, "tcp", True),
    ("wheel", "wheel", {}, "tcp", False),  # the reference: recorded only
]

# The reliability suite runs under ci/test-reliability.sh (MOONCAKE_RELIABILITY=1), beside the
# other CI steps; ci/test-python.sh's run of python/tests skips it.
pytestmark = pytest.mark.skipif(not truthy("MOONCAKE_RELIABILITY"),
                                reason="reliability suite: MOONCAKE_RELIABILITY=1 (ci/test-reliability.sh)")


def round_trip(ini, tgt, dst, seed, shape):
    """A scattered batch written, then read back into other places; (write rc, read rc, ok)."""
    n, block = shape
    src = [i * 2 * block for i in range(n)]
    remote = [dst + (n - 1 - i) * 2 * block + 64 for i in range(n)]
    back = [i * 2 * block + block // 2 for i in range(n)]
    want = ini.fill("src", [(o, block) for o in src], seed=seed)
    w = ini.call("batch_transfer_sync_write", tgt.session, [A("src", o) for o in src], remote,
                 [block] * n, timeout=120)
    r = ini.call("batch_transfer_sync_read", tgt.session, [A("back", o) for o in back], remote,
                 [block] * n, timeout=120)
    ok = w == 0 and r == 0 and ini.digest("back", [(o, block) for o in back]) == want
    return w, r, ok


def test_first_transfer_after_a_65_s_idle_gap_succeeds(make_peer):
    pairs = []
    for ini_impl, tgt_impl, env, path, asserted in CASES:
        if ini_impl == "wheel" or tgt_impl == "wheel":
            try:
                python_of("wheel")
            except pytest.skip.Exception:
                continue  # the wheel is not installed (a failure instead under MOONCAKE_REQUIRE_WHEEL)
        tgt = make_peer(tgt_impl, label="target", env=env)
        ini = make_peer(ini_impl, label="initiator", env=env)
        dst = tgt.alloc("dst", LEN)
        ini.alloc("src", LEN)
        ini.alloc("back", LEN)
        name = f"{ini_impl}->{tgt_impl} {path}"
        w, r, ok = round_trip(ini, tgt, dst, seed=1, shape=SMALL)
        assert ok, f"{name}: the warm-up failed (write {w}, read {r})"
        pairs.append((name, asserted, ini, tgt, dst, LARGE if ini_impl == "ours" else SMALL))
    time.sleep(GAP_S)
    failures = []
    for name, asserted, ini, tgt, dst, shape in pairs:
        w, r, ok = round_trip(ini, tgt, dst, seed=2, shape=shape)
        print(f"RESULT idle {GAP_S:.0f} s, {name}: first write after the gap ({shape[0]} blocks) {w}, "
              f"then read {r}, bytes {'right' if ok else 'WRONG or missing'}")
        if not ok and asserted:
            failures.append(f"{name}: write {w}, read {r}")
        if not ok:  # the second try shows whether the pair recovers
            w2, r2, ok2 = round_trip(ini, tgt, dst, seed=3, shape=SMALL)
            print(f"RESULT idle {GAP_S:.0f} s, {name}: second try: write {w2}, read {r2}, ok {ok2}")
    assert not failures, failures
