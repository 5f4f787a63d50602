#!/usr/bin/env bash
# Builds a Debian package of rtmpd with plain dpkg-deb (no cargo-deb to install):
#
#   /usr/bin/rtmpd                            the release binary (debug info stripped)
#   /usr/lib/systemd/system/rtmpd.service     scripts/rtmpd.service
#   /etc/rtmpd/rtmpd.toml                     scripts/rtmpd.example.toml (a conffile)
#   /usr/share/doc/rtmpd/README.md, copyright
#
# The package creates nothing when it is installed: the service runs as a user that
# exists only while it runs (DynamicUser=yes), and systemd creates its state
# directory /var/lib/rtmpd when it first starts. Installing does not start the
# server (`systemctl enable --now rtmpd` does); an upgrade restarts it if it runs;
# removing stops and disables it; purging removes the configuration and the state
# directory if it is empty (recordings are kept).
#
# Usage: scripts/package.sh [--binary PATH] [--out DIR]
#   --binary PATH  package this rtmpd instead of building the release binary
#                  (`cargo build --release`, a no-op when it is up to date)
#   --out DIR      where the .deb goes (default target/debian)
# Prints the path of the .deb on stdout.
set -euo pipefail
umask 022

cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=${CARGO_TARGET_DIR:-target}
binary=
out=$target/debian
while (($# > 0)); do
    case $1 in
    --binary) binary=$2 && shift 2 ;;
    --out) out=$2 && shift 2 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "package.sh: unknown argument '$1'; try --help" >&2
        exit 2
        ;;
    esac
done
for tool in dpkg-deb dpkg; do
    command -v "$tool" >/dev/null || {
        echo "package.sh: $tool not found (Debian's dpkg package)" >&2
        exit 1
    }
done
if [[ -z $binary ]]; then
    cargo build --release --locked --bin rtmpd >&2
    binary=$target/release/rtmpd
fi
[[ -x $binary ]] || {
    echo "package.sh: $binary is not an executable" >&2
    exit 1
}

# The [package] version: the first `version =` line of Cargo.toml.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
stage=$out/rtmpd_${version}_$arch
deb=$stage.deb
rm -rf "$stage" "$deb"
mkdir -p "$stage/DEBIAN"

install -D -m 0755 "$binary" "$stage/usr/bin/rtmpd"
# Debian ships binaries without debug info; function names stay for backtraces.
if command -v strip >/dev/null; then
    strip --strip-debug "$stage/usr/bin/rtmpd"
fi
install -D -m 0644 scripts/rtmpd.service "$stage/usr/lib/systemd/system/rtmpd.service"
install -D -m 0644 scripts/rtmpd.example.toml "$stage/etc/rtmpd/rtmpd.toml"
install -D -m 0644 README.md "$stage/usr/share/doc/rtmpd/README.md"
cat >"$stage/usr/share/doc/rtmpd/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rtmpd

Files: *
License: MIT or Apache-2.0
 rtmpd is licensed under either of the MIT license or the Apache License,
 Version 2.0, at your option. On Debian systems the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$stage/usr/share/doc/rtmpd/copyright"

# The C library the binary links, at the newest symbol version it uses.
depends="libc6, libgcc-s1"
if command -v objdump >/dev/null; then
    glibc=$(objdump -T "$stage/usr/bin/rtmpd" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' |
        sort -u -V | tail -n 1)
    [[ -z $glibc ]] || depends="libc6 (>= $glibc), libgcc-s1"
fi
# procps: the unit's ExecReload runs kill.
depends="$depends, procps"
installed_size=$(du -s -k --exclude=DEBIAN "$stage" | cut -f 1)

cat >"$stage/DEBIAN/control" <<EOF
Package: rtmpd
Version: $version
Architecture: $arch
Maintainer: rtmpd developers <rtmpd@localhost>
Installed-Size: $installed_size
Depends: $depends
Section: net
Priority: optional
Description: small, fast live-streaming server (RTMP, HTTP-FLV, WebSocket-FLV)
 rtmpd takes live streams published over RTMP (ffmpeg, OBS) and serves them to
 players over RTMP, HTTP-FLV and WebSocket-FLV with low delay, with a JSON API
 and Prometheus metrics. It runs as a hardened systemd service:
 "systemctl enable --now rtmpd" serves on ports 1935 (RTMP) and 8080 (HTTP).
EOF
echo /etc/rtmpd/rtmpd.toml >"$stage/DEBIAN/conffiles"

# Maintainer scripts act on the running system only: not when dpkg installs into
# another root (DPKG_ROOT) or systemd is not running (a chroot, a container build).
cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Creates nothing: the service's user exists only while it runs (DynamicUser=yes)
# and systemd makes /var/lib/rtmpd when the service first starts.
set -e
if [ "$1" = configure ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # An upgrade ($2 is the old version) moves a running server to the new
    # binary, with a graceful stop; a first install waits for
    # `systemctl enable --now rtmpd`.
    if [ -n "${2:-}" ]; then
        systemctl try-restart rtmpd.service || true
    fi
fi
exit 0
EOF
cat >"$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# Removal stops the server and disables it; an upgrade leaves it running until
# the new package's postinst restarts it.
set -e
if [ "$1" = remove ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now rtmpd.service || true
fi
exit 0
EOF
cat >"$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# Purge takes what systemd made for the service, unless it holds recordings.
set -e
root=${DPKG_ROOT:-}
if [ "$1" = purge ]; then
    # Enabled while systemd was not running to disable it at removal.
    wants=$root/etc/systemd/system/multi-user.target.wants/rtmpd.service
    if [ -L "$wants" ]; then
        rm -f "$wants"
    fi
    # StateDirectory= with DynamicUser=: /var/lib/rtmpd -> private/rtmpd.
    state=$root/var/lib/private/rtmpd
    if [ -d "$state" ] && ! rmdir "$state" 2>/dev/null; then
        echo "rtmpd: keeping $state (recordings); remove it by hand if unwanted" >&2
    elif [ -L "$root/var/lib/rtmpd" ]; then
        rm -f "$root/var/lib/rtmpd"
    fi
fi
if [ "$1" = remove ] && [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' |
    sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/md5sums"

dpkg-deb --root-owner-group --build "$stage" "$deb" >&2
rm -rf "$stage"
echo "$deb"
