"""Provide ansible-test's pip bootstrap script from PyPI's pip wheel.

ansible-test bootstraps pip in each virtual environment it makes with a
get-pip script that it downloads from a host outside the package registries and
caches under ~/.ansible/test/cache. This writes that cached script: it runs pip
straight from the wheel of the pip version ansible-test asks for.
"""

import os
import re
import subprocess
import sys

import ansible_test

SCRIPT = '''"""get-pip stand-in: pip %(version)s run from its wheel (written by hardway.cloud's setup)."""
import os
import sys

WHEEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "%(wheel)s")
sys.path.insert(0, WHEEL)
from pip._internal.cli.main import main  # noqa: E402

ARGS = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", "--find-links", os.path.dirname(WHEEL)] + ARGS))
'''


def wanted_pip_version():
    source = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
    with open(source, encoding="utf-8") as src:
        found = re.search(r"pip='([0-9.]+)'", src.read())
    if not found:
        sys.exit("cannot find the pip version ansible-test wants in %s" % source)
    return found.group(1)


def main():
    version = wanted_pip_version()
    cache = os.path.expanduser("~/.ansible/test/cache")
    script = os.path.join(cache, "get_pip_%s.py" % version.replace(".", "_"))
    wheel = "pip-%s-py3-none-any.whl" % version
    if os.path.exists(script) and os.path.exists(os.path.join(cache, wheel)):
        return
    os.makedirs(cache, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", cache, "pip==%s" % version], check=True)
    with open(script + ".tmp", "w", encoding="utf-8") as out:
        out.write(SCRIPT % {"version": version, "wheel": wheel})
    os.rename(script + ".tmp", script)
    print("setup: ansible-test pip %s bootstrap provided offline" % version)


if __name__ == "__main__":
    main()
