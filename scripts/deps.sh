#!/bin/sh
# Installs the Debian packages edgeproxy builds, tests and runs with, if any is
# missing. Idempotent and quiet when all is there.
set -e
PKGS="build-essential pkg-config libevent-dev libssl-dev libhiredis-dev libcjson-dev
node-llhttp libcmocka-dev libnghttp2-dev redis-server python3 python3-pytest python3-h2 python3-yaml
nghttp2-client curl openssl wrk nftables iproute2 dnsmasq-base netcat-openbsd bind9-dnsutils
chromium libnss3-tools"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
