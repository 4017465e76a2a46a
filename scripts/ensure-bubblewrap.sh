#!/usr/bin/env bash
# The run_python tool executes code only inside bubblewrap (never outside it), under a
# seccomp filter built with libseccomp (the pyseccomp package loads libseccomp.so.2).
# Install Debian's bubblewrap (0.8 or later: --disable-userns) and libseccomp2 where we
# may (root or passwordless sudo); otherwise say how, and the tool reports itself
# unavailable.
set -euo pipefail
have_libseccomp() { ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2'; }
if command -v bwrap >/dev/null 2>&1 && have_libseccomp; then
  echo "bubblewrap: $(bwrap --version), libseccomp2 present"; exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "bubblewrap: not installed, and installing needs root. Run: sudo apt-get install bubblewrap libseccomp2" >&2
    echo "            (until then the run_python tool says it is unavailable)" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "bubblewrap: not installed; install it with your system's package manager (packages bubblewrap, libseccomp2)." >&2
  exit 0
fi
echo "bubblewrap: installing Debian's bubblewrap and libseccomp2 packages…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bubblewrap libseccomp2 >/dev/null
echo "bubblewrap: $(bwrap --version), libseccomp2 present"
