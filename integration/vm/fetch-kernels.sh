#!/usr/bin/env bash
# Download an aarch64 and a riscv64 Linux kernel plus a static busybox for each, from Debian, into
# $FDCLOSE_VM_CACHE (default /var/cache/fdclose-vm). Idempotent. Uses a private apt state so the
# machine's own sources and architectures are left alone.
# aarch64 comes from bookworm; riscv64 kernels are only in trixie (KERNEL-NOTES.md).
set -euo pipefail
cache=${FDCLOSE_VM_CACHE:-/var/cache/fdclose-vm}
mkdir -p "$cache"

fetch() { # fetch ARCH SUITE KERNEL-REGEX
  local arch=$1 suite=$2 pattern=$3 dir="$cache/$1"
  if [ -s "$dir/kernel" ] && [ -x "$dir/busybox" ]; then return; fi
  mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/deb"
  cat >"$dir/apt/sources.list" <<SRC
deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main
SRC
  local opts=(-o "APT::Architecture=$arch" -o "APT::Architectures=$arch"
    -o "Dir::Etc::SourceList=$dir/apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache"
    -o "Dir::State::status=/dev/null" -o "Debug::NoLocking=1")
  apt-get "${opts[@]}" update -qq
  # The newest kernel image of the flavour, looked up rather than hard-coded (names move).
  local pkg
  pkg=$(apt-cache "${opts[@]}" search --names-only "$pattern" | awk '{print $1}' | sort -V | tail -n 1)
  [ -n "$pkg" ] || { echo "fetch-kernels: no package matches $pattern for $arch" >&2; exit 1; }
  chmod 777 "$dir/deb"
  (cd "$dir/deb" && apt-get "${opts[@]}" download "$pkg" busybox-static >/dev/null)
  rm -rf "$dir/x" && mkdir -p "$dir/x"
  for d in "$dir"/deb/*.deb; do dpkg-deb -x "$d" "$dir/x"; done
  cp "$(ls "$dir"/x/boot/vmlinu[xz]-* | head -n 1)" "$dir/kernel"
  cp "$(ls "$dir"/x/bin/busybox "$dir"/x/usr/bin/busybox 2>/dev/null | head -n 1)" "$dir/busybox"
  echo "$pkg" >"$dir/kernel.pkg"
  rm -rf "$dir/x" "$dir/deb"
}

fetch arm64 bookworm '^linux-image-[0-9.]+-[0-9]+-cloud-arm64-unsigned$'
fetch riscv64 trixie '^linux-image-[0-9][^ ]*-riscv64$'
ls -la "$cache"/*/kernel "$cache"/*/busybox
cat "$cache"/*/kernel.pkg
