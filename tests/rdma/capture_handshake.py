#!/usr/bin/env python3
"""Capture Mooncake handshake frames (type-0 RDMA connection) with plain sockets.

Frames: u64 LE length (= 1 + JSON bytes) + u8 type + JSON text. Everything recorded is the JSON
text exactly as received (no re-encoding).

  capture_handshake.py fake-peer --port P --out FILE [--host H] [--device rxe0] [--gid-index 1]
                                 [--max-conns 8] [--duration 300] [--qps N]
      Listens on H:P (default 127.0.0.1) as a fake P2P segment "H:P". A type-1 request is answered
      with a fabricated RDMA descriptor: one device (name, lid and gid read from sysfs), one
      buffer "cpu:0" at 0x10000000, 1 MiB, rkey/lkey 0x1234, priority_matrix
      {"cpu:0": [[device], []]}. A type-0 request is recorded and answered like an accepting peer
      (local/peer nic paths swapped, our gid/lid, fake qp numbers 0x100+i, one per requested QP,
      ready_ack echoed when the request carries it) so the initiator goes on to send what it
      sends after a successful handshake. Other types get {} back. FILE (JSON) is rewritten after
      every frame: {"frames": [{"conn": k, "dir": "in"|"out", "type": t, "json": text}, ...]}.
      Serial, bounded by --max-conns connections and --duration seconds.
  capture_handshake.py probe-passive --target H:P --out FILE [--qps N]
      Reads the target's descriptor (type 1), then sends it a type-0 request from a made-up
      initiator "127.0.0.1:1@<its first device>" using the target's own gid/lid and N (default 2)
      fake qp numbers; records request and reply (type, JSON text) in FILE.
"""
import argparse
import json
import os
import socket
import struct
import sys
import time


def send_frame(sock, ftype, text):
    body = bytes([ftype]) + text.encode()
    sock.sendall(struct.pack("<Q", len(body)) + body)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("peer closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def recv_frame(sock):
    n = struct.unpack("<Q", recv_exact(sock, 8))[0]
    if n == 0 or n > (1 << 20):
        raise ValueError("bad frame length %d" % n)
    body = recv_exact(sock, n)
    return body[0], body[1:].decode()


def sysfs_gid(device, index):
    """GID in Mooncake's descriptor format: 16 bytes, two hex digits each, joined by ':'."""
    raw = open("/sys/class/infiniband/%s/ports/1/gids/%d" % (device, index)).read().strip()
    hexs = raw.replace(":", "")
    return ":".join(hexs[i:i + 2] for i in range(0, 32, 2))


def sysfs_lid(device):
    return int(open("/sys/class/infiniband/%s/ports/1/lid" % device).read().strip(), 0)


def fake_peer(a):
    name = "%s:%d" % (a.host, a.port)
    gid = sysfs_gid(a.device, a.gid_index)
    lid = sysfs_lid(a.device)
    desc = {
        "name": name, "protocol": "rdma", "rdma_server_name": "", "tcp_data_port": 0,
        "tcp_proto_version": 2, "timestamp": time.strftime("%Y-%m-%d %H:%M:%S.000000"),
        "devices": [{"name": a.device, "lid": lid, "gid": gid}],
        "buffers": [{"name": "cpu:0", "addr": 0x10000000, "length": 1 << 20,
                     "rkey": [0x1234], "lkey": [0x1234]}],
        "priority_matrix": {"cpu:0": [[a.device], []]},
    }
    frames = []

    def save():
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"segment": name, "device": a.device, "gid": gid, "lid": lid,
                       "fabricated_descriptor": desc, "frames": frames}, f, indent=1)
        os.replace(tmp, a.out)

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((a.host, a.port))
    srv.listen(8)
    deadline = time.monotonic() + a.duration
    print("fake-peer: listening as %s gid %s lid %d" % (name, gid, lid), file=sys.stderr, flush=True)
    save()
    for k in range(a.max_conns):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        srv.settimeout(left)
        try:
            c, peer = srv.accept()
        except socket.timeout:
            break
        with c:
            c.settimeout(30)
            try:
                t, text = recv_frame(c)
            except Exception as e:  # record and carry on
                frames.append({"conn": k, "dir": "in", "error": str(e)})
                save()
                continue
            frames.append({"conn": k, "dir": "in", "type": t, "json": text})
            if t == 1:
                reply = json.dumps(desc, sort_keys=True) + "\n"
            elif t == 0:
                req = json.loads(text)
                r = {"local_nic_path": req.get("peer_nic_path", ""),
                     "peer_nic_path": req.get("local_nic_path", ""),
                     "local_gid": gid, "local_lid": lid, "payload": "", "reply_msg": "",
                     "qp_num": [0x100 + i for i in range(a.qps or len(req.get("qp_num", [])))]}
                if "ready_ack" in req:
                    r["ready_ack"] = False
                reply = json.dumps(r, sort_keys=True) + "\n"
            else:
                reply = "{}\n"
            send_frame(c, t, reply)
            frames.append({"conn": k, "dir": "out", "type": t, "json": reply})
            save()
            print("fake-peer: conn %d type %d: %s" % (k, t, text.strip()), file=sys.stderr, flush=True)
            try:
                c.shutdown(socket.SHUT_WR)
                c.recv(1)
            except OSError:
                pass
    srv.close()
    save()


def probe_passive(a):
    host, port = a.target.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as c:
        send_frame(c, 1, "{}\n")
        dtype, dtext = recv_frame(c)
    d = json.loads(dtext)
    dev = d["devices"][0]
    me = "127.0.0.1:1"
    req = {"local_nic_path": "%s@%s" % (me, dev["name"]), "local_lid": dev["lid"],
           "local_gid": dev["gid"], "peer_nic_path": "%s@%s" % (a.target, dev["name"]),
           "qp_num": [0x200 + i for i in range(a.qps)], "payload": "", "reply_msg": "",
           "ready_ack": False}
    rtext = json.dumps(req, sort_keys=True) + "\n"
    t0 = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=120) as c:
        send_frame(c, 0, rtext)
        t, reply = recv_frame(c)
    out = {"target": a.target, "descriptor_type": dtype, "descriptor_json": dtext, "request_json": rtext,
           "reply_type": t, "reply_json": reply, "reply_seconds": round(time.monotonic() - t0, 3)}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print("probe-passive: reply type %d: %s" % (t, reply.strip()), file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("fake-peer")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--host", default="127.0.0.1")
    f.add_argument("--out", required=True)
    f.add_argument("--device", default="rxe0")
    f.add_argument("--gid-index", type=int, default=int(os.environ.get("RDMA_VM_GID_INDEX", "1")))
    f.add_argument("--max-conns", type=int, default=8)
    f.add_argument("--duration", type=float, default=300)
    f.add_argument("--qps", type=int, default=0, help="qp numbers in our reply (0 = as many as asked)")
    q = sub.add_parser("probe-passive")
    q.add_argument("--target", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--qps", type=int, default=2)
    a = p.parse_args()
    fake_peer(a) if a.mode == "fake-peer" else probe_passive(a)


if __name__ == "__main__":
    main()
