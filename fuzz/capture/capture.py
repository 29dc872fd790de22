#!/usr/bin/env python3
"""Records real traffic of Mooncake's wheel and of our own binaries, to seed the fuzz corpora.

Every connection goes through a recording TCP proxy on 127.0.0.1; each direction of each
connection is written, exactly as it travelled, to OUT/<label>-<n>-<c2s|s2c>.bin.

  capture.py engine --python PY --out OUT
      Two TransferEngines of PY's `mooncake.engine` (Mooncake's wheel, or our package with
      PYTHONPATH/MOONCAKE_LIB set) in P2P handshake mode. The initiator opens the target through
      a proxy of the target's handshake port ("hs"); that proxy rewrites `tcp_data_port` in the
      target's descriptor reply (the record keeps the original bytes) to a second proxy of the
      data port ("data"). The initiator then writes and reads blocks of a few sizes, singly
      and in batches, sends a notification, and probes.
  capture.py http --server CMD --python PY --out OUT
      An HTTP metadata server (CMD, given `--port P`) behind a proxy ("http"); the two engines
      use it as `http://127.0.0.1:<proxy>/metadata` and transfer as above.
  capture.py dummy --master BIN --client BIN --python PY --out OUT
      Our `mooncake_master` (its traffic behind a proxy, "master") and our `mooncake_client`;
      a dummy client of PY's `mooncake.store` (ours) attaches to the client through a recording
      proxy of its abstract unix socket ("dummy"; memfds are passed on as they came), then puts,
      gets and removes through it.
  capture.py master --master BIN --python PY --out OUT
      Our `mooncake_master` behind a proxy ("master"); a store client of PY's `mooncake.store`
      (ours) puts, gets, checks and removes a few objects through it.

Only 127.0.0.1 is used; every child is stopped by its pid; every wait is bounded.
"""
import argparse
import json
import os
import shlex
import socket
import struct
import subprocess
import sys
import threading
import time

LOCK = threading.Lock()
COUNTER = {}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """Listens on a free port and forwards every connection to `upstream`, recording both ways.
    `rewrite(data) -> data` (optional) changes what the server sends before the client sees it."""

    def __init__(self, label, upstream, out, rewrite=None):
        self.label, self.upstream, self.out, self.rewrite = label, upstream, out, rewrite
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with LOCK:
                n = COUNTER.get(self.label, 0)
                COUNTER[self.label] = n + 1
            try:
                u = socket.create_connection(self.upstream, timeout=10)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            base = os.path.join(self.out, f"{self.label}-{n}")
            threading.Thread(target=self._pump, args=(c, u, base + "-c2s.bin", None), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, base + "-s2c.bin", self.rewrite), daemon=True).start()

    @staticmethod
    def _pump(src, dst, path, rewrite):
        with open(path, "wb") as f:
            while True:
                try:
                    data = src.recv(1 << 20)
                except OSError:
                    data = b""
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                f.write(data)
                f.flush()
                try:
                    dst.sendall(rewrite(data) if rewrite else data)
                except OSError:
                    return


class HandshakeRewriter:
    """Rewrites `"tcp_data_port":N` in descriptor replies to the port of a data proxy.
    Handshake replies are one frame each (u64 length, type, JSON): the whole reply is buffered."""

    def __init__(self, out):
        self.out, self.proxies = out, {}

    def __call__(self, data):
        text = data.decode("latin-1")
        key = '"tcp_data_port":'
        at = text.find(key)
        if at < 0:
            return data
        end = at + len(key)
        digits = ""
        while end < len(text) and text[end].isdigit():
            digits += text[end]
            end += 1
        if not digits or int(digits) == 0:
            return data
        port = int(digits)
        if port not in self.proxies:
            self.proxies[port] = Proxy("data", ("127.0.0.1", port), self.out)
        new = text[:at] + key + str(self.proxies[port].port) + text[end:]
        body = new[8:].encode("latin-1")
        if len(data) >= 8 and struct.unpack("<Q", data[:8])[0] == len(data) - 8:
            return struct.pack("<Q", len(body)) + body
        return new.encode("latin-1")


