#!/usr/bin/env bash
# The aarch64 and riscv64 live tests: cross-build fdclose and the guest fixture as static binaries,
# boot a real kernel of each architecture under qemu, and run integration/vm/guest-test.sh there.
# Needs: qemu-system-arm, qemu-system-misc, opensbi, cpio, the riscv64 cross binutils/libc (see
# .ci/run) and the rustup targets aarch64-unknown-linux-musl, riscv64gc-unknown-linux-gnu.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash integration/vm/fetch-kernels.sh >/dev/null
status=0
for pair in aarch64:aarch64-unknown-linux-musl riscv64:riscv64gc-unknown-linux-gnu; do
  arch=${pair%%:*} target=${pair#*:}
  cargo build --profile vm --target "$target" -p fdclose -p fdclose-guest-fixture --bins
  bin=target/$target/vm
  echo "== $arch guest"
  bash integration/vm/boot.sh "$arch" integration/vm/guest-test.sh \
    "$bin/fdclose" "$bin/guest-fixture" || status=1
done
exit $status
