"""Test-side driver for peer.py processes (standard library only).

A `Peer` is one process running peer.py under the interpreter of one implementation ("wheel":
Mooncake's published wheel, "ours": our ctypes package). Every read from a peer is bounded by a
timeout, and every process is stopped by its PID (Popen.kill), never by name.
"""
import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER_SCRIPT = HERE / "peer.py"
DEFAULT_WHEEL_PYTHON = os.path.expanduser("~/.cache/mooncake-anchor/venv/bin/python")

IMPLS = ("wheel", "ours")
# (initiator, target): the initiator issues transfers into / out of the target's memory.
PAIRS = (("wheel", "wheel"), ("ours", "ours"), ("ours", "wheel"), ("wheel", "ours"))


def pair_id(pair):
    return f"{pair[0]}-to-{pair[1]}"


def truthy(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def interpreter_for(impl):
    """(path, reason): the interpreter of `impl`, or None and why it is unavailable."""
    if impl == "wheel":
        path = os.environ.get("MOONCAKE_TEST_PYTHON_WHEEL") or DEFAULT_WHEEL_PYTHON
        if not os.path.exists(path):
            return None, (f"Mooncake wheel interpreter {path} not found "
                          "(set MOONCAKE_TEST_PYTHON_WHEEL; MOONCAKE_REQUIRE_WHEEL=1 makes this an error)")
        return path, None
    if impl == "ours":
        path = os.environ.get("MOONCAKE_TEST_PYTHON_OURS")
        if not path:
            return None, ("MOONCAKE_TEST_PYTHON_OURS is not set: no interpreter with our package "
                          "(MOONCAKE_REQUIRE_OURS=1 makes this an error)")
        if not os.path.exists(path):
            return None, (f"MOONCAKE_TEST_PYTHON_OURS={path} does not exist "
                          "(MOONCAKE_REQUIRE_OURS=1 makes this an error)")
        return path, None
    raise ValueError(impl)


def required(impl):
    return truthy("MOONCAKE_REQUIRE_WHEEL" if impl == "wheel" else "MOONCAKE_REQUIRE_OURS")


# ---- tagged values understood by peer.py -------------------------------------------------------

def A(name, off=0):
    """Address of byte `off` of the peer's buffer `name`."""
    return {"$addr": [name, off]}


def OP(which):
    """mooncake.engine.TransferOpcode.<which> ("Read" or "Write")."""
    return {"$opcode": which}


def NOTIFY(name, msg):
    return {"$notify": [name, msg]}


def BYTES(b):
    return {"$bytes": bytes(b).hex()}


def decode(v):
    if isinstance(v, list):
        return [decode(x) for x in v]
    if isinstance(v, dict):
        if "$bytes" in v:
            return bytes.fromhex(v["$bytes"])
        if "$notify" in v:
            return tuple(v["$notify"])
        if "$enum" in v:
            return v["$enum"][1]
        return {k: decode(x) for k, x in v.items()}
    return v


class PeerError(AssertionError):
    pass


class Peer:
    def __init__(self, impl, python, log_dir, label="peer", env=None, start_timeout=60):
        self.impl = impl
        self.label = f"{label}[{impl}]"
        self.log_path = Path(log_dir) / f"{label}-{impl}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        if impl == "wheel":
            # The wheel must import Mooncake's module, never a checkout of ours on PYTHONPATH.
            full_env.pop("PYTHONPATH", None)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen([python, str(PEER_SCRIPT)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env=full_env,
                                     cwd=str(log_dir))
        self.pid = self.proc.pid
        self._buf = b""
        self.session = None
        self.port = None
        hello = self._read(start_timeout, "start-up")
        if not hello.get("ready"):
            raise PeerError(f"{self.label}: bad hello {hello}")
        self.hello = hello
        mod = hello.get("module_file") or ""
        # A misconfigured run (our variable pointing at the wheel's venv, or the reverse) would
        # make every comparison vacuous: our package is pure Python, Mooncake's is an extension.
        if impl == "ours" and not mod.endswith(".py"):
            self.close()
            raise PeerError(f"{self.label}: mooncake.engine is {mod!r} under {python}, "
                            "not a pure-Python package: MOONCAKE_TEST_PYTHON_OURS is misconfigured")
        if impl == "wheel" and mod.endswith(".py"):
            self.close()
            raise PeerError(f"{self.label}: mooncake.engine is {mod!r} under {python}, "
                            "not Mooncake's compiled module: MOONCAKE_TEST_PYTHON_WHEEL is misconfigured")

    # ---- plumbing ----
    def log_tail(self, n=4000):
        try:
            self._log.flush()
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-n:].decode("utf-8", "replace")

    def _read(self, timeout, what):
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError(f"{self.label}: no answer to {what} within {timeout}s\n"
                                f"--- log tail ---\n{self.log_tail()}")
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if r:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    code = self.proc.poll()
                    raise PeerError(f"{self.label}: exited (rc={code}) while waiting for {what}\n"
                                    f"--- log tail ---\n{self.log_tail()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError as exc:
            raise PeerError(f"{self.label}: not JSON: {line[:500]!r}\n{self.log_tail()}") from exc

    def cmd(self, op, timeout=60, check=True, **kw):
        kw["op"] = op
        try:
            self.proc.stdin.write((json.dumps(kw) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise PeerError(f"{self.label}: cannot send {op}: {exc}\n{self.log_tail()}") from exc
        res = self._read(timeout, f"{op} {kw.get('method', '')}")
        if check and not res.get("ok"):
            raise PeerError(f"{self.label}: {op} {kw.get('method', '')} raised "
                            f"{res.get('exc')}: {res.get('msg')}\n{res.get('trace', '')}")
        return res

    # ---- convenience ----
    def call(self, method, *args, timeout=60, **kwargs):
        """Call ENG.<method>(*args, **kwargs) in the peer; returns the decoded result."""
        res = self.cmd("call", timeout=timeout, method=method, args=list(args), kwargs=kwargs)
        self.last = res
        return decode(res["result"])

    def call_raw(self, method, *args, timeout=60, **kwargs):
        """Like call, but returns the whole answer (ok/exc/msg/result/type/seconds)."""
        return self.cmd("call", timeout=timeout, check=False, method=method, args=list(args),
                        kwargs=kwargs)

    def init(self, host=None, metadata=None, protocol="tcp", device=""):
        """Initializes the engine. The metadata string defaults to MOONCAKE_TEST_METADATA (else
        P2PHANDSHAKE), so the same tests run with each metadata service; with a server, the
        engine gets a unique name (its session)."""
        metadata = metadata or os.environ.get("MOONCAKE_TEST_METADATA") or "P2PHANDSHAKE"
        if host is None:
            tag = self.label.replace("[", "-").replace("]", "")
            host = "127.0.0.1" if metadata == "P2PHANDSHAKE" else f"{tag}-{self.pid}"
        res = self.cmd("init", host=host, metadata=metadata, protocol=protocol, device=device)
        if res["rc"] != 0:
            raise PeerError(f"{self.label}: initialize returned {res['rc']}\n{self.log_tail()}")
        self.port = res["port"]
        self.session = res["session"]
        return self

    def alloc(self, name, length, guard=0, fill=0, register=True, kind="mmap"):
        addr = self.cmd("alloc", name=name, len=length, guard=guard, fill=fill, kind=kind)["addr"]
        if register:
            rc = self.cmd("register", name=name)["rc"]
            if rc != 0:
                raise PeerError(f"{self.label}: register_memory({name}) returned {rc}")
        return addr

    def fill(self, name, blocks, seed):
        return self.cmd("fill", name=name, blocks=[list(b) for b in blocks], seed=seed)["sha256"]

    def digest(self, name, blocks):
        return self.cmd("digest", name=name, blocks=[list(b) for b in blocks])["sha256"]

    def peek(self, name, off, length):
        return bytes.fromhex(self.cmd("peek", name=name, off=off, len=length)["hex"])

    def poke(self, name, off, data):
        self.cmd("poke", name=name, off=off, hex=bytes(data).hex())

    def guards_intact(self, name):
        return self.cmd("guards", name=name)["intact"]

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL this peer (by PID) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass

    def request_quit(self):
        """Ask the peer to exit (the engine's destructor runs), without waiting."""
        if self.proc.poll() is None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write(b'{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

    def close(self, timeout=15):
        """Quit, wait up to `timeout` s, then SIGKILL by PID."""
        if self.proc.poll() is None:
            self.request_quit()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for f in (self.proc.stdout, self._log):
            try:
                f.close()
            except Exception:
                pass


def closed_port():
    """A TCP port on 127.0.0.1 with nothing listening (bound, then released)."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(fn, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def run_bounded(argv, timeout, env=None, cwd=None):
    """Run argv with a wall-clock bound: (returncode or None on timeout, stdout, stderr).

    The child leads a new process group (its id is the child's PID); on timeout that group is
    SIGKILLed, so helpers it started (te_bench.py's target) go too."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        return None, out, err
    return p.returncode, out, err


__all__ = ["A", "OP", "NOTIFY", "BYTES", "Peer", "PeerError", "PAIRS", "IMPLS", "pair_id",
           "interpreter_for", "required", "truthy", "closed_port", "wait_until", "run_bounded"]