ENGINE = r'''
import ctypes, json, mmap, os, sys
import mooncake.engine as me
role, metadata, host = sys.argv[1], sys.argv[2], sys.argv[3]
e = me.TransferEngine()
rc = e.initialize(host, metadata, "tcp", "")
buf = mmap.mmap(-1, 1 << 20)
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
ctypes.memset(addr, 0x5A, 1 << 20)
e.register_memory(addr, 1 << 20)
print(json.dumps({"rc": rc, "port": e.get_rpc_port(), "addr": addr, "name": host}), flush=True)
def ok(what, rc):
    print(json.dumps({"what": what, "rc": rc}), file=sys.stderr, flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "quit":
        break
    if cmd["op"] == "run":
        seg, raddr = cmd["segment"], cmd["addr"]
        for n in (1, 7, 4096, 65536):
            ok("write %d" % n, e.transfer_sync_write(seg, addr, raddr, n))
            ok("read %d" % n, e.transfer_sync_read(seg, addr + 8192, raddr, n))
        k, n = 6, 2048
        ok("batch write", e.batch_transfer_sync_write(seg, [addr + i * n for i in range(k)], [raddr + i * n for i in range(k)], [n] * k))
        ok("batch read", e.batch_transfer_sync_read(seg, [addr + i * n for i in range(k)], [raddr + i * n for i in range(k)], [n] * k))
        try:
            ok("notify", e.transfer_sync(seg, addr, raddr, 64, me.TransferOpcode.Write, me.TransferNotify("note", "hello")))
        except Exception as x:
            ok("notify %r" % x, -1)
        try:
            ok("probe", e.send_probe(seg))
        except Exception as x:
            ok("probe %r" % x, -1)
        try:
            topo = e.get_local_topology()
            ok("topology", len(topo))
            if os.environ.get("MC_CAPTURE_TOPOLOGY"):
                open(os.environ["MC_CAPTURE_TOPOLOGY"], "w").write(topo)
        except Exception as x:
            ok("topology %r" % x, -1)
        print(json.dumps({"done": True}), flush=True)
'''


def start_engine(python, role, metadata, host):
    p = subprocess.Popen([python, "-c", ENGINE, role, metadata, host], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=dict(os.environ, MC_TCP_BIND_ADDRESS="127.0.0.1"))
    return p, json.loads(p.stdout.readline())


def stop(p):
    try:
        p.stdin.write('{"op":"quit"}\n')
        p.stdin.flush()
        p.wait(timeout=20)
    except Exception:
        p.kill()
        p.wait(timeout=10)


def engines(python, metadata, segment_of, named=False):
    """`named`: each engine gets a name of its own, `127.0.0.1:<free port>` (with a metadata
    service our engines take the name verbatim, and two may not share one)."""
    host = lambda: f"127.0.0.1:{free_port()}" if named else "127.0.0.1"
    target, t = start_engine(python, "target", metadata, host())
    init, _ = start_engine(python, "initiator", metadata, host())
    try:
        seg = segment_of(t)
        init.stdin.write(json.dumps({"op": "run", "segment": seg, "addr": t["addr"]}) + "\n")
        init.stdin.flush()
        print("initiator:", init.stdout.readline().strip(), file=sys.stderr)
    finally:
        stop(init)
        stop(target)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["engine", "http", "master", "dummy"])
    ap.add_argument("--client")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", required=True)
    ap.add_argument("--server", help="the server's command line, one string")
    ap.add_argument("--master")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.mode == "engine":
        rw = HandshakeRewriter(a.out)

        def seg(t):
            hs = Proxy("hs", ("127.0.0.1", t["port"]), a.out, rewrite=rw)
            return f"127.0.0.1:{hs.port}"
        os.environ["MC_CAPTURE_TOPOLOGY"] = os.path.join(a.out, "topology.json")
        engines(a.python, "P2PHANDSHAKE", seg)
    elif a.mode == "http":
        port = free_port()
        srv = subprocess.Popen(shlex.split(a.server) + ["--port", str(port)])
        try:
            time.sleep(2)
            http = Proxy("http", ("127.0.0.1", port), a.out)
            engines(a.python, f"http://127.0.0.1:{http.port}/metadata", lambda t: t["name"], named=True)
        finally:
            srv.terminate()
            srv.wait(timeout=10)
    elif a.mode == "dummy":
        dummy(a)
    else:
        port = free_port()
        srv = subprocess.Popen([a.master, "--rpc_address=127.0.0.1", f"--rpc_port={port}",
                                f"--metrics_port={free_port()}"])
        try:
            time.sleep(2)
            m = Proxy("master", ("127.0.0.1", port), a.out)
            code = STORE % (m.port,)
            subprocess.run([a.python, "-c", code], timeout=120, check=False,
                           env=dict(os.environ, MC_TCP_BIND_ADDRESS="127.0.0.1"))
        finally:
            srv.terminate()
            srv.wait(timeout=10)
    time.sleep(1)


