#!/usr/bin/env python3
"""Turns the recordings of capture.py (and the wheel's RDMA handshake captured in tests/data)
into seed inputs, one directory per fuzz target, in the input format each target documents.

  seeds.py --captures DIR... --out fuzz/corpus-raw [--repo .]

Each input is named by the SHA-1 of its bytes (libFuzzer's naming); `cargo fuzz cmin`
minimizes the result into fuzz/corpus/<target>/ (ci/test-fuzz.sh and
docs/RELIABILITY.md say how).
"""
import argparse
import glob
import hashlib
import json
import os
import struct

LIMIT = 16 << 10  # the largest seed kept: large payloads add bytes, not coverage


def put(out, target, data):
    if not data or len(data) > LIMIT:
        return
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def frames(data, prefix_len, fmt):
    """Splits a length-prefixed stream; yields (prefix+body) of each whole frame."""
    at = 0
    while at + prefix_len <= len(data):
        n = struct.unpack(fmt, data[at:at + prefix_len])[0]
        if at + prefix_len + n > len(data):
            return
        yield data[at:at + prefix_len + n]
        at += prefix_len + n


def mooncake_tcp(out, c2s, s2c):
    """Mooncake's data protocol: 24-byte headers, a WRITE's payload after its header."""
    headers, at = [], 0
    while at + 24 <= len(c2s):
        h = c2s[at:at + 24]
        size, op = struct.unpack("<Q", h[:8])[0], h[16]
        headers.append(h)
        at += 24 + (size if op & 0x7F == 1 else 0)
    statuses = [s2c[i:i + 8] for i in range(0, len(s2c) - 7) if s2c[i + 4:i + 8] == b"VTCM"]
    for i in range(0, len(headers), 4):
        put(out, "tcp_header", b"".join(headers[i:i + 4]))
    for h, s in zip(headers, statuses):
        put(out, "tcp_header", h + s)


