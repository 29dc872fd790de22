"""libmooncake's Python package: Mooncake's ``mooncake.engine`` API over ``libmooncake.so``.

``from mooncake.engine import TransferEngine`` works as with Mooncake's wheel.
``mooncake.BufferPool`` (also ``mooncake.RegisteredBufferPool``, ``mooncake.store.BufferPool``)
leases memory registered with a store; importing it does not load the library.
"""

__version__ = "0.1.0"

from .buffer_pool import BufferPool, RegisteredBufferPool  # noqa: E402
