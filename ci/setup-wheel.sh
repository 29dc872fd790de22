#!/usr/bin/env bash
# Creates the venv with Mooncake's published wheel, the peer of the interop tests:
# $ANCHOR_HOME/venv (default ~/.cache/mooncake-anchor/venv), outside the repository.
set -euo pipefail
VENV="${ANCHOR_HOME:-$HOME/.cache/mooncake-anchor}/venv"
WHEEL="mooncake-transfer-engine-non-cuda==${MOONCAKE_WHEEL_VERSION:-0.3.13.post1}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import mooncake.engine, numpy" 2>/dev/null; then
  echo "ci/setup-wheel.sh: $VENV has the wheel"
  exit 0
fi
echo "ci/setup-wheel.sh: creating $VENV with $WHEEL"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "$WHEEL" numpy
"$VENV/bin/python" -c "import mooncake.engine; print('mooncake wheel import OK')"
