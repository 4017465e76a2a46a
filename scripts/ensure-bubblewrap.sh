#!/usr/bin/env bash
# The run_python tool executes code only inside bubblewrap (never outside it).
# Install Debian's bubblewrap where we may (root or passwordless sudo); otherwise say
# how, and the tool reports itself unavailable.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then echo "bubblewrap: $(bwrap --version)"; exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "bubblewrap: not installed, and installing needs root. Run: sudo apt-get install bubblewrap" >&2
    echo "            (until then the run_python tool says it is unavailable)" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "bubblewrap: not installed; install it with your system's package manager (package bubblewrap)." >&2
  exit 0
fi
echo "bubblewrap: installing Debian's bubblewrap package…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bubblewrap >/dev/null
echo "bubblewrap: $(bwrap --version)"
