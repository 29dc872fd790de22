#!/usr/bin/env python3
"""Held connections against an HTTP metadata server command (ours or Mooncake's wheel's).

Starts `SERVER --host 127.0.0.1 --port P`, opens N connections that send nothing, then does 5
PUT+GET pairs on fresh connections (10 s timeout each) and prints how many succeeded and the
slowest pair. Stops the server by its PID. Used for docs/RELIABILITY.md:

    python3 benches/held_connections.py target/release/mooncake_http_metadata_server 1100 4096
"""
import http.client
import resource
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def put_get(port, key):
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("PUT", f"/metadata?key={key}", body=b'{"v":1}')
        r = c.getresponse()
        r.read()
        c.close()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", f"/metadata?key={key}")
        g = c.getresponse()
        body = g.read()
        c.close()
        return r.status == 200 and g.status == 200 and body == b'{"v":1}', time.monotonic() - t
    except OSError:
        return False, time.monotonic() - t


def main():
    server, counts = sys.argv[1], [int(n) for n in sys.argv[2:]] or [1100]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    proc = subprocess.Popen([server, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not listen"
                time.sleep(0.05)
        for n in counts:
            held = []
            for _ in range(n):
                try:
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                except OSError:
                    pass
            results = [put_get(port, f"k{n}-{i}") for i in range(5)]
            ok = sum(1 for r, _ in results if r)
            slowest = max(t for _, t in results)
            print(f"{n} held ({len(held)} opened): {ok}/5 PUT+GET succeeded, slowest {slowest:.2f} s")
            for s in held:
                s.close()
            time.sleep(1)
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
