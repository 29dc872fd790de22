"""``mooncake.mooncake_config``: the store client's configuration, as Mooncake's wheel reads it.

:class:`MooncakeConfig` comes from a JSON file (:meth:`MooncakeConfig.from_file`, the file
named by ``MOONCAKE_CONFIG_PATH`` for :meth:`MooncakeConfig.load_from_env`) or from the
``MOONCAKE_*`` variables (SGLang HiCache sets ``MOONCAKE_MASTER`` and friends). Sizes are ints or
human-readable strings (``"16MB"``, ``"4 gb"``, ``"1.5G"``; powers of 1024).

JSON keys / fields: ``local_hostname``, ``metadata_server``, ``master_server_address``
(required, non-empty), ``global_segment_size`` (default 3355443200), ``local_buffer_size``
(default 1 GiB), ``protocol`` (``"tcp"``; lower-cased), ``device_name`` (``""``),
``enable_ssd_offload``, ``ssd_offload_path``, ``tenant_id`` (``"default"``),
``enable_client_http_server``, ``client_http_port`` (9300).

Variables of :meth:`load_from_env` without a file: ``MOONCAKE_MASTER`` (required),
``MOONCAKE_LOCAL_HOSTNAME`` (``localhost``), ``MOONCAKE_TE_META_DATA_SERVER``
(``P2PHANDSHAKE``), ``MOONCAKE_GLOBAL_SEGMENT_SIZE``, ``MOONCAKE_LOCAL_BUFFER_SIZE``,
``MOONCAKE_PROTOCOL`` (``tcp``), ``MOONCAKE_DEVICE`` (``""``), ``MOONCAKE_OFFLOAD_ENABLED``,
``MOONCAKE_OFFLOAD_FILE_STORAGE_PATH``, ``MOONCAKE_TENANT_ID``,
``MOONCAKE_ENABLE_CLIENT_HTTP_SERVER``, ``MOONCAKE_CLIENT_HTTP_PORT``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Optional

log = logging.getLogger("mooncake")
# Mooncake's module calls its logger so (its tests capture warnings through it).
logger = log

DEFAULT_GLOBAL_SEGMENT_SIZE = 3355443200  # 3.125 GiB, Mooncake's default
DEFAULT_LOCAL_BUFFER_SIZE = 1 << 30

_KNOWN_PROTOCOLS = {"tcp", "rdma", "efa", "nvmeof", "nvlink", "musa", "nvlink_intra", "hip", "barex", "cxl",
                    "ascend", "ub", "ubshmem", "maca", "sunrise_link", "rpc_only"}
_REQUIRED = ("local_hostname", "metadata_server", "master_server_address")
_SIZE = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)$")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def parse_size(value: Any) -> int:
    """A byte count from an int, a float or a string such as ``"16MB"``, ``"16 mb"``,
    ``"1.5g"``; ``ValueError`` for anything else (an empty string, ``"50%"``, a missing number)."""
    if isinstance(value, bool):
        raise ValueError(f"Invalid segment size: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"Invalid segment size: {value!r}")
    s = value.strip().lower()
    m = _SIZE.match(s)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"Invalid segment size: {value!r} (a number and one of B, KB, MB, GB, TB)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_bool(value: Any) -> bool:
    """True/False from a bool, a number or ``"true"/"false"/"yes"/"no"/"on"/"off"/"1"/"0"``
    (``""`` and None are False); ``ValueError`` otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    if value is None:
        return False
    s = str(value).strip().lower()
    if s in ("", "false", "0", "no", "off", "disable"):
        return False
    if s in ("true", "1", "yes", "on", "enable"):
        return True
    raise ValueError(f"Invalid boolean value: {value!r}")


