"""The peers of the benchmarks, from the pinned wheels of requirements-bench.txt,
unpacked under the cache (never into the venv, whose ansible-core stays the
one the collection is tested with):

- the `community` collections of the `ansible` package (community.libvirt,
  community.general), as a collections path of their own;
- mitogen, as a directory holding ansible_mitogen (its strategy plugins).
"""

import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "requirements-bench.txt")
COLLECTIONS = ("community/libvirt", "community/general")


def _pins():
    pins = {}
    with open(REQUIREMENTS, encoding="utf-8") as src:
        for line in src:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                pins[name.strip()] = version.strip()
    return pins


def _wheel(cache, name, version):
    wheels = os.path.join(cache, "wheels")
    os.makedirs(wheels, exist_ok=True)
    prefix = "%s-%s-" % (name, version)
    found = [f for f in os.listdir(wheels) if f.startswith(prefix) and f.endswith(".whl")]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "-d", wheels, "%s==%s" % (name, version)], check=True,
                       env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
        found = [f for f in os.listdir(wheels) if f.startswith(prefix) and f.endswith(".whl")]
    return os.path.join(wheels, found[0])


def _unpack(wheel, dest, keep):
    """The members of ``wheel`` under the prefixes ``keep``, into ``dest``
    (once: a finished unpack leaves a stamp)."""
    stamp = os.path.join(dest, ".unpacked")
    if os.path.exists(stamp):
        return dest
    work = dest + ".partial"
    subprocess.run(["rm", "-rf", work], check=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(work, [m for m in archive.namelist() if m.startswith(keep)])
    open(os.path.join(work, ".unpacked"), "w", encoding="utf-8").close()
    subprocess.run(["rm", "-rf", dest], check=True)
    os.rename(work, dest)
    return dest


def ensure(cache):
    """{"collections": a path for ANSIBLE_COLLECTIONS_PATH holding the
    community collections, "mitogen": the ansible_mitogen strategy plugin
    directory, "versions": {package: version}}."""
    pins = _pins()
    peers = os.path.join(cache, "peers")
    ansible = _unpack(_wheel(cache, "ansible", pins["ansible"]),
                      os.path.join(peers, "ansible-" + pins["ansible"]),
                      tuple("ansible_collections/%s/" % c for c in COLLECTIONS))
    mitogen = _unpack(_wheel(cache, "mitogen", pins["mitogen"]),
                      os.path.join(peers, "mitogen-" + pins["mitogen"]), ("ansible_mitogen/", "mitogen/"))
    return {"collections": ansible, "mitogen": os.path.join(mitogen, "ansible_mitogen", "plugins", "strategy"),
            "mitogen_path": mitogen, "versions": pins}


if __name__ == "__main__":
    print(ensure(os.environ.get("HARDWAY_CACHE", "/var/cache/hardway-cloud")))
