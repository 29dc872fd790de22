"""Fixtures: implementations, peers, and initiator/target pairs.

Every engine lives in a peer process (peer.py) started with the interpreter of its implementation:
  MOONCAKE_TEST_PYTHON_WHEEL  Mooncake's published wheel (default ~/.cache/mooncake-anchor/venv/bin/python)
  MOONCAKE_TEST_PYTHON_OURS   an interpreter where our package (python/) is importable
An implementation whose interpreter is missing is skipped, with the reason, unless
MOONCAKE_REQUIRE_WHEEL=1 / MOONCAKE_REQUIRE_OURS=1, which turn the skip into a failure.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import IMPLS, PAIRS, Peer, interpreter_for, pair_id, required  # noqa: E402

# Sizes used by the shared pair: a target region with guard bytes on both sides, and the
# initiator's source and read-back regions.
DST_LEN = 64 << 20
GUARD = 64 << 10
SRC_LEN = 64 << 20


def python_of(impl):
    path, reason = interpreter_for(impl)
    if path is None:
        if required(impl):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def pytest_report_header(config):
    lines = []
    for impl in IMPLS:
        path, reason = interpreter_for(impl)
        lines.append(f"mooncake impl {impl}: {path or 'UNAVAILABLE - ' + reason}")
    return lines


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("peer-logs")


class PeerFactory:
    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.peers = []

    def __call__(self, impl, label="peer", env=None, init=True):
        p = Peer(impl, python_of(impl), self.log_dir, label=label, env=env)
        self.peers.append(p)
        if init:
            p.init()
        return p

    def close_all(self):
        for p in self.peers:  # engines shut down in parallel (Mooncake's destructor takes ~1-2 s)
            p.request_quit()
        for p in reversed(self.peers):
            p.close()
        self.peers.clear()


@pytest.fixture
def make_peer(log_dir):
    """Factory for peers owned by one test (closed, or killed by PID, at teardown)."""
    f = PeerFactory(log_dir)
    yield f
    f.close_all()


class Pair:
    """An initiator and a target engine, both initialized with P2PHANDSHAKE over tcp.

    target: buffer "dst" (DST_LEN bytes, GUARD bytes of 0xEE on each side, registered)
    initiator: buffers "src" and "back" (SRC_LEN bytes each, registered)
    """

    def __init__(self, ini, tgt):
        self.ini = ini
        self.tgt = tgt
        self.dst = tgt.alloc("dst", DST_LEN, guard=GUARD)
        self.src = ini.alloc("src", SRC_LEN)
        self.back = ini.alloc("back", SRC_LEN)

    @property
    def session(self):
        return self.tgt.session


@pytest.fixture(scope="module", params=PAIRS, ids=[pair_id(p) for p in PAIRS])
def pair(request, log_dir):
    """A long-lived pair shared by the tests of one module (one per implementation pairing)."""
    ini_impl, tgt_impl = request.param
    python_of(ini_impl), python_of(tgt_impl)  # skip before starting anything
    f = PeerFactory(log_dir)
    try:
        tgt = f(tgt_impl, label="target")
        ini = f(ini_impl, label="initiator")
        p = Pair(ini, tgt)
    except BaseException:
        f.close_all()
        raise
    yield p
    f.close_all()


@pytest.fixture(params=PAIRS, ids=[pair_id(p) for p in PAIRS])
def impl_pair(request):
    """(initiator_impl, target_impl), for tests that start their own peers."""
    for impl in request.param:
        python_of(impl)
    return request.param


@pytest.fixture(scope="module", params=IMPLS)
def engine(request, log_dir):
    """One initialized engine per implementation, shared by the tests of a module."""
    f = PeerFactory(log_dir)
    try:
        e = f(request.param, label="engine")
    except BaseException:
        f.close_all()
        raise
    yield e
    f.close_all()


@pytest.fixture(params=IMPLS)
def impl(request):
    python_of(request.param)
    return request.param
