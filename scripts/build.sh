#!/usr/bin/env bash
# ansible-galaxy collection build must produce the artifact without a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(awk '/^version:/ {print $2}' galaxy.yml)
out=.tmp/build && rm -rf "$out" && mkdir -p "$out"
ansible-galaxy collection build --output-path "$out" . > "$out/log" 2>&1 || { cat "$out/log"; exit 1; }
if grep -qi 'warning' "$out/log"; then cat "$out/log"; echo "build: warnings above" >&2; exit 1; fi
artifact="$out/hardway-cloud-$version.tar.gz"
[ -f "$artifact" ] || { echo "build: $artifact missing" >&2; exit 1; }
# nothing of the development set-up may end up in the artifact
if tar -tzf "$artifact" | grep -E '^(\.venv|\.tmp|\.git|\.ci|lab|scripts)(/|$)|(^|/)__pycache__/'; then
  echo "build: unwanted files in $artifact (above)" >&2; exit 1
fi
echo "build: $artifact ($(tar -tzf "$artifact" | wc -l) files)"
