"""libmooncake's Python package: Mooncake's ``mooncake.engine`` API over ``libmooncake.so``.

``from mooncake.engine import TransferEngine`` works as with Mooncake's wheel.
"""

__version__ = "0.1.0"
