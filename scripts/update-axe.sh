#!/usr/bin/env bash
# Vendors axe-core (the npm registry's `axe-core` package) into tests/vendor/ for the
# accessibility browser test (tests/test_accessibility_browser.py), which injects it with
# Playwright's add_script_tag: it is never served to users. Its license (MPL-2.0) beside it.
# Run it to update: scripts/update-axe.sh [VERSION]  (default: latest)
set -euo pipefail

version="${1:-latest}"
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/tests/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "update-axe: npm is needed (apt-get install -y npm)" >&2; exit 1; }
(cd "$work" && npm pack --silent "axe-core@$version" >/dev/null)
tar -xzf "$work"/axe-core-*.tgz -C "$work"
pkg="$work/package"
got="$(node -p "require('$pkg/package.json').version")"

mkdir -p "$dest"
cp "$pkg/axe.min.js" "$dest/axe.min.js"
cp "$pkg/LICENSE" "$dest/axe.LICENSE"
printf 'axe-core %s, from the npm registry (npm pack axe-core@%s), vendored by scripts/update-axe.sh\n' \
  "$got" "$version" > "$dest/axe.VERSION"
echo "update-axe: axe-core $got in tests/vendor/"
