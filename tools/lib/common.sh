# shellcheck shell=bash
# Helpers shared by the tools/ scripts. Sourced, never run. Functions return
# non-zero instead of exiting so that sourcing scripts keep control.

# Where a Swift toolchain is looked for when `swift` is not on PATH: the
# swift.org tarball convention first, then swiftly's default.
SLUICE_SWIFT_CANDIDATES=(/opt/swift/usr/bin /usr/share/swift/usr/bin "${HOME:-/root}/.local/share/swiftly/bin")
SLUICE_SWIFT_MIN_MAJOR=6
SLUICE_SWIFT_MIN_MINOR=1

sluice_log() { printf '%s: %s\n' "${SLUICE_TOOL:-sluice}" "$*" >&2; }
sluice_error() { printf '%s: error: %s\n' "${SLUICE_TOOL:-sluice}" "$*" >&2; }

# Runs a command as root: directly when we are root, through sudo otherwise.
sluice_as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        sluice_error "'$*' needs root and sudo is not installed; run this script as root"
        return 1
    fi
}

# Fails with a message naming the missing program and the Debian package that has it.
sluice_require_program() {
    local program="$1" package="$2"
    if ! command -v "$program" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$program" && ! -x "/sbin/$program" ]]; then
        sluice_error "'$program' not found; install the Debian package '$package' (tools/deps installs everything)"
        return 1
    fi
}

# AF_XDP programs and maps are pinned under /sys/fs/bpf; libbpf wants bpffs there.
sluice_ensure_bpffs() {
    if mountpoint -q /sys/fs/bpf 2>/dev/null; then
        return 0
    fi
    sluice_as_root mkdir -p /sys/fs/bpf || return 1
    if ! sluice_as_root mount -t bpf bpf /sys/fs/bpf; then
        sluice_error "cannot mount bpffs at /sys/fs/bpf (needs root and a kernel with CONFIG_BPF_SYSCALL)"
        return 1
    fi
    sluice_log "mounted bpffs at /sys/fs/bpf"
}

# Makes sure a Swift 6.1+ toolchain is on PATH, adding a known install location
# to PATH (exported) when swift is installed but not on PATH.
sluice_ensure_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        local dir
        for dir in "${SLUICE_SWIFT_CANDIDATES[@]}"; do
            if [[ -x "$dir/swift" ]]; then
                export PATH="$dir:$PATH"
                sluice_log "swift was not on PATH; using $dir/swift"
                break
            fi
        done
    fi
    if ! command -v swift >/dev/null 2>&1; then
        sluice_error "no Swift toolchain: Sluice needs Swift ${SLUICE_SWIFT_MIN_MAJOR}.${SLUICE_SWIFT_MIN_MINOR} or later for Debian 12 (swift.org), unpacked so that /opt/swift/usr/bin/swift exists or with its usr/bin on PATH"
        return 1
    fi
    local version major minor
    version="$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' | head -n 1)"
    read -r major minor <<<"$version"
    if [[ -z "${major:-}" || -z "${minor:-}" ]]; then
        sluice_error "cannot tell the version of $(command -v swift) ('swift --version' printed no 'Swift version X.Y')"
        return 1
    fi
    if (( major < SLUICE_SWIFT_MIN_MAJOR || (major == SLUICE_SWIFT_MIN_MAJOR && minor < SLUICE_SWIFT_MIN_MINOR) )); then
        sluice_error "$(command -v swift) is Swift $major.$minor; Sluice needs ${SLUICE_SWIFT_MIN_MAJOR}.${SLUICE_SWIFT_MIN_MINOR} or later"
        return 1
    fi
}
