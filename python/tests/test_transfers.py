"""Data transfers between two engines in two processes, the way connectors drive them:
initialize(host, "P2PHANDSHAKE", "tcp", ""), session "127.0.0.1:<get_rpc_port()>", one large
registered region per side, batches of KV-cache-sized blocks at scattered offsets, verified byte
for byte (SHA-256 of the blocks on both sides). Each test runs for every (initiator, target)
pairing of the two implementations."""
import random

from conftest import DST_LEN, SRC_LEN
from harness import NOTIFY, OP, A, wait_until

BLOCK = 16 << 10
NBLOCKS = 1000


def scattered(seed, n=NBLOCKS, block=BLOCK, span=DST_LEN):
    """n distinct block-aligned offsets in [0, span), in random order."""
    rng = random.Random(seed)
    return [s * block for s in rng.sample(range(span // block), n)]


def kv_blocks(seed):
    src_offs = scattered(seed, span=SRC_LEN)
    dst_offs = scattered(seed + 1)
    return src_offs, dst_offs


def check_guards(pair):
    assert pair.tgt.guards_intact("dst"), "bytes around the target's registered region changed"


def test_batch_sync_write_then_read_scattered(pair):
    src_offs, dst_offs = kv_blocks(100)
    want = pair.ini.fill("src", [(o, BLOCK) for o in src_offs], seed=1)
    rc = pair.ini.call("batch_transfer_sync_write", pair.session,
                       [A("src", o) for o in src_offs], [pair.dst + o for o in dst_offs],
                       [BLOCK] * NBLOCKS, timeout=120)
    assert rc == 0
    assert pair.tgt.digest("dst", [(o, BLOCK) for o in dst_offs]) == want
    check_guards(pair)

    # read them back into other scattered places of a second local region
    back_offs = scattered(101, span=SRC_LEN)
    rc = pair.ini.call("batch_transfer_sync_read", pair.session,
                       [A("back", o) for o in back_offs], [pair.dst + o for o in dst_offs],
                       [BLOCK] * NBLOCKS, timeout=120)
    assert rc == 0
    assert pair.ini.digest("back", [(o, BLOCK) for o in back_offs]) == want


def test_batch_sync_keyword_arguments_and_mixed_lengths(pair):
    rng = random.Random(7)
    lens = [rng.choice([1, 7, 512, 4096, 16384, 65536, 100000]) for _ in range(64)]
    src, dst, o = [], [], 0
    for n in lens:
        src.append(o)
        dst.append(DST_LEN - 8 * 65536 - o - n)  # reversed layout in the target
        o += n + 13
    want = pair.ini.fill("src", list(zip(src, lens)), seed=2)
    rc = pair.ini.call("batch_transfer_sync_write", target_hostname=pair.session,
                       buffers=[A("src", s) for s in src],
                       peer_buffer_addresses=[pair.dst + d for d in dst], lengths=lens,
                       transport_hint="")
    assert rc == 0
    assert pair.tgt.digest("dst", list(zip(dst, lens))) == want
    check_guards(pair)


def test_transfer_sync_write_read_single(pair):
    n = 8 << 20  # one request of several TCP slices
    want = pair.ini.fill("src", [(0, n)], seed=3)
    assert pair.ini.call("transfer_sync_write", pair.session, A("src"), pair.dst + 4096, n) == 0
    assert pair.tgt.digest("dst", [(4096, n)]) == want
    assert pair.ini.call("transfer_sync_read", pair.session, A("back", 12345), pair.dst + 4096, n) == 0
    assert pair.ini.digest("back", [(12345, n)]) == want
    # keyword form
    assert pair.ini.call("transfer_sync_write", target_hostname=pair.session, buffer=A("src"),
                         peer_buffer_address=pair.dst, length=100, transport_hint="") == 0
    assert pair.ini.call("transfer_sync_read", target_hostname=pair.session, buffer=A("back"),
                         peer_buffer_address=pair.dst, length=100) == 0
    check_guards(pair)


def test_region_edges(pair):
    """First and last bytes of the target region are writable; a zero-length write is 0."""
    want = pair.ini.fill("src", [(0, 4096)], seed=4)
    assert pair.ini.call("transfer_sync_write", pair.session, A("src"), pair.dst, 4096) == 0
    assert pair.ini.call("transfer_sync_write", pair.session, A("src"),
                         pair.dst + DST_LEN - 4096, 4096) == 0
    assert pair.tgt.digest("dst", [(0, 4096)]) == want
    assert pair.tgt.digest("dst", [(DST_LEN - 4096, 4096)]) == want
    assert pair.ini.call("transfer_sync_write", pair.session, A("src"), pair.dst, 0) == 0
    check_guards(pair)


def drain(peer):
    return peer.call("get_notifies")


def wait_notify(peer, want, timeout=10):
    seen = []

    def got():
        seen.extend(drain(peer))
        return want in seen
    assert wait_until(got, timeout), f"notify {want} not seen by the target; saw {seen}"
    return seen


def test_transfer_sync_with_notify(pair):
    drain(pair.tgt)
    want = pair.ini.fill("src", [(0, 4096)], seed=5)
    rc = pair.ini.call("transfer_sync", pair.session, A("src"), pair.dst, 4096, OP("Write"),
                       NOTIFY("req-1", "kv ready"))
    assert rc == 0
    assert pair.tgt.digest("dst", [(0, 4096)]) == want
    seen = wait_notify(pair.tgt, ("req-1", "kv ready"))
    assert seen.count(("req-1", "kv ready")) == 1
    # keywords; Read with a notify; notify=None is accepted
    rc = pair.ini.call("transfer_sync", target_hostname=pair.session, buffer=A("back"),
                       peer_buffer_address=pair.dst, length=4096, opcode=OP("Read"),
                       notify=NOTIFY("req-2", "{\"json\": [1, 2]}"))
    assert rc == 0
    assert pair.ini.digest("back", [(0, 4096)]) == want
    wait_notify(pair.tgt, ("req-2", "{\"json\": [1, 2]}"))
    assert pair.ini.call("transfer_sync", pair.session, A("src"), pair.dst, 16, OP("Write"), None) == 0
    assert pair.ini.call("transfer_sync", pair.session, A("src"), pair.dst, 16, OP("Write")) == 0
    assert drain(pair.ini) == []  # the initiator got nothing


def test_batch_transfer_sync_with_notify(pair):
    drain(pair.tgt)
    src_offs, dst_offs = kv_blocks(200)
    src_offs, dst_offs = src_offs[:256], dst_offs[:256]
    want = pair.ini.fill("src", [(o, BLOCK) for o in src_offs], seed=6)
    rc = pair.ini.call("batch_transfer_sync", pair.session, [A("src", o) for o in src_offs],
                       [pair.dst + o for o in dst_offs], [BLOCK] * len(src_offs), OP("Write"),
                       NOTIFY("layer-0", "done"))
    assert rc == 0
    assert pair.tgt.digest("dst", [(o, BLOCK) for o in dst_offs]) == want
    seen = wait_notify(pair.tgt, ("layer-0", "done"))
    assert seen.count(("layer-0", "done")) == 1, seen
    # several notifies arrive in order and are drained by get_notifies
    for i in range(5):
        assert pair.ini.call("batch_transfer_sync", pair.session, [A("src")], [pair.dst], [64],
                             opcode=OP("Write"), notify=NOTIFY(f"n{i}", f"m{i}")) == 0
    seen = []
    assert wait_until(lambda: seen.extend(drain(pair.tgt)) or len(seen) >= 5, 10), seen
    # Ours sends them one after another, each after the last one's acknowledgement; our target
    # keeps them in order. Mooncake's wheel as the target has been seen to hand two of them out
    # swapped (n4 before n3) under load: its order is its own, so only ours is held to it.
    sent = [(f"n{i}", f"m{i}") for i in range(5)]
    assert (seen if pair.tgt.impl == "ours" else sorted(seen)) == sent
    # without notify: plain batch, Read
    rc = pair.ini.call("batch_transfer_sync", pair.session, [A("back", o) for o in src_offs],
                       [pair.dst + o for o in dst_offs], [BLOCK] * len(src_offs), OP("Read"))
    assert rc == 0
    assert pair.ini.digest("back", [(o, BLOCK) for o in src_offs]) == want


def test_async_batches_and_get_batch_transfer_status(pair):
    src_offs, dst_offs = kv_blocks(300)
    quarter = NBLOCKS // 4
    want = pair.ini.fill("src", [(o, BLOCK) for o in src_offs], seed=7)
    ids = []
    for q in range(4):
        so = src_offs[q * quarter:(q + 1) * quarter]
        do = dst_offs[q * quarter:(q + 1) * quarter]
        args = (pair.session, [A("src", o) for o in so], [pair.dst + o for o in do], [BLOCK] * quarter)
        if q % 2 == 0:
            res = pair.ini.cmd("call", method="batch_transfer_async_write", args=list(args))
        else:
            res = pair.ini.cmd("call", method="batch_transfer_async", args=list(args) + [OP("Write")])
        assert res["type"] == "int" and res["result"] > 0, res
        ids.append(res["result"])
    assert len(set(ids)) == 4, f"batch ids of live batches must differ: {ids}"
    assert pair.ini.call("get_batch_transfer_status", ids, timeout=120) == 0
    assert pair.tgt.digest("dst", [(o, BLOCK) for o in dst_offs]) == want

    back_offs = scattered(301, span=SRC_LEN)
    b1 = pair.ini.call("batch_transfer_async_read", pair.session,
                       [A("back", o) for o in back_offs[:500]], [pair.dst + o for o in dst_offs[:500]],
                       [BLOCK] * 500)
    b2 = pair.ini.call("batch_transfer_async", target_hostname=pair.session,
                       buffers=[A("back", o) for o in back_offs[500:]],
                       peer_buffer_addresses=[pair.dst + o for o in dst_offs[500:]],
                       lengths=[BLOCK] * 500, opcode=OP("Read"), transport_hint="")
    assert b1 > 0 and b2 > 0 and b1 != b2
    assert pair.ini.call("get_batch_transfer_status", [b1], timeout=120) == 0
    assert pair.ini.call("get_batch_transfer_status", [b2], timeout=120) == 0
    assert pair.ini.digest("back", [(o, BLOCK) for o in back_offs]) == want
    assert pair.ini.call("get_batch_transfer_status", []) == 0


def test_transfer_submit_write_and_check_status(pair):
    n = 1 << 20
    want = pair.ini.fill("src", [(0, 4 * n)], seed=8)
    for i in range(4):
        res = pair.ini.cmd("call", method="transfer_submit_write",
                           args=[pair.session, A("src", i * n), pair.dst + i * n, n])
        assert res["type"] == "int" and res["result"] > 0, res
        polled = pair.ini.cmd("poll", batch_id=res["result"], timeout=30)
        assert polled["result"] == 1, polled  # 1: completed (0 while in flight)
    assert pair.tgt.digest("dst", [(0, 4 * n)]) == want
    # keyword form
    bid = pair.ini.call("transfer_submit_write", target_hostname=pair.session, buffer=A("src"),
                        peer_buffer_address=pair.dst, length=64, transport_hint="")
    assert bid > 0
    assert pair.ini.cmd("poll", batch_id=bid, timeout=30)["result"] == 1


def test_send_probe_live(pair):
    res = pair.ini.cmd("call", method="send_probe", args=[pair.session])
    assert res["type"] == "int" and res["result"] == 0
    assert pair.tgt.call("send_probe", peer_server_name=pair.ini.session) == 0


def test_get_first_buffer_address_remote(pair):
    assert pair.ini.call("get_first_buffer_address", pair.session) == pair.dst


def test_late_registration_is_writable(pair):
    """Memory the target registers after the initiator opened its segment can be written
    (connectors register more memory while peers are connected)."""
    assert pair.ini.call("transfer_sync_write", pair.session, A("src"), pair.dst, 16) == 0  # opened
    n = 1 << 20
    late = pair.tgt.alloc("late", n)
    late2 = pair.tgt.alloc("late2", n, register=False)
    assert pair.tgt.call("batch_register_memory", [late2], [n]) == 0
    pair.ini.fill("src", [(0, 2 * BLOCK)], seed=9)
    rc = pair.ini.call("batch_transfer_sync_write", pair.session, [A("src"), A("src", BLOCK)],
                       [late + 100, late2 + n - BLOCK], [BLOCK, BLOCK])
    assert rc == 0
    assert pair.tgt.digest("late", [(100, BLOCK)]) == pair.ini.digest("src", [(0, BLOCK)])
    assert pair.tgt.digest("late2", [(n - BLOCK, BLOCK)]) == pair.ini.digest("src", [(BLOCK, BLOCK)])


def test_unregistered_remote_region_is_rejected(pair):
    """After the target unregisters a region, writes into it fail with -1 (and leave it alone)."""
    n = 1 << 20
    gone = pair.tgt.alloc("gone", n, fill=0x33)
    assert pair.ini.call("transfer_sync_write", pair.session, A("src"), gone, 4096) == 0
    pair.tgt.poke("gone", 0, b"\x33" * 4096)
    assert pair.tgt.call("unregister_memory", gone) == 0
    assert pair.ini.call("transfer_sync_write", pair.session, A("src"), gone, 4096) == -1
    assert pair.tgt.peek("gone", 0, 4096) == b"\x33" * 4096


def test_concurrent_batches_from_threads(pair):
    """Connectors submit from several threads at once (the wheel releases the GIL)."""
    src_offs, dst_offs = kv_blocks(400)
    want = pair.ini.fill("src", [(o, BLOCK) for o in src_offs], seed=10)
    nthreads, per = 4, NBLOCKS // 4
    calls = []
    for t in range(nthreads):
        so, do = src_offs[t * per:(t + 1) * per], dst_offs[t * per:(t + 1) * per]
        method = "batch_transfer_sync_write" if t % 2 == 0 else "batch_transfer_sync"
        args = [pair.session, [A("src", o) for o in so], [pair.dst + o for o in do], [BLOCK] * per]
        if method == "batch_transfer_sync":
            args.append(OP("Write"))
        calls.append({"method": method, "args": args})
    free = next(s * BLOCK for s in range(DST_LEN // BLOCK) if s * BLOCK not in set(dst_offs))
    calls.append({"method": "transfer_sync_write", "args": [pair.session, A("back"), pair.dst + free, BLOCK]})
    res = pair.ini.cmd("parallel", calls=calls, join_timeout=60, timeout=90)
    assert res["unfinished"] == 0, res
    assert [r.get("result") for r in res["results"]] == [0] * len(calls), res["results"]
    assert pair.tgt.digest("dst", [(o, BLOCK) for o in dst_offs]) == want
    check_guards(pair)
