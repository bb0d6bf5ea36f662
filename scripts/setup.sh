#!/usr/bin/env bash
# Install everything the lab and the tests need on this machine: the Debian
# packages of bindep.txt (untagged and [lab] lines), the controller venv and its
# pinned Python packages, and the collection's place on the collections path.
# Idempotent and quick when nothing changed (stamp files).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${HARDWAY_CACHE:-/var/cache/hardway-cloud}
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$CACHE/pip} PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$CACHE" .tmp

# Debian packages named in bindep.txt for the dpkg platform and the wanted profiles
packages() {
  awk '
    /^[[:space:]]*(#|$)/ { next }
    {
      name = $1; tags = ""
      if (match($0, /\[[^]]*\]/)) tags = substr($0, RSTART + 1, RLENGTH - 2)
      n = split(tags, t, " "); plat = 0; prof = 0; want = 1
      for (i = 1; i <= n; i++) {
        if (t[i] ~ /^platform:/) { if (t[i] == "platform:dpkg") plat = 1; else if (!plat) plat = -1 }
        else { prof = 1; if (t[i] == "lab") want = 2 }
      }
      if (plat >= 0 && (!prof || want == 2)) print name
    }' bindep.txt
}
missing=()
for pkg in $(packages); do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "setup: need root to install: ${missing[*]}" >&2; exit 1; fi
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# the venv sees Debian's dist-packages: rados, rbd and libvirt bindings come from there
stamp=.venv/.hardway-setup
want=$(cat requirements.txt requirements-dev.txt constraints.txt | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv"
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
  .venv/bin/pip install -q -r requirements-dev.txt -c constraints.txt 2> >(grep -v 'is neither a file nor a directory' >&2)
  echo "$want" > "$stamp"
fi

# the collection is found as hardway.cloud through a link in .tmp (kept out of
# the build and the linters)
mkdir -p .tmp/collections/ansible_collections/hardway
ln -sfn ../../../.. .tmp/collections/ansible_collections/hardway/cloud

# ansible-test fetches a pip bootstrap script from a host outside the package
# registries; provide it from PyPI's own pip wheel instead
.venv/bin/python scripts/ansible_test_pip_bootstrap.py