def our_framing(out, c2s, s2c):
    """Our framing: hello (24) then request frames; the ack (8) then reply frames."""
    put(out, "tcp_header", c2s[:24] + s2c[:8])
    reqs, at, kept = c2s[24:], 0, []
    while at + 16 <= len(reqs):
        count = struct.unpack("<I", reqs[at + 4:at + 8])[0]
        entries = reqs[at + 16:at + 16 + 24 * count]
        writes = sum(struct.unpack("<Q", entries[i + 8:i + 16])[0] for i in range(0, len(entries), 24)
                     if entries[i + 16] == 1)
        end = at + 16 + 24 * count + writes
        kept.append(reqs[at:end])
        at = end
    # Requests alone, a few frames at a time; and requests with their replies (small ones).
    for i in range(0, len(kept), 3):
        put(out, "tcp_frame", b"\x00" + b"".join(kept[i:i + 3]))
    reps = s2c[8:]
    sent = b"".join(k for k in kept if len(k) < 4096)
    if len(kept) and len(sent):
        n = len([k for k in kept if len(k) < 4096])
        # The replies to the first `n` small requests, in order: each reply's length from its
        # request (status bytes, then the OK reads' data).
        at, pieces = 0, []
        for k in kept:
            count = struct.unpack("<I", k[4:8])[0]
            reads = sum(struct.unpack("<Q", k[16 + 24 * i + 8:16 + 24 * i + 16])[0]
                        for i in range(count) if k[16 + 24 * i + 16] == 0)
            ln = 16 + count + reads
            if len(k) < 4096:
                pieces.append(reps[at:at + ln])
            at += ln
        reply = b"".join(pieces[:n])
        put(out, "tcp_frame", b"\x01" + struct.pack("<I", len(sent)) + sent + reply[:LIMIT // 2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--captures", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repo", default=".")
    a = ap.parse_args()
    out = a.out
    for cap in a.captures:
        for c2s_path in sorted(glob.glob(os.path.join(cap, "*-c2s.bin"))):
            label = os.path.basename(c2s_path).split("-")[0]
            c2s = open(c2s_path, "rb").read()
            s2c_path = c2s_path.replace("-c2s.bin", "-s2c.bin")
            s2c = open(s2c_path, "rb").read() if os.path.exists(s2c_path) else b""
            if label == "data":
                (our_framing if c2s[8:16] == b"LMCFRAME" else mooncake_tcp)(out, c2s, s2c)
            elif label == "hs":
                for stream in (c2s, s2c):
                    put(out, "handshake_frame", stream)
                    for f in frames(stream, 8, "<Q"):
                        payload = f[8:]
                        if payload[:1] == b"\x01" or payload[:1] == b"{":
                            body = payload[1:] if payload[:1] == b"\x01" else payload
                            if b'"buffers"' in body:
                                put(out, "segment_descriptor", body)
                        if payload[:1] == b"\x00":
                            put(out, "rdma_handshake", payload)
            elif label == "http":
                put(out, "http_metadata", c2s)
                # The descriptors the engines PUT.
                at = 0
                while True:
                    at = c2s.find(b"\r\n\r\n", at)
                    if at < 0:
                        break
                    body = c2s[at + 4:].split(b"PUT /", 1)[0].split(b"GET /", 1)[0].split(b"DELETE /", 1)[0]
                    if body.startswith(b"{") and b'"buffers"' in body:
                        put(out, "segment_descriptor", body.rstrip(b"\r\n"))
                    at += 4
            elif label in ("master", "dummy"):
                target = "master_proto" if label == "master" else "dummy_proto"
                put(out, target, b"\x00" + c2s)
                put(out, target, b"\x01" + s2c)
        topo = os.path.join(cap, "topology.json")
        if os.path.exists(topo):
            put(out, "topology_matrix", open(topo, "rb").read())
    # The wheel's RDMA handshake and descriptor, captured in the soft-RoCE guest.
    data = os.path.join(a.repo, "tests", "data")
    hs = json.load(open(os.path.join(data, "wheel_rdma_handshake.json")))
    texts = []

    def walk(v):
        if isinstance(v, dict):
            if isinstance(v.get("json"), str):
                texts.append((v.get("type", 0), v["json"]))
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(hs)
    desc = json.load(open(os.path.join(data, "wheel_rdma_descriptor.json")))
    walk(desc)
    for key in ("reply.json", "reply"):
        if isinstance(desc.get(key), str):
            texts.append((1, desc[key]))
    for t, text in texts:
        body = text.encode()
        payload = bytes([t]) + body
        put(out, "handshake_frame", struct.pack("<Q", len(payload)) + payload)
        if t == 0:
            put(out, "rdma_handshake", payload)
            put(out, "rdma_handshake", body)  # the old, typeless form
        if b'"buffers"' in body:
            put(out, "segment_descriptor", body)
            m = json.loads(body).get("priority_matrix")
            if m:
                put(out, "topology_matrix", json.dumps(m).encode())
    # Command lines: ones our tests and the captures ran, and the forms Mooncake's docs give.
    lines = [
        ["--rpc_address=127.0.0.1", "--rpc_port=50051", "--metrics_port=9003"],
        ["--enable_http_metadata_server=true", "--http_metadata_server_host=0.0.0.0",
         "--http_metadata_server_port=8080"],
        ["-rpc_port", "50052", "-noenable_metric_reporting", "--eviction_high_watermark_ratio=0.95",
         "--eviction_ratio", "0.05", "--default_kv_lease_ttl=5s", "--client_ttl=10"],
        ["--max_threads=4", "--rpc_thread_num=0", "--default_kv_soft_pin_ttl=30m", "--undefok=foo", "--foo=1",
         "--", "--bar"],
        ["--mode=target", "--metadata_server=P2PHANDSHAKE", "--local_server_name=127.0.0.1:12345",
         "--protocol=tcp", "--device_name=", "-threads=4", "--block_size=65536", "--noverify"],
        ["--mode=initiator", "--segment_id=127.0.0.1:12345", "--operation=write", "--duration=1",
         "--batch_size=16", "--buffer_size=1073741824", "--json", "--help"],
        ["--version"],
    ]
    for argv in lines:
        put(out, "gflags", "\0".join(argv).encode())


if __name__ == "__main__":
    main()
