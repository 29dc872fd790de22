"""libmooncake's Python package: Mooncake's ``mooncake.engine`` API over ``libmooncake.so``.

``from mooncake.engine import TransferEngine`` works as with Mooncake's wheel.
``mooncake.BufferPool`` (also ``mooncake.RegisteredBufferPool``, ``mooncake.store.BufferPool``)
leases memory registered with a store; importing it does not load the library.
"""


def _read_version() -> str:
    """The crate's version (Cargo.toml ``[package] version``, the one source): in a built package
    from ``_version.py``, which python/setup.py writes from Cargo.toml; in a checkout (``python/``
    on ``PYTHONPATH``) from the checkout's Cargo.toml."""
    import importlib
    import os
    import re

    try:
        return str(importlib.import_module(__name__ + "._version").VERSION)
    except ImportError:
        pass
    cargo = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "Cargo.toml")
    try:
        with open(cargo) as f:
            text = f.read()
    except OSError as e:
        raise ImportError(
            f"mooncake: no version: neither mooncake/_version.py (written by python/setup.py) nor {cargo}"
        ) from e
    section = re.search(r"^\[package\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    value = section and re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M)
    if not value:
        raise ImportError(f"mooncake: {cargo} has no [package] version")
    return value.group(1)


__version__ = _read_version()

from .buffer_pool import BufferPool as BufferPool  # noqa: E402  (re-exported)
from .buffer_pool import RegisteredBufferPool as RegisteredBufferPool  # noqa: E402
