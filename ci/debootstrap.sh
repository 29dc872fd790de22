#!/usr/bin/env bash
# Makes a Debian root file system with debootstrap, once: the stand-ins for container images
# that this sandbox cannot pull (no registry is reachable, Debian's archive is).
#
#   ci/debootstrap.sh [--slim] SUITE DIR [PACKAGE...]
#
# SUITE   a Debian suite (bullseye, bookworm, ...), fetched from $MOONCAKE_DEBIAN_MIRROR
#         (default http://deb.debian.org/debian).
# DIR     where the root goes; it is made as DIR.partial and renamed when complete, and a stamp
#         in it (.mooncake-debootstrap) records the suite, packages and trimming, so a second
#         call with the same arguments returns at once and different arguments rebuild it.
# PACKAGE extra packages, installed by debootstrap itself (--include) so that no apt, proc or
#         dev mounts are needed in the root afterwards.
# --slim  trims the root like Docker's debian:*-slim images: no documentation, man pages or
#         locales (a dpkg filter keeps later apt installs from bringing them back), no apt
#         lists or cached .debs.
#
# Always --variant=minbase (essential + apt, no init system). Needs root; installs debootstrap
# when missing. Prints the time it took.
set -euo pipefail

slim=0
if [ "${1:-}" = "--slim" ]; then slim=1; shift; fi
if [ $# -lt 2 ]; then
  echo "usage: $0 [--slim] SUITE DIR [PACKAGE...]" >&2
  exit 2
fi
suite=$1 dir=${2%/}
shift 2
packages=("$@")
mirror=${MOONCAKE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=$(IFS=,; echo "${packages[*]:-}")
stamp="suite=$suite mirror=$mirror slim=$slim include=$include"

if [ "$(id -u)" != 0 ]; then
  echo "$0: debootstrap needs root" >&2
  exit 1
fi

# Two CI steps may ask for the same root at once: one builds it, the other waits (bounded).
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
if ! flock -w 900 9; then
  echo "$0: $dir.lock is held by another run for 15 minutes; giving up" >&2
  exit 1
fi

if [ -f "$dir/.mooncake-debootstrap" ] && [ "$(cat "$dir/.mooncake-debootstrap")" = "$stamp" ]; then
  echo "$0: $dir is already a $suite root ($stamp)"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "$0: apt-get install debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  timeout 600 apt-get install -y -q --no-install-recommends debootstrap
fi

start=$(date +%s)
partial="$dir.partial"
# A root with other arguments, or a partial one from an interrupted run, is rebuilt from
# scratch; nothing may still be mounted in it (rm would follow into a bind mount).
for d in "$partial" "$dir"; do
  if [ -e "$d" ]; then
    if grep -q " $(realpath "$d")/" /proc/mounts; then
      echo "$0: something is still mounted under $d; unmount it first" >&2
      exit 1
    fi
    rm -rf --one-file-system "$d"
  fi
done

args=(--variant=minbase)
[ -n "$include" ] && args+=("--include=$include")
if [ "$slim" = 1 ]; then
  # Installed before the packages are unpacked, so debootstrap's own --include packages are
  # filtered too; copyright files stay (the licences must ship).
  mkdir -p "$partial/etc/dpkg/dpkg.cfg.d"
  cat >"$partial/etc/dpkg/dpkg.cfg.d/01-mooncake-slim" <<'EOF'
# Written by libmooncake's ci/debootstrap.sh --slim: no docs, man pages or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
fi
echo "$0: debootstrap ${args[*]} $suite $partial $mirror"
# The whole download and install is bounded: a stalled mirror fails the step, not the job.
if ! timeout 1200 debootstrap "${args[@]}" "$suite" "$partial" "$mirror" >"$dir.log" 2>&1; then
  tail -n 30 "$dir.log" >&2
  echo "$0: debootstrap failed (full log: $dir.log)" >&2
  exit 1
fi

# debootstrap's dpkg runs before the filter file is read for the base packages it extracts
# itself, so trim what got through, and what no image needs: downloaded .debs, apt lists.
if [ "$slim" = 1 ]; then
  find "$partial/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$partial/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$partial"/usr/share/man/* "$partial"/usr/share/info/* "$partial"/usr/share/lintian/*
  find "$partial/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  # The slim images also keep apt from downloading translations or keeping .debs.
  cat >"$partial/etc/apt/apt.conf.d/01-mooncake-slim" <<'EOF'
// Written by libmooncake's ci/debootstrap.sh --slim.
Acquire::Languages "none";
APT::Keep-Downloaded-Packages "false";
EOF
fi
rm -rf "$partial"/var/cache/apt/archives/*.deb "$partial"/var/lib/apt/lists/* "$partial"/var/log/* \
  "$partial"/var/cache/debconf/*-old "$partial"/var/lib/dpkg/*-old
# The archive's address for apt in the root (debootstrap writes only the suite itself).
echo "deb $mirror $suite main" >"$partial/etc/apt/sources.list"

echo "$stamp" >"$partial/.mooncake-debootstrap"
mv "$partial" "$dir"
echo "$0: $suite root in $dir: $(du -sh --one-file-system "$dir" | cut -f1), $(( $(date +%s) - start ))s"
