"""`mooncake.http_metadata_server.KVBootstrapServer`'s request handler (`_handle_metadata`,
an async function of an aiohttp-like request) and `mooncake.mooncake_config`'s names that
Mooncake's own tests use (`_parse_segment_size`, `logger`), each run under our package and,
where present, under Mooncake's wheel, with the same expectations; plus the same key rules over
a real socket (ours)."""

import urllib.error
import urllib.request

import pytest

from store_support import python_or_skip, run_python

IMPLS = ["ours", "wheel"]

HANDLER_CASES = r"""
import asyncio, json
from mooncake.http_metadata_server import KVBootstrapServer

class Request:
    def __init__(self, method, key=None, body=b""):
        self.method = method
        self.query = {} if key is None else {"key": key}
        self.body = body
    async def read(self):
        return self.body

async def main():
    srv = KVBootstrapServer(port=0)
    out = {}
    async def call(name, method, key=None, body=b""):
        r = await srv._handle_metadata(Request(method, key, body))
        out[name] = {"status": r.status, "content_type": r.content_type,
                     "body": bytes(r.body).decode("latin-1") if r.status == 200 else None}
    for method in ("GET", "PUT", "DELETE"):
        await call("missing_" + method, method, None, b"v")
        await call("empty_" + method, method, "", b"v")
        await call("blank_" + method, method, " \t ", b"v")
    await call("put_padded", "PUT", "  valid  ", b"value")
    await call("get_padded", "GET", "  valid  ")
    await call("get_plain", "GET", "valid")
    await call("get_unknown", "GET", "nokey")
    await call("put_rpc_meta", "PUT", "mooncake/rpc_meta/a", b"1")
    await call("put_rpc_meta_again", "PUT", "mooncake/rpc_meta/a", b"2")
    await call("get_rpc_meta", "GET", "mooncake/rpc_meta/a")
    await call("delete", "DELETE", "valid")
    await call("delete_again", "DELETE", "valid")
    await call("post", "POST", "valid", b"x")
    out["store"] = sorted(srv.store)
    print(json.dumps(out))

asyncio.run(main())
"""

CONFIG_CASES = r"""
import json, logging, tempfile
from mooncake import mooncake_config as m
from mooncake.mooncake_config import (MooncakeConfig, DEFAULT_GLOBAL_SEGMENT_SIZE, DEFAULT_LOCAL_BUFFER_SIZE,
                                      _parse_segment_size)
out = {"defaults": [DEFAULT_GLOBAL_SEGMENT_SIZE, DEFAULT_LOCAL_BUFFER_SIZE]}
out["sizes"] = [_parse_segment_size(v) for v in (1024, "1024", "16MB", "16 mb", "2gb", "1kb")]
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
m.logger.addHandler(Keep())
f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
json.dump({"local_hostname": "h", "metadata_server": "P2PHANDSHAKE", "master_server_address": "m:1",
           "protocol": "RMDA"}, f)
f.close()
c = MooncakeConfig.from_file(f.name)
out["protocol"] = c.protocol
out["warned"] = any("Unrecognised protocol" in r for r in records)
print(json.dumps(out))
"""


@pytest.mark.parametrize("impl", IMPLS)
def test_handler_rejects_missing_empty_blank_keys_and_strips_the_others(impl):
    out = run_python(python_or_skip(impl), HANDLER_CASES, impl=impl)
    for method in ("GET", "PUT", "DELETE"):
        for case in ("missing", "empty", "blank"):
            r = out[f"{case}_{method}"]
            assert (r["status"], r["content_type"]) == (400, "application/json"), (case, method, r)
    assert out["put_padded"]["status"] == 200
    assert out["get_padded"] == {"status": 200, "content_type": "application/json", "body": "value"}
    assert out["get_plain"]["body"] == "value"
    assert out["get_unknown"]["status"] == 404
    assert out["put_rpc_meta"]["status"] == 200
    assert out["put_rpc_meta_again"]["status"] == 400
    assert out["get_rpc_meta"]["body"] == "1", "a refused rpc_meta PUT leaves the first value"
    assert out["delete"]["status"] == 200
    assert out["delete_again"]["status"] == 404
    assert out["post"]["status"] == 405
    assert out["store"] == ["mooncake/rpc_meta/a"], "no blank, empty or padded key was stored"


@pytest.mark.parametrize("impl", IMPLS)
def test_config_module_has_the_names_mooncakes_tests_import(impl):
    out = run_python(python_or_skip(impl), CONFIG_CASES, impl=impl)
    assert out["defaults"] == [3355443200, 1 << 30]
    assert out["sizes"] == [1024, 1024, 16 << 20, 16 << 20, 2 << 30, 1024]
    assert out["protocol"] == "rmda"
    assert out["warned"], "an unknown protocol is warned about through mooncake_config.logger"


def _send(port, method, query, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metadata{query}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_the_socket_server_applies_the_same_key_rules():
    from mooncake.http_metadata_server import KVBootstrapServer

    srv = KVBootstrapServer(0, "127.0.0.1")
    srv.run()
    try:
        port = srv.port
        for method, body in (("GET", None), ("PUT", b"v"), ("DELETE", None)):
            for query in ("", "?key=", "?key=%20%20"):
                status, ctype, text = _send(port, method, query, body)
                assert (status, ctype) == (400, "application/json"), (method, query)
                assert text == b"metadata key is required"
        assert _send(port, "PUT", "?key=%20k%20", b"bytes")[0] == 200
        assert srv.store == {"k": b"bytes"}
        assert _send(port, "GET", "?key=k")[::2] == (200, b"bytes")
        assert _send(port, "DELETE", "?key=%20k")[0] == 200
        assert _send(port, "GET", "?key=k")[0] == 404
    finally:
        srv.close()
