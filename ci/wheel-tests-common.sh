# Sourced by ci/test-wheel-debian11.sh and ci/test-container.sh (from the repository root): the
# wheel directory (argument 1, else $MOONCAKE_WHEEL_DIR, else dist), where the Debian roots are
# cached, a timed `step`, and `wheels`: the wheel files, or an exit when there are none.
repo=$PWD
wheel_dir=${1:-${MOONCAKE_WHEEL_DIR:-dist}}
roots=${MOONCAKE_ROOTS:-/var/tmp/mooncake-roots}
start=$(date +%s)
step() { printf '\n--- %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

shopt -s nullglob
wheels=("$wheel_dir"/*.whl)
shopt -u nullglob
if [ "${#wheels[@]}" = 0 ]; then
  echo "$0: no wheels in $wheel_dir (bash ci/build-wheel.sh makes them)" >&2
  exit 1
fi
