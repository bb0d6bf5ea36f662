# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape every hardway.cloud module shares: read the actual state, plan,
stop there in check mode, apply, report. Errors become ``fail_json`` with a
message that names the parameter; nothing escapes as a traceback."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator


class ParameterError(Exception):
    """Bad input: the message names the parameter."""

    def __init__(self, parameter, message):
        super(ParameterError, self).__init__("%s: %s" % (parameter, message))
        self.parameter = parameter


def check_bool(parameter, value):
    """A boolean given as YAML or Ansible would write it."""
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("yes", "true", "on", "1"):
        return True
    if text in ("no", "false", "off", "0"):
        return False
    raise ParameterError(parameter, "%r is not a boolean" % (value,))


def list_entry(where, item, key, example, optional, scalars=(str,)):
    """A list entry given as a scalar (just ``key``) or as a dict with ``key``
    and only the ``optional`` keys."""
    if isinstance(item, scalars) and not isinstance(item, bool):
        item = {key: item}
    if not isinstance(item, dict) or key not in item:
        raise ParameterError(where, "needs a '%s' (e.g. %s)" % (key, example))
    unknown = set(item) - set((key,) + tuple(optional))
    if unknown:
        raise ParameterError(where, "unknown keys %s" % ", ".join(sorted(unknown)))
    return item


class ModuleError(Exception):
    """A failure of the managed thing (a daemon, the kernel, a validator)."""

    def __init__(self, message, **details):
        super(ModuleError, self).__init__(message)
        self.details = details


def _not_dicts(spec, params, prefix=""):
    """Where a dict was asked for and something else was given (names like servers[0])."""
    found = []
    for name, option in spec.items():
        value = params.get(name) if isinstance(params, dict) else None
        if value is None:
            continue
        where = prefix + name
        if option.get("type") == "dict":
            if not isinstance(value, dict):
                found.append(where)
            elif option.get("options"):
                found += _not_dicts(option["options"], value, where + ".")
        elif option.get("type", "str") == "list" and option.get("elements") == "dict":
            if not isinstance(value, list):
                found.append(where)
                continue
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    found.append("%s[%d]" % (where, index))
                elif option.get("options"):
                    found += _not_dicts(option["options"], item, "%s[%d]." % (where, index))
    return found


def _not_a_dict(spec, given, message):
    """(parameter, message) naming where a dict was asked for and something
    else was given, when Ansible's validation ``message`` is about that (it
    says "dictionary requested" and no name); None otherwise."""
    if not (message.startswith("dictionary requested") or "in the sub parameter field" in message):
        return None
    where = _not_dicts(spec, given)
    if not where:
        return None
    return where[0], "must be a dict of options, not %r" % (_value_at(given, where[0]),)


class _AnsibleModule(AnsibleModule):
    """AnsibleModule whose argument validation messages name the parameter
    (``parameter`` in the result, and at the start of the message when
    Ansible's own does not say it): where a dict was expected (Ansible's
    "dictionary requested, ..." does not), the entry of a list option a
    message is about (interfaces[1].bridge, where Ansible names only the
    list) and the option of a dict option (health_check.fall)."""

    def _load_params(self):
        super(_AnsibleModule, self)._load_params()
        # validation replaces values it cannot convert: keep what was given
        self._given = dict(self.params)

    def fail_json(self, msg, **kwargs):
        if isinstance(msg, str) and "parameter" not in kwargs and not getattr(self, "_validated", False):
            msg, kwargs = self.name_parameter(msg, dict(kwargs))
        super(_AnsibleModule, self).fail_json(msg=msg, **kwargs)

    def name_parameter(self, msg, kwargs):
        """``msg`` and ``kwargs`` of a failed argument validation with the parameter named."""
        given = getattr(self, "_given", None) or {}
        refusal = _not_a_dict(self.argument_spec, given, msg)
        if refusal:
            kwargs["parameter"] = refusal[0]
            return "%s: %s" % refusal, kwargs
        where = entry_parameter(self.argument_spec, given, msg)
        if where:
            kwargs["parameter"] = where
            return "%s: %s" % (where, msg), kwargs
        parameter = parameter_of(msg)
        if parameter:
            kwargs["parameter"] = parameter
            if parameter not in msg:
                msg = "%s: %s" % (parameter, msg)
        return msg, kwargs


