#!/usr/bin/env bash
# Boot a real aarch64 or riscv64 kernel under qemu with an initramfs holding busybox, the files
# named, and /guest.sh (run as the guest's test script). Prints the guest console; exits with the
# status the guest script reported (a line "FDCLOSE-GUEST-EXIT <n>"), or 3 when none was seen.
# usage: boot.sh aarch64|riscv64 GUEST_SCRIPT FILE...
set -euo pipefail
arch=$1 script=$2; shift 2
cache=${FDCLOSE_VM_CACHE:-/var/cache/fdclose-vm}
case $arch in
  aarch64) dir=$cache/arm64
    qemu=(qemu-system-aarch64 -M virt -cpu cortex-a57 -m 1024 -smp 2 -append "console=ttyAMA0 panic=-1 quiet") ;;
  riscv64) dir=$cache/riscv64
    qemu=(qemu-system-riscv64 -M virt -m 1024 -smp 2 -bios default -append "console=ttyS0 panic=-1 quiet") ;;
  *) echo "boot.sh: unknown arch $arch (aarch64 or riscv64)" >&2; exit 2 ;;
esac
[ -s "$dir/kernel" ] || { echo "boot.sh: no kernel in $dir: run integration/vm/fetch-kernels.sh" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp,guest}
cp "$dir/busybox" "$root/bin/busybox"
for f in "$@"; do cp "$f" "$root/guest/"; done
cp "$script" "$root/guest.sh"
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/guest
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
ip link set lo up
cd /guest
sh /guest.sh; echo "FDCLOSE-GUEST-EXIT $?"
poweroff -f
INIT
chmod +x "$root/init" "$root/guest.sh"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.gz")

log=$work/console.log
timeout "${FDCLOSE_VM_TIMEOUT:-300}" "${qemu[@]}" -nographic -no-reboot -nic none -kernel "$dir/kernel" \
  -initrd "$work/initrd.gz" </dev/null | tee "$log" || true
status=$(sed -n 's/.*FDCLOSE-GUEST-EXIT \([0-9]*\).*/\1/p' "$log" | tail -n 1)
[ -n "$status" ] || { echo "boot.sh: the $arch guest reported no exit status" >&2; exit 3; }
exit "$status"
