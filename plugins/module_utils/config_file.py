# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One way to change a configuration file: under a lock, render the whole new
content, validate it as a temporary file next to the live one, and only then
rename it into place (atomic). The previous content is kept so a caller whose
reload fails can roll back."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import hashlib
import os
import tempfile

from ansible_collections.hardway.cloud.plugins.module_utils.base import ModuleError

LOCK_DIR = "/run/lock"


def _lock_path(path):
    digest = hashlib.sha256(os.path.abspath(path).encode("utf-8")).hexdigest()[:16]
    directory = LOCK_DIR if os.path.isdir(LOCK_DIR) else tempfile.gettempdir()
    return os.path.join(directory, "hardway.cloud-%s.lock" % digest)


class ConfigFile(object):
    """A configuration file owned (wholly or in parts) by a module.

    ``validate`` is an argv list in which ``%s`` stands for the candidate
    file; ``run_command`` is ``AnsibleModule.run_command``."""

    def __init__(self, path, run_command=None, validate=None, mode=0o644):
        self.path = path
        self.run_command = run_command
        self.validate = validate
        self.mode = mode
        self._previous = None
        self._written = False

    def read(self):
        """The current content, or None when the file does not exist."""
        try:
            with open(self.path, "r") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ModuleError("cannot read %s: %s" % (self.path, exc))

    @contextlib.contextmanager
    def locked(self):
        """Serialise read-modify-write cycles of concurrent runs on one file."""
        with open(_lock_path(self.path), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check(self, content):
        """Validate ``content`` without touching the live file."""
        candidate = self._candidate(content)
        try:
            self._validate(candidate)
        finally:
            _unlink(candidate)

    def write(self, content):
        """Validate and atomically replace; returns True when the content changed."""
        current = self.read()
        if current == content:
            return False
        candidate = self._candidate(content)
        try:
            self._validate(candidate)
            os.rename(candidate, self.path)
        except OSError as exc:
            _unlink(candidate)
            raise ModuleError("cannot replace %s: %s" % (self.path, exc))
        except Exception:
            _unlink(candidate)
            raise
        self._previous, self._written = current, True
        return True

    def remove(self):
        """Remove the file; returns True when it existed."""
        current = self.read()
        if current is None:
            return False
        try:
            os.unlink(self.path)
        except OSError as exc:
            raise ModuleError("cannot remove %s: %s" % (self.path, exc))
        self._previous, self._written = current, True
        return True

    def rollback(self):
        """Put back what was there before the last write or remove."""
        if not self._written:
            return
        if self._previous is None:
            _unlink(self.path)
        else:
            candidate = self._candidate(self._previous)
            os.rename(candidate, self.path)
        self._written = False

    def _candidate(self, content):
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
            fd, candidate = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(self.path))
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            mode, uid, gid = self.mode, 0, 0
            try:
                stat = os.stat(self.path)
                mode, uid, gid = stat.st_mode & 0o7777, stat.st_uid, stat.st_gid
            except FileNotFoundError:
                uid, gid = os.getuid(), os.getgid()
            os.chmod(candidate, mode)
            if os.getuid() == 0:
                os.chown(candidate, uid, gid)
        except OSError as exc:
            raise ModuleError("cannot write next to %s: %s" % (self.path, exc))
        return candidate

    def _validate(self, candidate):
        if not self.validate:
            return
        argv = [arg.replace("%s", candidate) for arg in self.validate]
        rc, out, err = self.run_command(argv)
        if rc != 0:
            message = "\n".join(part for part in (err.strip(), out.strip()) if part)
            raise ModuleError("%s rejected the new %s: %s" % (argv[0], self.path, message.replace(candidate, self.path)),
                              validator=argv[0], validator_rc=rc)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