# Ansible's own validation messages, and where they say the parameter is
_VALIDATION_MESSAGES = [
    re.compile(r"^argument '(?P<name>[^']+)' is of type \S+ found in '(?P<parent>[^']+)'"),
    re.compile(r"^argument '(?P<name>[^']+)' is of type"),
    re.compile(r"^value of (?P<name>\S+) must be one of: .*? found in (?P<parent>\S+?)\.?$"),
    re.compile(r"^value of (?P<name>\S+) must be one of"),
    re.compile(r"^missing required arguments: (?P<name>[^,\s]+)(?:.*? found in (?P<parent>\S+?)\.?$)?"),
    re.compile(r"^Unsupported parameters for \(.*?\) module: (?P<name>[^,\s]+?)\.?(?:,|\s|$)"),
    re.compile(r"^Elements value for option '?(?P<name>[^' ]+)'?"),
    re.compile(r"^parameters are mutually exclusive: (?P<name>[^|,\s]+)"),
]


def parameter_of(message):
    """The parameter an Ansible argument validation message is about, or None."""
    for pattern in _VALIDATION_MESSAGES:
        match = pattern.search(message)
        if match:
            parent = match.groupdict().get("parent")
            return "%s.%s" % (parent, match.group("name")) if parent else match.group("name")
    return None


_FOUND_IN = re.compile(r" found in '?(?P<context>[A-Za-z0-9_]+(?: -> [A-Za-z0-9_]+)*)")


def entry_parameter(argument_spec, given, message, lists=None):
    """The entry an Ansible argument validation ``message`` is about, as
    volumes[2].state or volumes[2].snapshots[0].name: Ansible names the option
    and its list ("found in volumes") but not which entry. ``given`` are the
    parameters as given; ``lists`` the top-level options looked into (all when
    None). None when the message is not about an entry of one of them (or no
    entry is found to refuse it)."""
    parameter = parameter_of(message)
    if not parameter:
        return None
    found = _FOUND_IN.search(message)
    if found:
        context, leaf = found.group("context").split(" -> "), parameter.split(".")[-1]
    else:
        parts = parameter.split(".")
        context, leaf = parts[:-1], parts[-1]
    if not context or (lists is not None and context[0] not in lists):
        return None
    return _locate(argument_spec, given, context, leaf)


def _locate(spec, params, context, leaf):
    option = spec.get(context[0]) or {}
    value = params.get(context[0]) if isinstance(params, dict) else None
    options = option.get("options")
    if not options or value is None:
        return None
    listed = option.get("type") == "list"
    for index, item in enumerate(value if listed and isinstance(value, list) else [value]):
        if not isinstance(item, dict):
            continue
        where = "%s[%d]" % (context[0], index) if listed else context[0]
        if len(context) > 1:
            deeper = _locate(options, item, context[1:], leaf)
            if deeper:
                return "%s.%s" % (where, deeper)
        elif _refuses(options, item, leaf):
            return "%s.%s" % (where, leaf)
    return None


def _refuses(spec, item, leaf):
    """Whether Ansible's validation of ``item`` against ``spec`` fails on option ``leaf``."""
    result = ArgumentSpecValidator(spec).validate(item)
    if leaf in result.unsupported_parameters:
        return True
    return any(parameter_of(message) == leaf for message in result.error_messages)


def within(where, exc, label=None, kind=""):
    """The ParameterError ``exc`` about an option of one entry of a batch as
    the error of entry ``where`` (volumes[3].size), naming the entry's
    ``label`` (its name, an image's spec) when the message does not."""
    message = str(exc)
    if message.startswith(exc.parameter + ": "):
        message = message[len(exc.parameter) + 2:]
    if label and label not in message:
        message += " (for %s%s)" % (kind, label)
    return ParameterError("%s.%s" % (where, exc.parameter), message)


def entry_options(argument_spec, exclude=(), required=()):
    """The options an entry of a batch takes: the module's own but those in
    ``exclude``, without their defaults, so that an option an entry leaves out
    is the top level's (which has the default); those in ``required`` are."""
    options = {}
    for name, option in argument_spec.items():
        if name in exclude:
            continue
        option = dict(option)
        option.pop("default", None)
        if name in required:
            option["required"] = True
        options[name] = option
    return options


