"""ConfigFile: validate a candidate, replace atomically, roll back."""

import os

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils.base import ModuleError
from ansible_collections.hardway.cloud.plugins.module_utils.config_file import ConfigFile


def validator(argv):
    with open(argv[-1]) as handle:
        content = handle.read()
    return (0, "", "") if "bad" not in content else (1, "", "line 1: bad word in %s" % argv[-1])


def test_write_validates_replaces_and_rolls_back(tmp_path):
    path = str(tmp_path / "x.conf")
    config = ConfigFile(path, run_command=validator, validate=["check", "%s"])
    assert config.write("one\n") and config.read() == "one\n"
    assert not config.write("one\n")
    os.chmod(path, 0o640)
    assert config.write("two\n") and oct(os.stat(path).st_mode & 0o777) == "0o640"
    config.rollback()
    assert config.read() == "one\n" and oct(os.stat(path).st_mode & 0o777) == "0o640"


def test_a_rejected_candidate_leaves_the_live_file_and_no_litter(tmp_path):
    path = str(tmp_path / "x.conf")
    config = ConfigFile(path, run_command=validator, validate=["check", "%s"])
    config.write("good\n")
    with pytest.raises(ModuleError) as caught:
        config.write("bad\n")
    assert "line 1: bad word in %s" % path in str(caught.value)
    assert config.read() == "good\n" and os.listdir(str(tmp_path)) == ["x.conf"]


def test_rollback_of_a_new_file_removes_it(tmp_path):
    path = str(tmp_path / "sub" / "new.conf")
    config = ConfigFile(path)
    with config.locked():
        assert config.write("x") and os.path.exists(path)
    config.rollback()
    assert not os.path.exists(path)
    assert not config.remove()
