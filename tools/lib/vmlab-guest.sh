#!/usr/bin/env bash
# Runs inside the tools/vmlab guest (virtme-ng, the host's root file system
# shared read-only over 9p). Not meant to be run on the host.
#
# usage: vmlab-guest.sh RESULTS_DIR REPO_DIR [--hang-report-at EPOCH] [--virtio DUT_MAC,PEER_MAC] -- CMD...
#
# Prepares what Sluice's tests need and the shared root lacks, runs CMD from a
# directory on the guest's tmpfs, and leaves in RESULTS_DIR (a --rwdir, i.e.
# written through to the host): output.log (CMD's stdout and stderr), status
# (CMD's exit status) and dmesg.txt. The host reads status; without it the
# guest died or hung. With --virtio, exports the names of the virtio-net NICs
# with those MACs as SLUICE_TEST_VIRTIO_NIC (the device under test) and
# SLUICE_TEST_VIRTIO_PEER (its peer, whose traffic reaches it). With
# --hang-report-at EPOCH, a CMD still running at that time (seconds since
# 1970, shortly before the host's timeout) leaves hang.txt in RESULTS_DIR:
# every process with its state and kernel wait channel; the kernel's stacks
# of blocked tasks go to dmesg.txt.
set -uo pipefail

results="$1"
repo="$2"
shift 2
virtio_macs="" hang_report=""
if [[ "${1:-}" == "--hang-report-at" ]]; then hang_report="$2"; shift 2; fi
if [[ "${1:-}" == "--virtio" ]]; then virtio_macs="$2"; shift 2; fi
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

# The virtio-net NICs, found by MAC (without udev, nothing loads their driver).
interface_with_mac() {
    local address
    for address in /sys/class/net/*/address; do
        if [[ "$(<"$address")" == "$1" ]]; then basename "$(dirname "$address")"; return 0; fi
    done
    return 1
}
if [[ -n "$virtio_macs" ]]; then
    modprobe virtio_net 2>/dev/null || true
    dut_mac="${virtio_macs%,*}" peer_mac="${virtio_macs#*,}"
    for _ in $(seq 50); do
        interface_with_mac "$dut_mac" >/dev/null && interface_with_mac "$peer_mac" >/dev/null && break
        sleep 0.1
    done
    if dut="$(interface_with_mac "$dut_mac")" && peer="$(interface_with_mac "$peer_mac")"; then
        export SLUICE_TEST_VIRTIO_NIC="$dut" SLUICE_TEST_VIRTIO_PEER="$peer"
        setup_note "virtio-net: device under test $dut ($dut_mac), peer $peer ($peer_mac)"
    else
        setup_note "virtio-net NICs with MACs $dut_mac and $peer_mac not found: tests that need them will fail"
    fi
fi

# Loopback is up in the guest already; make sure of it (the tests use 127.0.0.1).
ip link set lo up 2>/dev/null || true

setup_note "kernel $(uname -r), $(nproc) CPUs, repository $repo, working directory $work/cwd"
cd "$work/cwd" || exit 1
if [[ -n "$hang_report" ]]; then
    (
        # The guest's clock comes from the host's at boot.
        delay=$((hang_report - $(date +%s)))
        sleep "$(( delay > 1 ? delay : 1 ))"
        echo "vmlab-guest: still running near the timeout: processes in $results/hang.txt, blocked tasks' stacks in dmesg.txt"
        ps -eo pid,ppid,stat,wchan:32,etime,args >"$results/hang.txt" 2>&1
        echo w >/proc/sysrq-trigger 2>/dev/null
        dmesg >"$results/dmesg.txt" 2>&1
        sync
    ) &
    hang_watch=$!
fi
# Test binaries find the repository from #filePath and their products from
# argv[0]; both are the host's paths, shared as they are.
"$@" 2>&1 | tee "$results/output.log"
status=${PIPESTATUS[0]}
[[ -n "${hang_watch:-}" ]] && kill "$hang_watch" 2>/dev/null

dmesg >"$results/dmesg.txt" 2>&1 || true
echo "$status" >"$results/status"
sync
echo "vmlab-guest: end, status $status"
exit "$status"
