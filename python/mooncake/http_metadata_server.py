"""``mooncake.http_metadata_server``: the HTTP metadata service for Python code.

:class:`KVBootstrapServer` serves Mooncake's metadata protocol (what Transfer Engines and store
clients use with ``metadata_server="http://host:port/metadata"``) from a background thread:
``GET``/``PUT``/``DELETE /metadata?key=K``; keys are stripped of surrounding blanks; a missing,
empty or blank key is 400 (``application/json``, every method), an unknown key 404, a ``PUT`` of an
``rpc_meta`` key that exists already 400 (two engines may not share a name), another method 405.
The values live in the :attr:`KVBootstrapServer.store` dict (key -> bytes), which the owning
program may read and change. :meth:`KVBootstrapServer._handle_metadata` is the request handler
Mooncake's class has (an ``async`` function of an aiohttp-like request, answering a
:class:`MetadataResponse`); the socket server and it share :meth:`KVBootstrapServer.handle`.

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
from typing import Any, Dict, Optional
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("mooncake")

__all__ = ["KVBootstrapServer", "KVPoll", "MetadataResponse"]


class KVPoll(enum.Enum):
    """State of the server, as Mooncake's ``poll()`` reports it."""

    Failed = 0
    Bootstrapping = 1
    WaitingForInput = 2
    Transferring = 3
    Success = 4


class MetadataResponse:
    """One answer of the metadata protocol: ``status``, ``content_type`` and ``body`` (bytes),
    with ``text`` for the body as a string. Every answer is labelled ``application/json``, as
    Mooncake's server labels them, whatever the body."""

    __slots__ = ("status", "content_type", "body")

    def __init__(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.status = status
        self.body = body
        self.content_type = content_type

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"MetadataResponse(status={self.status}, body={self.body[:64]!r})"


# The body Mooncake's server (and our mooncake_http_metadata_server) answers, under the JSON
# content type of every answer.
_KEY_REQUIRED = b"metadata key is required"


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args) -> None:  # routine requests are verbose-only
        log.debug("metadata server: " + fmt, *args)

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if url.path != "/metadata":
            answer = MetadataResponse(404, b"not found")
        else:
            values = parse_qs(url.query, keep_blank_values=True).get("key")
            key = values[0] if values else None
            answer = self.server.kv.handle(self.command, key, body)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_PUT = do_DELETE = do_POST = _serve  # noqa: N815 - http.server's naming


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

    def handle(self, method: str, key: Optional[str], body: bytes = b"") -> MetadataResponse:
        """One request of the metadata protocol, whatever server carries it: ``key`` is the
        ``key`` query parameter (None when absent) and is stripped of surrounding blanks; a
        missing, empty or blank key is 400 ``metadata key is required``, for every method."""
        key = (key or "").strip()
        if not key:
            log.debug("metadata server: %s without a key", method)
            return MetadataResponse(400, _KEY_REQUIRED)
        if method == "GET":
            with self.lock:
                value = self.store.get(key)
            if value is None:
                return MetadataResponse(404, b"metadata not found")
            return MetadataResponse(200, value)
        if method == "PUT":
            with self.lock:
                if "rpc_meta" in key and key in self.store:
                    return MetadataResponse(400, b"Duplicate rpc_meta key not allowed")
                self.store[key] = bytes(body)
            return MetadataResponse(200, b"metadata updated")
        if method == "DELETE":
            with self.lock:
                found = self.store.pop(key, None) is not None
            if not found:
                return MetadataResponse(404, b"metadata not found")
            return MetadataResponse(200, b"metadata deleted")
        return MetadataResponse(405, b"Method not allowed")

    async def _handle_metadata(self, request: Any) -> MetadataResponse:
        """The request handler of Mooncake's class, for code that drives it without a socket:
        ``request`` has ``method``, ``query`` (a mapping) and an awaitable ``read()`` for the
        body, as an aiohttp request has."""
        body = await request.read() if request.method == "PUT" else b""
        return self.handle(request.method, request.query.get("key"), body)

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