class UnixProxy:
    """A recording proxy between two abstract unix sockets that passes SCM_RIGHTS fds on."""

    def __init__(self, label, listen_name, upstream_name, out):
        self.label, self.upstream, self.out = label, "\0" + upstream_name, out
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind("\0" + listen_name)
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        n = 0
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.connect(self.upstream)
            base = os.path.join(self.out, f"{self.label}-{n}")
            n += 1
            for src, dst, d in ((c, u, "c2s"), (u, c, "s2c")):
                threading.Thread(target=self._pump, args=(src, dst, f"{base}-{d}.bin"), daemon=True).start()

    @staticmethod
    def _pump(src, dst, path):
        with open(path, "wb") as f:
            while True:
                try:
                    data, fds, _, _ = socket.recv_fds(src, 1 << 20, 8)
                except OSError:
                    data, fds = b"", []
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                f.write(data)
                f.flush()
                try:
                    socket.send_fds(dst, [data], fds) if fds else dst.sendall(data)
                except OSError:
                    return
                finally:
                    for fd in fds:
                        os.close(fd)


def dummy(a):
    rpc, metrics, client_port, proxy_port = free_port(), free_port(), free_port(), free_port()
    master = subprocess.Popen([a.master, "--rpc_address=127.0.0.1", f"--rpc_port={rpc}",
                               f"--metrics_port={metrics}"])
    client = None
    try:
        time.sleep(2)
        m = Proxy("master", ("127.0.0.1", rpc), a.out)
        client = subprocess.Popen([a.client, f"--master_server_address=127.0.0.1:{m.port}", "--host=127.0.0.1",
                                   f"--port={client_port}", "--metadata_server=P2PHANDSHAKE"],
                                  stdout=subprocess.PIPE, env=dict(os.environ, MC_TCP_BIND_ADDRESS="127.0.0.1"))
        client.stdout.readline()
        UnixProxy("dummy", f"mooncake_client:{proxy_port}", f"mooncake_client:{client_port}", a.out)
        subprocess.run([a.python, "-c", DUMMY % (proxy_port,)], timeout=120, check=False)
    finally:
        for p in (client, master):
            if p is not None:
                p.terminate()
                p.wait(timeout=15)


DUMMY = r'''
import ctypes
import mooncake.store as s
d = s.MooncakeDistributedStore()
print("setup_dummy", d.setup_dummy(64 << 20, 16 << 20, "127.0.0.1:%d"))
print("health", d.health_check())
print("put", d.put("dummy-key", b"dummy-value"), d.put("dummy-key", b"other"))
print("get", d.get("dummy-key"), d.get("missing"))
a = d.alloc_from_mem_pool(1 << 20)
print("register", d.register_buffer(a, 1 << 20))
ctypes.memmove(a, b"Z" * 100, 100)
print("put_from", d.put_from("dummy-zc", a, 100), d.get_into("dummy-zc", a + 4096, 4096))
print("exists", d.batch_is_exist(["dummy-key", "missing"]), d.get_size("dummy-key"))
print("remove", d.remove("dummy-zc"), d.remove("dummy-zc", True), d.remove_all())
print("close", d.close())
'''


STORE = r'''
from mooncake.store import MooncakeDistributedStore
s = MooncakeDistributedStore()
rc = s.setup("127.0.0.1", "P2PHANDSHAKE", 64 << 20, 16 << 20, "tcp", "", "127.0.0.1:%d")
print("setup", rc)
for i, n in enumerate((1, 100, 5000, 70000)):
    print("put", s.put("key%%d" %% i, bytes([i]) * n))
print("get", len(s.get("key2")), s.is_exist("key1"), s.is_exist("nope"))
print("batch", s.batch_is_exist(["key0", "key3", "x"]), s.get_size("key3"))
print("remove", s.remove("key0"), s.remove_all())
s.close()
'''

if __name__ == "__main__":
    main()
