#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection's files (tracked and new,
# not ignored) at ansible_collections/hardway/cloud, offline but for PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tmp/sanity/ansible_collections/hardway/cloud
rm -rf .tmp/sanity && mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' \
  | tar --null -T - -cf - | tar -xf - -C "$dest"
cd "$dest"
# its own git index: ansible-test lists files with git, and the enclosing
# checkout ignores .tmp
git init -q . && git add -A
exec ansible-test sanity --venv --python 3.11 --color no "$@"
