"""``mooncake.http_metadata_server``: the HTTP metadata service for Python code.

:class:`KVBootstrapServer` serves Mooncake's metadata protocol (what Transfer Engines and store
clients use with ``metadata_server="http://host:port/metadata"``) from a background thread:
``GET``/``PUT``/``DELETE /metadata?key=K``; a missing key is 404, a ``PUT`` of an ``rpc_meta``
key that exists already is 400 (two engines may not share a name), an empty key 400. The
values live in the :attr:`KVBootstrapServer.store` dict (key -> bytes), which the owning
program may read and change.

It is a small Python server (standard library only, one thread per connection) rather than
our ``mooncake_http_metadata_server`` binary because Mooncake's class exposes that dict: code
that inspects ``server.store`` needs the data in this process. The binary remains the choice
for a standalone service (the ``mooncake_http_metadata_server`` command).
"""

from __future__ import annotations

import enum
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("mooncake")

__all__ = ["KVBootstrapServer", "KVPoll"]


class KVPoll(enum.Enum):
    """State of the server, as Mooncake's ``poll()`` reports it."""

    Failed = 0
    Bootstrapping = 1
    WaitingForInput = 2
    Transferring = 3
    Success = 4


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args) -> None:  # routine requests are verbose-only
        log.debug("metadata server: " + fmt, *args)

    def _key(self) -> Optional[str]:
        url = urlsplit(self.path)
        if url.path != "/metadata":
            self._reply(404, b"not found")
            return None
        key = (parse_qs(url.query).get("key") or [""])[0].strip()
        if not key:
            self._reply(400, b"metadata key is required")
            return None
        return key

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        key = self._key()
        if key is None:
            return
        with self.server.kv.lock:
            value = self.server.kv.store.get(key)
        if value is None:
            self._reply(404, b"metadata not found")
        else:
            self._reply(200, value)

    def do_PUT(self) -> None:  # noqa: N802
        key = self._key()
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length > 0 else b""
        if key is None:
            return
        with self.server.kv.lock:
            if "rpc_meta" in key and key in self.server.kv.store:
                duplicate = True
            else:
                duplicate = False
                self.server.kv.store[key] = data
        if duplicate:
            self._reply(400, b"Duplicate rpc_meta key not allowed")
        else:
            self._reply(200, b"metadata updated")

    def do_DELETE(self) -> None:  # noqa: N802
        key = self._key()
        if key is None:
            return
        with self.server.kv.lock:
            found = self.server.kv.store.pop(key, None) is not None
        self._reply(200 if found else 404, b"metadata deleted" if found else b"metadata not found")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, kv: "KVBootstrapServer") -> None:
        self.kv = kv
        super().__init__(addr, _Handler)


class KVBootstrapServer:
    """Mooncake's HTTP metadata server: ``KVBootstrapServer(port, host="0.0.0.0")``,
    ``run()`` starts it in a daemon thread (and returns the thread), ``close()`` stops it,
    ``poll()`` says whether it runs, ``store`` holds the values."""

    def __init__(self, port: int, host: str = "0.0.0.0") -> None:
        self.port = port
        self.host = host
        self.store: Dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.thread: Optional[threading.Thread] = None
        self._server: Optional[_Server] = None

    def run(self) -> threading.Thread:
        """Binds ``host:port`` and serves from a background thread; an address in use raises
        ``OSError`` here (Mooncake's logs it from the thread)."""
        self._server = _Server((self.host, self.port), self)
        if self.port == 0:
            self.port = self._server.server_address[1]
        self.thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="mooncake-http-metadata", daemon=True)
        self.thread.start()
        log.info("HTTP metadata server started on %s:%d", self.host, self.port)
        return self.thread

    def close(self) -> None:
        """Stops serving and closes the socket (waits at most 2 s for the thread)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.thread is not None and self.thread.is_alive():
            self.thread.join(timeout=2)

    def poll(self) -> KVPoll:
        if self.thread is None or not self.thread.is_alive():
            return KVPoll.Failed
        return KVPoll.Success


def main(argv=None) -> int:
    """``python -m mooncake.http_metadata_server --port 8080 --host 0.0.0.0``."""
    import argparse
    import signal
    import time

    p = argparse.ArgumentParser(description="HTTP metadata server for Mooncake")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    args = p.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level))
    server = KVBootstrapServer(args.port, args.host)
    server.run()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and server.poll() == KVPoll.Success:
        time.sleep(0.5)
    server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
