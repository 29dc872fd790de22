#!/usr/bin/env python3
"""Our Python package's choice of transport on a host with RDMA devices (run in the soft-RoCE
guest by tests/rdma_guest.rs, with PYTHONPATH=python and MOONCAKE_LIB=<libmooncake.so>).

initialize(..., "rdma", "rxe1") must publish an rdma descriptor naming rxe1 only;
initialize(..., "rdma", "") every device; initialize(..., "tcp", "") a tcp descriptor.
Prints "ok" and exits 0, or prints what differs and exits 1."""
import json
import socket
import struct
import sys

from mooncake.engine import TransferEngine


def descriptor(port):
    """Our engine's own descriptor, asked on its handshake port (type 1)."""
    payload = bytes([1]) + b"{}"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.sendall(struct.pack("<Q", len(payload)) + payload)
        data = b""
        while len(data) < 8 or len(data) < 8 + struct.unpack("<Q", data[:8])[0]:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data[9:].decode())


def published(protocol, device_name):
    e = TransferEngine()
    rc = e.initialize("127.0.0.1", "P2PHANDSHAKE", protocol, device_name)
    if rc != 0:
        raise SystemExit("initialize(%r, %r) returned %s" % (protocol, device_name, rc))
    d = descriptor(e.get_rpc_port())
    return d.get("protocol"), [dev["name"] for dev in d.get("devices", [])]


def main():
    want = {
        ("rdma", "rxe1"): ("rdma", ["rxe1"]),
        ("rdma", ""): ("rdma", sorted(sys.argv[1].split())),
        ("tcp", ""): ("tcp", []),
    }
    bad = []
    for (protocol, device_name), expected in want.items():
        proto, devices = published(protocol, device_name)
        got = (proto, sorted(devices))
        if got != expected:
            bad.append("initialize(%r, %r): published %r, want %r" % (protocol, device_name, got, expected))
    print("\n".join(bad) if bad else "ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
