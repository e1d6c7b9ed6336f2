#!/bin/sh
# browser_check.sh BROWSER PNG_CHECK HTML WIDTH HEIGHT: renders an HTML report in headless
# Chromium to a PNG and checks the picture (size, not blank). Exits 77 (CTest: skipped) when no
# browser was found at configure time.
set -eu
browser=$1 png_check=$2 html=$3 width=$4 height=$5
if [ -z "$browser" ] || [ ! -x "$browser" ]; then
  echo "browser_check: no Chromium found (install Debian's chromium): skipped"
  exit 77
fi
[ -f "$html" ] || { echo "browser_check: $html does not exist"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# --no-sandbox: CI runs as root; HOME in the temporary folder keeps the profile out of the tree.
HOME=$out timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$out/profile" --window-size="$width,$height" --screenshot="$out/shot.png" \
  "file://$(cd "$(dirname "$html")" && pwd)/$(basename "$html")" > "$out/log" 2>&1 || { cat "$out/log"; exit 1; }
"$png_check" "$out/shot.png" "$width" "$height"
