#!/usr/bin/env bash
# Every molecule scenario (full test sequence); fails if any scenario fails.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
failed=()
for scenario in extensions/molecule/*/molecule.yml; do
  name=$(basename "$(dirname "$scenario")")
  echo "== molecule scenario $name"
  molecule test -s "$name" || failed+=("$name")
done
if [ ${#failed[@]} -gt 0 ]; then echo "molecule: failed scenarios: ${failed[*]}" >&2; exit 1; fi
echo "molecule: all scenarios passed"
