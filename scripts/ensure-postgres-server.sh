#!/usr/bin/env bash
# The cluster's fault tests (tests/test_cluster.py) give their data host a PostgreSQL
# of its own (initdb in a temporary folder), and network namespaces need `ip`.
# Install Debian's server binaries where we may (root or passwordless sudo), without
# starting the package's own cluster: the machine's port 5432 is left as it was.
set -euo pipefail
found() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && command -v ip >/dev/null; }
if found; then
  echo "postgresql server: $(ls -d /usr/lib/postgresql/*/bin/initdb | tail -1)"; exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "postgresql server: not installed, and installing needs root." \
      "Run: sudo apt-get install postgresql iproute2 (the cluster tests skip until then)" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "postgresql server: not installed; install PostgreSQL's server and iproute2." >&2
  exit 0
fi
echo "postgresql server: installing Debian's postgresql and iproute2 packages (not started)…"
# policy-rc.d 101 keeps the package from starting a cluster of its own on port 5432.
had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
if [ "$had_policy" = 0 ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
fi
trap 'if [ "$had_policy" = 0 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi' EXIT
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql iproute2 >/dev/null
echo "postgresql server: $(ls -d /usr/lib/postgresql/*/bin/initdb | tail -1)"
