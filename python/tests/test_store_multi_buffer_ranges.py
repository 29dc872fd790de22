"""The ranged multi-buffer calls (`batch_put_from_multi_buffer_ranges`,
`batch_get_into_multi_buffer_ranges`) on put and get sessions: pieces written at offsets of a
reserved object from unregistered ctypes memory, invisible until the session ends, then read
back by ranges; calls without a session, ranges past the end, lists that disagree. The same
script runs under our package and, when installed, under Mooncake's wheel, and both must
answer alike. Every process is stopped; every wait is bounded."""
import sys
from pathlib import Path

from store_support import master_or_skip, python_or_skip, run_python
from test_store_dummy import stop
from test_store_multi_buffer import _start_master

SCRIPT = r"""
import ctypes, json
import mooncake.store as s
out = {}
store = s.MooncakeDistributedStore()
assert store.setup("127.0.0.1", "%(metadata)s", 64 << 20, 16 << 20, "tcp", "", "127.0.0.1:%(rpc)d") == 0
buf = (ctypes.c_char * (1 << 20))()  # never registered
a = ctypes.addressof(buf)
ctypes.memmove(a, b"abcdefghijklmnop", 16)
put = store.batch_put_from_multi_buffer_ranges
get = store.batch_get_into_multi_buffer_ranges
out["put_no_session"] = put(["r1"], [[a]], [[4]], [[0]])
out["put_session_start"] = store.batch_put_session_start(["r1", "r2"], [10, 10])
out["put"] = put(["r1"], [[a, a + 4]], [[4, 6]], [[6, 0]])
out["put_past_end"] = put(["r1"], [[a]], [[4]], [[8]])
out["put_no_parts"] = put(["r1"], [[]], [[]], [[]])
out["put_lists_disagree"] = put(["r1", "r2"], [[a], [a]], [[4], [4]], [[0, 1], [0]])
out["put_outer_disagree"] = put(["r1", "r2"], [[a], [a]], [[4], [4]], [[0]])
out["put_empty_part_at_end"] = put(["r1"], [[a]], [[0]], [[10]])
out["put_empty_part_past_end"] = put(["r1"], [[a]], [[0]], [[11]])
out["put_keywords"] = put(keys=["r2"], all_buffer_ptrs=[[a + 10]], all_sizes=[[10]], all_dst_offsets=[[0]])
out["exist_before_end"] = store.is_exist("r1")
out["put_session_end"] = store.batch_put_session_end(["r1", "nokey"])
out["put_after_end"] = put(["r1"], [[a]], [[4]], [[0]])
out["revoke"] = store.batch_put_session_revoke(["r2"])
out["value"] = store.get("r1").decode()
g = a + 4096
out["get_no_session"] = get(["r1"], [[g]], [[4]], [[0]])
out["get_session_start"] = store.batch_get_session_start(["r1", "nokey"])
ctypes.memset(g, 0x2e, 64)
out["get"] = get(["r1"], [[g, g + 10]], [[3, 4]], [[7, 0]])
out["got"] = ctypes.string_at(g, 20).decode()
out["get_past_end"] = get(["r1"], [[g]], [[4]], [[7]])
out["get_no_parts"] = get(["r1"], [[]], [[]], [[]])
out["get_lists_disagree"] = get(["r1", "r1"], [[g], [g + 20]], [[1], [2]], [[0, 1], [8]])
out["got_second"] = ctypes.string_at(g + 20, 2).decode()
out["get_keywords"] = get(keys=["r1"], all_buffer_ptrs=[[g + 30]], all_sizes=[[10]], all_src_offsets=[[0]])
out["got_whole"] = ctypes.string_at(g + 30, 10).decode()
out["get_session_end"] = store.batch_get_session_end(["r1"])
out["get_after_end"] = get(["r1"], [[g]], [[4]], [[0]])
store.close()
print(json.dumps(out))
"""


def _run(python, master_bin, impl):
    master, rpc, metadata = _start_master(master_bin, impl)
    try:
        return run_python(python, SCRIPT % {"metadata": metadata, "rpc": rpc}, timeout=120, impl=impl)
    finally:
        stop(master)


def test_ranges_on_sessions_answer_as_the_wheel():
    expected = {
        "put_no_session": [-600], "put_session_start": [0, 0], "put": [10], "put_past_end": [-600],
        "put_no_parts": [-702], "put_lists_disagree": [-600, 4], "put_outer_disagree": [-600, -600],
        "put_empty_part_at_end": [0], "put_empty_part_past_end": [-600], "put_keywords": [10],
        "exist_before_end": 0, "put_session_end": [0, -600], "put_after_end": [-600], "revoke": [0],
        "value": "efghijabcd", "get_no_session": [-600], "get_session_start": [0, -704], "get": [7],
        "got": "bcd.......efgh......", "get_past_end": [-600], "get_no_parts": [0],
        "get_lists_disagree": [-600, 2], "got_second": "cd", "get_keywords": [10], "got_whole": "efghijabcd",
        "get_session_end": 0, "get_after_end": [-600],
    }
    assert _run(python_or_skip("ours"), master_or_skip(), "ours") == expected
    wheel = python_or_skip("wheel")
    assert _run(wheel, str(Path(wheel).parent / "mooncake_master"), "wheel") == expected


if __name__ == "__main__":
    sys.exit("run with pytest")
