"""Probe: does a master stopped for twice its client_ttl keep the objects?

Starts MASTER (a mooncake_master executable) with --client_ttl=TTL and its HTTP metadata
server on free loopback ports, sets up one store client (whichever `mooncake.store` this
Python imports: Mooncake's wheel, or ours with PYTHONPATH=python MOONCAKE_LIB=...), puts KEYS
objects of 64 KiB, stops the master with SIGSTOP for 2 x TTL, resumes it with SIGCONT, waits
3 x TTL for heartbeats, and counts the objects still readable and intact. Prints one line:
`kept K of N objects`. Everything it starts is stopped by its PID; about 20 s.

    python tools/reliability/paused_master.py MASTER [TTL] [KEYS]
"""

import os
import signal
import socket
import subprocess
import sys
import time

from mooncake.store import MooncakeDistributedStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"master exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"master did not listen on {port}")


def main() -> None:
    master_bin = sys.argv[1]
    ttl = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    keys = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    rpc, http = free_port(), free_port()
    master = subprocess.Popen(
        [
            master_bin,
            f"--rpc_port={rpc}",
            "--rpc_address=127.0.0.1",
            f"--client_ttl={ttl}",
            "--enable_http_metadata_server=true",
            "--http_metadata_server_host=127.0.0.1",
            f"--http_metadata_server_port={http}",
            f"--metrics_port={free_port()}",
            "--metrics_host=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(os.environ.get("PROBE_MASTER_LOG", os.devnull), "w"),
    )
    try:
        wait_port(rpc, master)
        wait_port(http, master)
        store = MooncakeDistributedStore()
        rc = store.setup(
            "127.0.0.1",
            f"http://127.0.0.1:{http}/metadata",
            64 << 20,
            16 << 20,
            "tcp",
            "",
            f"127.0.0.1:{rpc}",
        )
        assert rc == 0, f"setup: {rc}"
        values = {f"k{i}": bytes([i % 251]) * (64 << 10) for i in range(keys)}
        for k, v in values.items():
            assert store.put(k, v) == 0, k
        time.sleep(0.5)
        os.kill(master.pid, signal.SIGSTOP)
        time.sleep(2 * ttl)
        os.kill(master.pid, signal.SIGCONT)
        time.sleep(3 * ttl)
        kept = sum(1 for k, v in values.items() if store.get(k) == v)
        print(f"kept {kept} of {keys} objects (master stopped {2 * ttl} s, client_ttl {ttl} s)", flush=True)
        store.close()
    finally:
        master.send_signal(signal.SIGCONT)
        master.kill()
        master.wait()


if __name__ == "__main__":
    main()
