#!/usr/bin/env python3
"""Writes a minimal py3-none-any wheel: metadata, plus optional files.

    make_wheel.py OUTDIR NAME VERSION [--summary TEXT] [--file PATH=TEXT ...]

ci/build-wheel.sh uses it for the metadata-only `mooncake-transfer-engine` and
`mooncake-transfer-engine-non-cuda` wheels (no files, no dependencies; docs/PACKAGING.md says
why they exist); ci/test-wheel.sh for a stand-in of Mooncake's CUDA wheel that owns
`mooncake/__init__.py` etc. Standard library only."""

import argparse
import base64
import hashlib
import os
import re
import zipfile


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(outdir: str, name: str, version: str, summary: str = "", files=None) -> str:
    """Writes the wheel into `outdir` and returns its path."""
    files = dict(files or {})
    norm = re.sub(r"[-_.]+", "_", name).lower()
    info = f"{norm}-{version}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + (f"Summary: {summary}\n" if summary else "")
    ).encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: libmooncake ci/make_wheel.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    record += f"{info}/RECORD,,\n"
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f"{norm}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name_in_zip, data in files.items():
            z.writestr(zipfile.ZipInfo(name_in_zip, date_time=(1980, 1, 1, 0, 0, 0)), data)
        z.writestr(zipfile.ZipInfo(f"{info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0)), record)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--summary", default="")
    p.add_argument("--file", action="append", default=[], metavar="PATH=TEXT")
    a = p.parse_args()
    files = {}
    for spec in a.file:
        path, _, text = spec.partition("=")
        files[path] = text.encode()
    print(make_wheel(a.outdir, a.name, a.version, a.summary, files))


if __name__ == "__main__":
    main()
