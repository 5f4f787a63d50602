#!/usr/bin/env bash
# Runs the whole test suite. The integration tests drive real clients against the
# server (ffmpeg, ffprobe, rtmpdump, curl, VLC, GStreamer, nginx-rtmp, headless
# Chromium with hls.js from npm, and the static ffmpeg 9 from PyPI's imageio-ffmpeg
# for the Enhanced RTMP codecs), so install whatever is missing
# first (Debian/Ubuntu); with everything present this only checks. Extra arguments
# are passed on to `cargo test`.
#
# Environment: RTMPD_TEST_SKIP_FFMPEG9=1 skips (visibly) the ffmpeg 9 checks instead
# of installing it; RTMPD_TEST_FFMPEG9=PATH uses that ffmpeg 9; RTMPD_TEST_NO_IPV6=1
# skips the IPv6 checks (set here, and said, when the machine has no ::1).
# RTMPD_TEST_SKIP_HLSJS=1 skips (visibly) the hls.js latency test;
# RTMPD_TEST_HLSJS=PATH uses that hls.min.js.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

apt_install() {
    echo "test.sh: installing $*" >&2
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "test.sh: not root and sudo is not available; install $*" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    if [[ -z ${apt_updated-} ]]; then
        ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update
        apt_updated=1
    fi
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "$@"
}

# Each client the tests run, and the Debian packages that provide it.
packages=()
command -v ffmpeg >/dev/null 2>&1 || packages+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || packages+=(ffmpeg)
command -v rtmpdump >/dev/null 2>&1 || packages+=(rtmpdump)
command -v curl >/dev/null 2>&1 || packages+=(curl)
# The keepalive test puts a player in a network namespace of its own (ip, ss) and
# drops its packets (nft, or iptables where that is what the machine has); the
# listener tests read each listener's backlog with ss.
command -v ip >/dev/null 2>&1 || packages+=(iproute2)
command -v ss >/dev/null 2>&1 || packages+=(iproute2)
command -v nft >/dev/null 2>&1 || command -v iptables >/dev/null 2>&1 || packages+=(nftables)
# The web page and native HLS playback are tested in headless Chromium; a font so
# its screenshot shows text.
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
fc-list 2>/dev/null | grep -q . || packages+=(fonts-dejavu-core)
# npm installs hls.js (below) for the Low-Latency HLS latency test.
if [[ -z ${RTMPD_TEST_SKIP_HLSJS-} ]]; then
    command -v npm >/dev/null 2>&1 || packages+=(npm)
fi
command -v cvlc >/dev/null 2>&1 || packages+=(vlc-bin)
# VLC reads RTMP through its avformat plugin.
compgen -G '/usr/lib/*/vlc/plugins/demux/libavformat_plugin.so' >/dev/null ||
    packages+=(vlc-plugin-base)
command -v gst-launch-1.0 >/dev/null 2>&1 || packages+=(gstreamer1.0-tools)
# systemd-analyze verifies the unit; dpkg-deb builds and reads the .deb (dpkg is on
# every Debian; strip and objdump come with the C toolchain cargo links with).
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || packages+=(dpkg)
# rtmpsrc and h264parse are in -bad, flvdemux and aacparse in -good, playbin (the
# README's example) in -base.
if command -v gst-inspect-1.0 >/dev/null 2>&1; then
    for element in rtmpsrc:bad h264parse:bad flvdemux:good aacparse:good playbin:base; do
        gst-inspect-1.0 --exists "${element%%:*}" ||
            packages+=("gstreamer1.0-plugins-${element##*:}")
    done
else
    packages+=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
fi
# nginx-rtmp, the reference peer of the relay tests (pushes, pulls, its own
# push and pull directives against rtmpd).
command -v nginx >/dev/null 2>&1 || packages+=(nginx)
compgen -G '/usr/*/nginx/modules/ngx_rtmp_module.so' >/dev/null ||
    packages+=(libnginx-mod-rtmp)
if ((${#packages[@]} > 0)); then
    # shellcheck disable=SC2046 # package names have no spaces
    apt_install $(printf '%s\n' "${packages[@]}" | sort -u)
fi

# VLC refuses to run as root: the tests run it as this unprivileged user.
if [[ $(id -u) -eq 0 ]] && ! id rtmpd-test >/dev/null 2>&1; then
    echo "test.sh: creating user rtmpd-test to run VLC" >&2
    useradd --system --no-create-home --shell /usr/sbin/nologin rtmpd-test
fi

# ffmpeg 9 (static, no ffprobe) from PyPI, for the Enhanced RTMP codecs that Debian's
# ffmpeg can neither publish nor read. Kept in a venv under target/.
find_ffmpeg9='import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())'
if [[ -z ${RTMPD_TEST_FFMPEG9-} && -z ${RTMPD_TEST_SKIP_FFMPEG9-} ]]; then
    venv=${CARGO_TARGET_DIR:-target}/test-tools/venv
    if ffmpeg9=$(python3 -c "$find_ffmpeg9" 2>/dev/null); then
        :
    elif ffmpeg9=$("$venv/bin/python" -c "$find_ffmpeg9" 2>/dev/null); then
        :
    else
        python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3 python3-venv
        echo "test.sh: pip install imageio-ffmpeg (into $venv)" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'imageio-ffmpeg>=0.8.1'
        ffmpeg9=$("$venv/bin/python" -c "$find_ffmpeg9")
    fi
    export RTMPD_TEST_FFMPEG9=$ffmpeg9
fi
# The IPv6 listener tests need the IPv6 loopback (::1), which some sandboxes lack:
# there they are skipped, and said to be, instead of failing.
if [[ -z ${RTMPD_TEST_NO_IPV6-} ]] && ! grep -qs '^0\{31\}1 .* lo$' /proc/net/if_inet6; then
    echo "test.sh: no IPv6 loopback (::1) on this machine: the IPv6 listener tests will be skipped" >&2
    export RTMPD_TEST_NO_IPV6=1
fi
if [[ -n ${RTMPD_TEST_SKIP_FFMPEG9-} ]]; then
    echo "test.sh: RTMPD_TEST_SKIP_FFMPEG9 is set: without ffmpeg 9 the Enhanced RTMP codec checks are skipped" >&2
fi

# hls.js (Apache-2.0), test-only: it implements Low-Latency HLS in the browser test.
# From npm into target/, never committed.
hlsjs=${CARGO_TARGET_DIR:-target}/test-tools/hlsjs
if [[ -z ${RTMPD_TEST_SKIP_HLSJS-} && ! -f $hlsjs/node_modules/hls.js/dist/hls.min.js ]]; then
    echo "test.sh: npm install hls.js (into $hlsjs)" >&2
    mkdir -p "$hlsjs"
    (cd "$hlsjs" && npm install --no-save --no-audit --no-fund --loglevel=error hls.js@1.7.4)
fi

cargo test --all-targets "$@"
