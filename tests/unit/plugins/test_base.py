"""The shared module shape: which parameter a validation message is about."""

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import base


@pytest.mark.parametrize("message,parameter", [
    ("argument 'vni' is of type str and we were unable to convert to int: ...", "vni"),
    ("argument 'port' is of type str found in 'servers'. and we were unable to convert to int", "servers.port"),
    ("value of state must be one of: present, absent, got: gone", "state"),
    ("value of state must be one of: ready, drain, maint, got: bad found in servers", "servers.state"),
    ("missing required arguments: dest", "dest"),
    ("missing required arguments: port found in servers", "servers.port"),
    ("Unsupported parameters for (basic.py) module: bogus. Supported parameters include: a, b", "bogus"),
    ("Unsupported parameters for (basic.py) module: servers.wat. Supported parameters include: x", "servers.wat"),
    ("something else entirely", None),
])
def test_parameter_of_ansible_messages(message, parameter):
    assert base.parameter_of(message) == parameter


def test_not_dicts_finds_where_a_dict_was_wanted():
    spec = {"servers": {"type": "list", "elements": "dict", "options": {"tls": {"type": "dict"}}},
            "check": {"type": "dict"}, "name": {"type": "str"}}
    assert base._not_dicts(spec, {"servers": "x"}) == ["servers"]
    assert base._not_dicts(spec, {"servers": [{}, 5], "check": "y", "name": "n"}) == ["servers[1]", "check"]
    assert base._not_dicts(spec, {"servers": [{"tls": "on"}]}) == ["servers[0].tls"]
    assert base._value_at({"servers": [{"tls": "on"}]}, "servers[0].tls") == "on"
