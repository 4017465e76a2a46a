#!/usr/bin/env bash
# The deployment test (tests/test_deploy.py) runs deploy/nginx.conf in Debian's nginx.
# Install it where we may (root or passwordless sudo); otherwise say how, and that
# test skips saying so. Only the binary is used: the package's own site is not started.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  echo "nginx: $(/usr/sbin/nginx -v 2>&1)"; exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "nginx: not installed, and installing needs root. Run: sudo apt-get install nginx" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "nginx: not installed; install it with your system's package manager." >&2
  exit 0
fi
echo "nginx: installing Debian's nginx package…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
# Where the package's install started its own site (a machine without policy-rc.d),
# stop it: the tests start nginx themselves, with deploy/nginx.conf.
if pgrep -x nginx >/dev/null 2>&1; then $SUDO /usr/sbin/nginx -s stop 2>/dev/null || true; fi
echo "nginx: $(/usr/sbin/nginx -v 2>&1)"
