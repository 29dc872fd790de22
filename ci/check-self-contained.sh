#!/usr/bin/env bash
# The repository must stand alone: no tracked file may cite or run material outside the
# checkout (the sibling `shared` tree of the development machines: its spec, bench, tools,
# design and style notes, hooks). Lists every offending file:line and exits 1, else exits 0.
# The pattern is assembled at run time so that this script does not match itself.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=shared
pattern="\.\./$dir|/work/$dir|$dir/(spec|bench|tools|DESIGN|STYLE|hooks)"
if hits=$(git grep -n -I -E "$pattern" -- . ':!ci/check-self-contained.sh'); then
  echo "check-self-contained: tracked files refer to paths outside the repository:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "check-self-contained: ok"