@dataclass
class MooncakeConfig:
    """A store client's configuration (see the module docstring for the keys)."""

    local_hostname: str
    metadata_server: str
    global_segment_size: int
    local_buffer_size: int
    protocol: str
    device_name: Optional[str]
    master_server_address: str
    enable_ssd_offload: bool = False
    ssd_offload_path: str = ""
    tenant_id: str = "default"
    enable_client_http_server: bool = False
    client_http_port: int = 9300

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, str) or not self.protocol.strip():
            raise ValueError(f"Invalid protocol: {self.protocol!r}; e.g. 'tcp' or 'rdma'")
        self.protocol = self.protocol.strip().lower()
        if self.protocol not in _KNOWN_PROTOCOLS:
            log.warning("MooncakeConfig: Unrecognised protocol %r, passed on unchanged", self.protocol)
        for name in ("global_segment_size", "local_buffer_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"Invalid {name}: {getattr(self, name)}; sizes are non-negative")
        for name in _REQUIRED:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Config field {name!r} must be a non-empty string, got {value!r}")

    @staticmethod
    def from_file(file_path: str) -> "MooncakeConfig":
        """Reads the JSON file at ``file_path``; missing required keys raise ``ValueError``."""
        with open(file_path) as f:
            config = json.load(f)
        for name in _REQUIRED:
            if name not in config:
                raise ValueError(f"Missing required config field: {name}")
        path, tenant = config.get("ssd_offload_path"), config.get("tenant_id")
        return MooncakeConfig(
            local_hostname=config["local_hostname"],
            metadata_server=config["metadata_server"],
            global_segment_size=parse_size(config.get("global_segment_size", DEFAULT_GLOBAL_SEGMENT_SIZE)),
            local_buffer_size=parse_size(config.get("local_buffer_size", DEFAULT_LOCAL_BUFFER_SIZE)),
            protocol=config.get("protocol", "tcp"),
            device_name=config.get("device_name", ""),
            master_server_address=config["master_server_address"],
            enable_ssd_offload=parse_bool(config.get("enable_ssd_offload", False)),
            ssd_offload_path="" if path is None else str(path),
            tenant_id="default" if tenant is None else str(tenant),
            enable_client_http_server=parse_bool(config.get("enable_client_http_server", False)),
            client_http_port=int(config.get("client_http_port", 9300)),
        )

    @staticmethod
    def load_from_env() -> "MooncakeConfig":
        """The file named by ``MOONCAKE_CONFIG_PATH``, else the ``MOONCAKE_*`` variables
        (``MOONCAKE_MASTER`` required); ``ValueError`` when neither is set."""
        path = os.getenv("MOONCAKE_CONFIG_PATH")
        if path is not None:
            return MooncakeConfig.from_file(path)
        if not os.getenv("MOONCAKE_MASTER"):
            raise ValueError("Neither the environment variable 'MOONCAKE_CONFIG_PATH' nor 'MOONCAKE_MASTER' is set.")
        env = os.getenv
        return MooncakeConfig(
            local_hostname=env("MOONCAKE_LOCAL_HOSTNAME", "localhost"),
            metadata_server=env("MOONCAKE_TE_META_DATA_SERVER", "P2PHANDSHAKE"),
            global_segment_size=parse_size(env("MOONCAKE_GLOBAL_SEGMENT_SIZE", DEFAULT_GLOBAL_SEGMENT_SIZE)),
            local_buffer_size=parse_size(env("MOONCAKE_LOCAL_BUFFER_SIZE", DEFAULT_LOCAL_BUFFER_SIZE)),
            protocol=env("MOONCAKE_PROTOCOL", "tcp"),
            device_name=env("MOONCAKE_DEVICE", ""),
            master_server_address=env("MOONCAKE_MASTER", ""),  # set: checked above
            enable_ssd_offload=parse_bool(env("MOONCAKE_OFFLOAD_ENABLED", "false")),
            ssd_offload_path=env("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH", ""),
            tenant_id=env("MOONCAKE_TENANT_ID", "default"),
            enable_client_http_server=parse_bool(env("MOONCAKE_ENABLE_CLIENT_HTTP_SERVER", "false")),
            client_http_port=int(env("MOONCAKE_CLIENT_HTTP_PORT", "9300")),
        )


# Mooncake's module names the size parser so (its tests import it).
_parse_segment_size = parse_size
