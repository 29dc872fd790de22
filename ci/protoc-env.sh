#!/usr/bin/env bash
# Sourced: exports PROTOC and PROTOC_INCLUDE for etcd-client's build script (cargo feature
# `etcd`), from the vendored protoc of tools/protoc-vendored unless both are already set.
# A system protoc alone is not enough: Debian's lacks the well-known .proto includes unless
# libprotobuf-dev is installed too.
if [ -z "${PROTOC:-}" ] || [ -z "${PROTOC_INCLUDE:-}" ]; then
  _protoc_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  _protoc_vars=$(cargo run -q --release --manifest-path "$_protoc_root/tools/protoc-vendored/Cargo.toml" \
    --target-dir "$_protoc_root/target/protoc-vendored")
  eval "export ${_protoc_vars//$'\n'/ }"
  unset _protoc_root _protoc_vars
fi
