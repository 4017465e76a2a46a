#!/usr/bin/env bash
# Browser tests drive Debian's chromium package; never a browser download.
set -euo pipefail
CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
# Screenshots show the conversation's emoji (tool steps) only with an emoji font.
FONTS="fonts-noto-color-emoji"
if [ -x "$CHROMIUM" ] && { ! command -v dpkg >/dev/null || dpkg -s $FONTS >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; }; then
  echo "chromium: $("$CHROMIUM" --version 2>/dev/null | head -1)"; exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "chromium: not installed, and installing needs root. Run: sudo apt-get install chromium" >&2
    echo "          (browser tests are skipped outside CI until then)" >&2
    exit 0
  fi
fi
echo "chromium: installing Debian's chromium (and an emoji font) packages (a minute or two)…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium $FONTS >/dev/null
"$CHROMIUM" --version
