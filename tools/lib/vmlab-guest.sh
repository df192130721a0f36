#!/usr/bin/env bash
# Runs inside the tools/vmlab guest (virtme-ng, the host's root file system
# shared read-only over 9p). Not meant to be run on the host.
#
# usage: vmlab-guest.sh RESULTS_DIR REPO_DIR -- CMD...
#
# Prepares what Sluice's tests need and the shared root lacks, runs CMD from a
# directory on the guest's tmpfs, and leaves in RESULTS_DIR (a --rwdir, i.e.
# written through to the host): output.log (CMD's stdout and stderr), status
# (CMD's exit status) and dmesg.txt. The host reads status; without it the
# guest died or hung.
set -uo pipefail

results="$1"
repo="$2"
shift 2
[[ "${1:-}" == "--" ]] && shift

# The host prints what follows this line (and not the boot messages before it).
echo "vmlab-guest: begin"

export PATH="/opt/swift/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
# Everything writable lives on the guest's tmpfs: UNIX sockets cannot be made
# on 9p, and trafgen keeps a file shared by its workers in its working
# directory, which fails on 9p (and on virtme's overlay of /tmp over 9p).
work=/run/sluice-vmlab
mkdir -p "$work/tmp" "$work/home" "$work/cwd"
export TMPDIR="$work/tmp" HOME="$work/home" XDG_CACHE_HOME="$work/home/.cache"
# Tests of tools/vmlab itself skip in here: no VM inside the VM.
export SLUICE_VMLAB_GUEST=1

setup_note() { echo "vmlab-guest: $*"; }

# bpffs, as tools/deps mounts it on the host.
if ! mountpoint -q /sys/fs/bpf; then
    mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf || setup_note "cannot mount bpffs at /sys/fs/bpf"
fi

# virtme-ng puts /etc on an overlay with its upper layer on tmpfs (writes are
# the guest's alone) but bind-mounts a file of its own over /etc/shadow, which
# useradd then cannot replace ("failure while writing changes to /etc/shadow").
# Put that file's contents into the overlay instead of the bind mount.
if mountpoint -q /etc/shadow 2>/dev/null; then
    if cp /etc/shadow "$work/shadow" && umount /etc/shadow && cat "$work/shadow" >/etc/shadow; then
        chown root:shadow /etc/shadow 2>/dev/null || true
        chmod 640 /etc/shadow
    else
        setup_note "cannot make /etc/shadow writable: tests that add users will fail"
    fi
fi

# virtme-ng links /lib/modules/<release> to the unpacked kernel's tree.
[[ -r "/lib/modules/$(uname -r)/modules.dep" ]] \
    || setup_note "no /lib/modules/$(uname -r)/modules.dep: modules (veth, ...) will not load"

# Loopback is up in the guest already; make sure of it (the tests use 127.0.0.1).
ip link set lo up 2>/dev/null || true

setup_note "kernel $(uname -r), $(nproc) CPUs, repository $repo, working directory $work/cwd"
cd "$work/cwd" || exit 1
# Test binaries find the repository from #filePath and their products from
# argv[0]; both are the host's paths, shared as they are.
"$@" 2>&1 | tee "$results/output.log"
status=${PIPESTATUS[0]}

dmesg >"$results/dmesg.txt" 2>&1 || true
echo "$status" >"$results/status"
sync
echo "vmlab-guest: end, status $status"
exit "$status"
