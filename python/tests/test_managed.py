"""Managed buffers (allocate_managed_buffer & co.) across two processes: memory the engine
allocates is registered at once and visible to peers, found through get_first_buffer_address or
through the address its owner reports."""
from harness import BYTES, A


def pattern(n, seed):
    import random
    return random.Random(seed).randbytes(n)


def test_peer_writes_into_managed_buffer(make_peer, impl_pair):
    ini_impl, tgt_impl = impl_pair
    tgt = make_peer(tgt_impl, label="managed-target")
    m_len = 1 << 20
    m = tgt.call("allocate_managed_buffer", m_len)
    assert m != 0
    ini = make_peer(ini_impl, label="initiator")
    ini.alloc("src", 4 << 20)
    ini.alloc("back", 4 << 20)

    # The target has no other memory: its first buffer is managed memory, and writable.
    first = ini.call("get_first_buffer_address", tgt.session)
    assert first != 0
    data = pattern(4096, 1)
    ini.poke("src", 0, data)
    assert ini.call("transfer_sync_write", tgt.session, A("src"), first, 4096) == 0
    assert tgt.call("read_bytes_from_buffer", first, 4096) == data

    # ... and at the address the target reports
    data = pattern(64 << 10, 2)
    ini.poke("src", 0, data)
    assert ini.call("transfer_sync_write", tgt.session, A("src"), m + 1000, len(data)) == 0
    assert tgt.call("read_bytes_from_buffer", m + 1000, len(data)) == data

    # the target fills its managed buffer, the initiator reads it
    data = pattern(100_000, 3)
    assert tgt.call("write_bytes_to_buffer", m, BYTES(data), len(data)) == 0
    assert ini.call("transfer_sync_read", tgt.session, A("back"), m, len(data)) == 0
    assert ini.peek("back", 0, len(data)) == data

    # allocated after the initiator opened the segment: writable at once
    m2 = tgt.call("allocate_managed_buffer", 16 << 10)
    assert m2 != 0
    data = pattern(16 << 10, 4)
    ini.poke("src", 0, data)
    assert ini.call("batch_transfer_sync_write", tgt.session, [A("src")], [m2], [len(data)]) == 0
    assert tgt.call("read_bytes_from_buffer", m2, len(data)) == data

    # managed memory as the local side of a transfer
    lm = ini.call("allocate_managed_buffer", 64 << 10)
    assert lm != 0
    data = pattern(64 << 10, 5)
    assert ini.call("write_bytes_to_buffer", lm, BYTES(data), len(data)) == 0
    assert ini.call("transfer_sync_write", tgt.session, lm, m, len(data)) == 0
    assert tgt.call("read_bytes_from_buffer", m, len(data)) == data
    assert ini.call("transfer_sync_read", tgt.session, lm, m2, 16 << 10) == 0
    assert ini.call("read_bytes_from_buffer", lm, 16 << 10) == tgt.call("read_bytes_from_buffer", m2, 16 << 10)

    assert ini.call("free_managed_buffer", lm, 64 << 10) == 0
    assert tgt.call("free_managed_buffer", m2, 16 << 10) == 0
    assert tgt.call("free_managed_buffer", m, m_len) == 0


def test_managed_buffer_kv_blocks(pair):
    """Scattered KV blocks written into a managed buffer of the target."""
    block, n = 16 << 10, 200
    m = pair.tgt.call("allocate_managed_buffer", 8 << 20)
    assert m != 0
    offs = [(i * 37 % 512) * block for i in range(n)]
    want = pair.ini.fill("src", [(0, n * block)], seed=100)
    rc = pair.ini.call("batch_transfer_sync_write", pair.session, [A("src", i * block) for i in range(n)],
                       [m + o for o in offs], [block] * n)
    assert rc == 0
    import hashlib
    h = hashlib.sha256()
    for o in offs:
        h.update(pair.tgt.call("read_bytes_from_buffer", m + o, block))
    assert h.hexdigest() == want
    assert pair.tgt.call("free_managed_buffer", m, 8 << 20) == 0