def batch_entries(module, list_key, entry_spec, key="name"):
    """The entries of the batch option ``list_key`` as whole parameter sets, in
    order: each entry's options over the top level's. An entry is a dict of
    ``entry_spec``'s options, or a string: just its ``key`` (unless None). Each is checked
    as Ansible checks options (types, choices, required, unknown keys; its
    no_log values are hidden from the output like the top level's) and a
    refusal names the entry's option: volumes[3].size, instances[1].disks[0].path."""
    entries = []
    top = dict((name, value) for name, value in module.params.items() if name != list_key)
    for index, item in enumerate(module.params.get(list_key) or []):
        where = "%s[%d]" % (list_key, index)
        try:
            entries.append((where, _batch_entry(module, top, where, item, entry_spec, key)))
        except ParameterError as exc:
            exc.index = index
            raise
    return entries


def _batch_entry(module, top, where, item, entry_spec, key):
    if isinstance(item, str) and key:
        item = {key: item}
    if not isinstance(item, dict):
        alone = " (or just the %s)" % key if key else ""
        raise ParameterError(where, "must be a dict of options%s, not %r" % (alone, item))
    result = ArgumentSpecValidator(entry_spec).validate(item)
    # the entry's secrets are hidden from the output as the top level's are
    module.no_log_values.update(result._no_log_values)  # pylint: disable=protected-access
    if result.unsupported_parameters:
        found = sorted(result.unsupported_parameters, key=str)[0]
        if isinstance(found, tuple):
            inner = _locate(entry_spec, item, list(found[:-1]), found[-1]) or ".".join(found)
            raise ParameterError("%s.%s" % (where, inner), "unknown option")
        raise ParameterError("%s.%s" % (where, found), "unknown option (an entry takes: %s)"
                             % ", ".join(sorted(entry_spec)))
    if result.error_messages:
        message = result.error_messages[0]
        refusal = _not_a_dict(entry_spec, item, message)
        if refusal:
            raise ParameterError("%s.%s" % (where, refusal[0]), refusal[1])
        inner = entry_parameter(entry_spec, item, message) or parameter_of(message)
        raise ParameterError("%s.%s" % (where, inner) if inner else where, message)
    params = dict(top)
    for name, value in result.validated_parameters.items():
        if value is not None:
            params[name] = value
    return params


def _value_at(params, where):
    value = params
    for part in where.replace("[", ".[").split("."):
        if part.startswith("["):
            value = value[int(part[1:-1])]
        elif part:
            value = value.get(part)
    return value


class HardwayModule(object):
    """Subclasses set ``argument_spec`` (and ``module_kwargs``) and implement
    ``run()``, which reads, plans, and applies unless ``self.check_mode``.
    ``self.result`` is returned; ``set_diff`` records before/after."""

    argument_spec = {}
    module_kwargs = {}
    module_class = _AnsibleModule

    def __init__(self):
        self.module = self.module_class(argument_spec=self.argument_spec, supports_check_mode=True,
                                        **self.module_kwargs)
        self.module._validated = True
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.result = {"changed": False}

    def set_diff(self, before, after):
        if self.module._diff:
            self.result["diff"] = {"before": before, "after": after}

    def run(self):
        raise NotImplementedError

    @classmethod
    def main(cls):
        instance = cls()
        module = instance.module
        try:
            instance.run()
        except ParameterError as exc:
            # bad input is found before anything is changed
            instance.result.pop("diff", None)
            instance.result["changed"] = False
            module.fail_json(msg=str(exc), parameter=exc.parameter, **instance.result)
        except ModuleError as exc:
            result = dict(instance.result)
            result.update(exc.details)
            module.fail_json(msg=str(exc), **result)
        except Exception as exc:  # pylint: disable=broad-except
            # an unforeseen failure still ends as a clear message, with the
            # traceback kept for -vvv instead of printed raw
            module.fail_json(msg="%s: %s" % (type(exc).__name__, exc), exception=traceback.format_exc(),
                             **instance.result)
        module.exit_json(**instance.result)
