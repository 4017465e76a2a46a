#!/usr/bin/env bash
# Vendors KaTeX from the npm registry's `katex` package into static/vendor/katex/:
# the ES module (the conversation imports it, so the CSP needs no CDN and no unsafe-eval),
# its stylesheet, its fonts (WOFF2: every browser the conversation supports reads it, and the
# stylesheet lists WOFF2 first, so the WOFF and TTF copies would never be fetched)
# and its LICENSE. Run it to update: scripts/update-katex.sh [VERSION]  (default: latest)
set -euo pipefail

version="${1:-latest}"
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/static/vendor/katex"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "update-katex: npm is needed (apt-get install -y npm)" >&2; exit 1; }
(cd "$work" && npm pack --silent "katex@$version" >/dev/null)
tar -xzf "$work"/katex-*.tgz -C "$work"
pkg="$work/package"
got="$(node -p "require('$pkg/package.json').version" 2>/dev/null || sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$pkg/package.json" | head -1)"

rm -rf "$dest"
mkdir -p "$dest/fonts"
cp "$pkg/dist/katex.mjs" "$dest/katex.mjs"
cp "$pkg/dist/katex.min.css" "$dest/katex.min.css"
cp "$pkg"/dist/fonts/*.woff2 "$dest/fonts/"
cp "$pkg/LICENSE" "$dest/LICENSE"
printf 'katex %s, from the npm registry (npm pack katex@%s), vendored by scripts/update-katex.sh\n' \
  "$got" "$version" > "$dest/VERSION"
echo "update-katex: KaTeX $got in static/vendor/katex/"
