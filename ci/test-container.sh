#!/usr/bin/env bash
# Builds the root Dockerfile without a container daemon or a registry, and checks the image:
#
#   ci/test-container.sh [WHEEL_DIR]     (default $MOONCAKE_WHEEL_DIR, else dist/)
#
# 1. the base: `debian:bookworm-slim` cannot be pulled here, so a slim bookworm root made by
#    ci/debootstrap.sh --slim is committed under that name (once; MOONCAKE_REBUILD_BASE=1
#    redoes it);
# 2. `buildah bud --isolation=chroot` of the Dockerfile with the wheels of WHEEL_DIR as dist/
#    (chroot isolation: no runtime, no namespaces beyond what a CI sandbox allows; RUN steps
#    share the host's network, which the apt-get of the Dockerfile uses to reach Debian);
# 3. in a container of the image: `mooncake_master --version`, then a master on free loopback
#    ports and a MooncakeDistributedStore client (P2PHANDSHAKE metadata, tcp) that puts 4 MiB
#    and gets them back byte for byte; the script stops the master by its PID.
# Prints the image's size and the build and test times.
#
# buildah keeps its images in $MOONCAKE_BUILDAH_ROOT (default /var/tmp/mooncake-containers)
# with the vfs driver, which needs no overlay or fuse support from the kernel; nothing touches
# the system's /var/lib/containers.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/wheel-tests-common.sh
state=${MOONCAKE_BUILDAH_ROOT:-/var/tmp/mooncake-containers}
image=${MOONCAKE_IMAGE:-libmooncake:test}
base=docker.io/library/debian:bookworm-slim

if ! command -v buildah >/dev/null 2>&1; then
  step "apt-get install buildah"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  timeout 600 apt-get install -y -q --no-install-recommends buildah
fi

# Every buildah call goes through this: our own storage, the vfs driver, bounded.
bh() {
  timeout -k 10 "${BH_TIMEOUT:-600}" buildah --root "$state/storage" --runroot "$state/run" \
    --storage-driver vfs "$@"
}

# What this run creates and must remove: working containers and the build context.
ctx=$(mktemp -d "${TMPDIR:-/tmp}/mooncake-image-ctx.XXXXXX")
containers=()
cleanup() {
  local rc=$? c
  for c in "${containers[@]}"; do BH_TIMEOUT=60 bh rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$ctx"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${MOONCAKE_REBUILD_BASE:-}" ] || ! bh inspect --type image "$base" >/dev/null 2>&1; then
  step "the base image $base from a debootstrap'd slim bookworm"
  bash ci/debootstrap.sh --slim bookworm "$roots/bookworm-slim"
  bh rmi -f "$base" >/dev/null 2>&1 || true
  c=$(bh from --pull=never scratch)
  containers+=("$c")
  mnt=$(bh mount "$c")
  # tar keeps owners, modes, links and device nodes; the stamp file stays behind.
  tar -C "$roots/bookworm-slim" --exclude=./.mooncake-debootstrap -cf - . | tar -C "$mnt" -xpf -
  bh umount "$c" >/dev/null
  # What Docker's debian image sets: a PATH and bash as the command.
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --os linux --arch amd64 "$c"
  bh commit --rm "$c" "$base"
  containers=()
fi

step "buildah bud --isolation=chroot -t $image (context: Dockerfile, .dockerignore, dist/${wheels[*]##*/})"
# A context of its own, so that WHEEL_DIR may be anywhere and nothing else is sent.
mkdir -p "$ctx/dist"
cp Dockerfile .dockerignore "$ctx/"
cp "${wheels[@]}" "$ctx/dist/"
build_start=$(date +%s)
BH_TIMEOUT=1200 bh bud --isolation=chroot --pull=never --layers=false -t "$image" "$ctx"
build_secs=$(( $(date +%s) - build_start ))
# The build's intermediate stage and an older image of the same name are not needed.
bh rmi --prune >/dev/null 2>&1 || true
bh images "$image"
size=$(bh images --format '{{.Size}}' "$image" | head -n1)

step "mooncake_master --version in the image"
c=$(bh from --pull=never "$image")
containers+=("$c")
# The entrypoint as an image runtime would call it: the image's ENTRYPOINT, then --version.
entry=$(bh inspect --format '{{.OCIv1.Config.Entrypoint}}' "$image")
[ "$entry" = '[mooncake_master]' ] || { echo "$0: unexpected entrypoint $entry" >&2; exit 1; }
user=$(bh inspect --format '{{.OCIv1.Config.User}}' "$image")
[ -n "$user" ] && [ "$user" != root ] || { echo "$0: the image runs as root" >&2; exit 1; }
bh run --isolation=chroot "$c" -- mooncake_master --version

step "a master and a store client in the image: put 4 MiB, get them back"
cat >"$ctx/store_check.py" <<'EOF'
# Runs in the image: a master on free loopback ports, a store client, a put and a get.
import os, socket, subprocess, sys, time

from mooncake.store import MooncakeDistributedStore


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"mooncake_master exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"mooncake_master did not listen on {port} within {timeout}s")


rpc, metrics = free_port(), free_port()
master = subprocess.Popen(["mooncake_master", f"--rpc_port={rpc}", f"--metrics_port={metrics}",
                           "--rpc_address=127.0.0.1", "--metrics_host=127.0.0.1"])
try:
    wait_port(rpc, master)
    print(f"master pid {master.pid} on 127.0.0.1:{rpc}", flush=True)
    store = MooncakeDistributedStore()
    rc = store.setup("127.0.0.1", "P2PHANDSHAKE", 64 << 20, 16 << 20, "tcp", "", f"127.0.0.1:{rpc}")
    assert rc == 0, f"setup failed: {rc}"
    data = os.urandom(4 << 20)
    assert store.put("container-check", data) == 0, "put failed"
    got = store.get("container-check")
    assert got == data, f"get returned {len(got)} bytes that differ from the {len(data)} put"
    assert store.close() == 0, "close failed"
    print("store put/get of 4 MiB through the master in the image: bytes match", flush=True)
finally:
    master.terminate()
    try:
        master.wait(timeout=10)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait(timeout=10)
os._exit(0)  # no client thread may keep the interpreter alive
EOF
bh copy --chmod 0644 "$c" "$ctx/store_check.py" /tmp/store_check.py >/dev/null
BH_TIMEOUT=180 bh run --isolation=chroot --env MC_TCP_BIND_ADDRESS=127.0.0.1 "$c" -- python /tmp/store_check.py

step "container test passed: image $image, $size, built in ${build_secs}s"
