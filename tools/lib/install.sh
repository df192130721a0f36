# shellcheck shell=bash
# What tools/install and tools/uninstall share: the layout under
# DESTDIR/PREFIX and the manifest. Sourced, never run.

# The SLUICE_* paths are read by the scripts that source this file.
# shellcheck disable=SC2034
sluice_layout() {
    SLUICE_BINDIR="$SLUICE_PREFIX/bin"
    SLUICE_PLUGINDIR="$SLUICE_PREFIX/lib/sluice/plugins"
    SLUICE_INCLUDEDIR="$SLUICE_PREFIX/include/sluice"
    # The manifest lists what install added, so that uninstall removes exactly that.
    SLUICE_MANIFEST="$SLUICE_PREFIX/lib/sluice/install-manifest"
    # The config and the unit go where the system looks for them, whatever the prefix.
    SLUICE_CONFIG=/etc/sluice/sluice.toml
    SLUICE_UNITDIR=/lib/systemd/system
    SLUICE_STATEDIR=/var/lib/sluice
}

# Checks --prefix (absolute; characters safe in sed, TOML and unit files) and
# --destdir (made absolute; "" = the live system).
sluice_check_locations() {
    if [[ ! "$SLUICE_PREFIX" =~ ^/[A-Za-z0-9._+/-]*$ || "$SLUICE_PREFIX" == *//* ]]; then
        sluice_error "--prefix '$SLUICE_PREFIX' must be an absolute path of letters, digits and ._+-/"
        return 1
    fi
    # "/" becomes "": the layout appends "/bin" and friends.
    SLUICE_PREFIX="${SLUICE_PREFIX%/}"
    if [[ -n "$SLUICE_DESTDIR" ]]; then
        if [[ ! -d "$SLUICE_DESTDIR" ]]; then
            sluice_error "--destdir '$SLUICE_DESTDIR' is not a directory"
            return 1
        fi
        SLUICE_DESTDIR="$(cd "$SLUICE_DESTDIR" && pwd -P)"
        [[ "$SLUICE_DESTDIR" != / ]] || SLUICE_DESTDIR=""
    fi
}

# True when this run installs into the live system: systemctl and groups apply.
sluice_live_system() { [[ -z "$SLUICE_DESTDIR" ]]; }

# True when PID 1 is systemd (not in containers and on this build machine).
sluice_systemd_running() { [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }
