"""A corpus of invalid argument sets for a module, generated from its
argument spec and one valid argument set: each option given a value of the
wrong type, a value outside its choices, an unknown key at every level, a
required option left out; for the options that name things (and so end up in
libvirt XML, radvd or haproxy configurations, file names or command lines),
names with shell, XML and configuration metacharacters; and, for the options
a test lists with values of the right type that are still wrong, those
values (out of range, malformed addresses, MACs and sizes).

Each case is (label, args, parameter): the module must fail naming
``parameter`` (an entry as servers[0].port) or an option within it (a bad
prefixes[0] may be named prefixes[0].prefix), change nothing and print no
traceback. The tests that run the corpus hold the real thing the module
manages and compare its state before and after every case."""

import copy
import importlib
import os
import sys

COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           ".tmp", "collections")

# names that must never reach a configuration, a definition or a command line
METACHARACTERS = [
    "a b", "a\tb", "a\nb", "a;b", "a|b", "a&b", "$(reboot)", "`reboot`", "a>b", "a<b", "<x/>", "a'b", 'a"b',
    "a{b", "a}b", "a#b", "a\\b", "a\x00b", "a\x1bb", "a\n", "",
]
# what a value of each type is not
WRONG = {
    "int": "many",
    "float": "much",
    "bool": "perhaps",
    "dict": "not-a-dict",
}


def load(name):
    """The collection's module ``name`` (for its argument spec), imported as Ansible imports it."""
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
    return importlib.import_module("ansible_collections.hardway.cloud.plugins.modules." + name)


def load_util(name):
    """The collection's module_utils ``name``, imported as its modules import it."""
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
    return importlib.import_module("ansible_collections.hardway.cloud.plugins.module_utils." + name)


def argument_spec(name):
    """The argument spec of the collection's module ``name``."""
    module = load(name)
    for value in vars(module).values():
        if isinstance(value, type) and value.__module__ == module.__name__ and getattr(value, "argument_spec", None):
            return value.argument_spec
    raise LookupError("no module class with an argument spec in %s" % name)


def corpus(argument_spec, valid, names=(), skip=(), bad=None, needed=()):
    """The cases made from ``valid`` (which the module accepts). ``names`` are
    the paths of options that name things (top level "name", an entry's
    "servers[].name", a dict's "rbd.pool", an element of a list "bind[]"),
    each tried with every value of METACHARACTERS; ``bad`` maps paths to more
    values to try ({"servers[].port": [0, 65536]}); ``needed`` are the paths
    of options that ``valid`` needs though the argument spec does not require
    them (an image to create needs a size), each left out; ``skip`` are paths
    to leave alone (an option refused for something else whatever its value)."""
    values = dict((path, list(METACHARACTERS)) for path in names)
    for path, more in (bad or {}).items():
        values[path] = values.get(path, []) + list(more)
    cases = []
    _options(cases, argument_spec, valid, [], values, skip, needed, top=True)
    return cases


def _options(cases, spec, params, path, values, skip, needed, top=False):
    """Cases for the options ``spec`` of the dict at ``path`` in ``params``."""
    here = _get(params, path)
    label = _label(path)
    unknown = _with(params, path + ["no_such_option"], 1)
    cases.append(("unknown option at %s" % (label or "top level"), unknown,
                  "no_such_option" if top else label + ".no_such_option"))
    for name, option in sorted(spec.items()):
        where = path + [name]
        shown = _label(where)
        if shown in skip or _pattern(where) in skip:
            continue
        kind = option.get("type", "str")
        if (option.get("required") or _pattern(where) in needed) and name in here:
            cases.append(("%s left out" % shown, _without(params, where), shown))
        wrong = WRONG.get(kind)
        if kind == "list" and option.get("elements") == "dict":
            wrong = "not-a-list-of-dicts"
        if wrong is not None:
            cases.append(("%s of the wrong type" % shown, _with(params, where, wrong), shown))
        if option.get("choices"):
            cases.append(("%s not a choice" % shown, _with(params, where, "no-such-choice"), shown))
        for value in values.get(_pattern(where), ()):
            cases.append(("%s = %r" % (shown, value), _with(params, where, value), shown))
        for value in values.get(_pattern(where) + "[]", ()) if kind == "list" else ():
            cases.append(("%s[0] = %r" % (shown, value), _with(params, where, [value]), shown + "[0]"))
        value = here.get(name)
        if value is None or not option.get("options"):
            continue
        if kind == "dict" and isinstance(value, dict):
            _options(cases, option["options"], params, where, values, skip, needed)
        elif kind == "list" and isinstance(value, list) and value and isinstance(value[0], dict):
            _options(cases, option["options"], params, where + [0], values, skip, needed)
    return cases


def _label(path):
    """servers[0].port for ["servers", 0, "port"]."""
    text = ""
    for part in path:
        text += "[%d]" % part if isinstance(part, int) else ("." if text else "") + part
    return text


def _pattern(path):
    """servers[].port: the option, whichever entry."""
    text = ""
    for part in path:
        text += "[]" if isinstance(part, int) else ("." if text else "") + part
    return text


def _get(params, path):
    value = params
    for part in path:
        value = value[part]
    return value


def _with(params, path, value):
    changed = copy.deepcopy(params)
    _get(changed, path[:-1])[path[-1]] = value
    return changed


def _without(params, path):
    changed = copy.deepcopy(params)
    del _get(changed, path[:-1])[path[-1]]
    return changed


def problems(cases, run, snapshot):
    """Run every case; what went wrong, one line each (nothing: all refused
    cleanly). ``run(args)`` runs the module (run_module's result);
    ``snapshot()`` is the state the module manages, compared around each case."""
    found = []
    for label, args, parameter in cases:
        before = snapshot()
        try:
            result = run(args)
        except AssertionError as exc:
            # run_module: a traceback on stderr, or no JSON result
            found.append("%s: %s" % (label, str(exc).splitlines()[0]))
            continue
        if not result.get("failed"):
            found.append("%s: accepted" % label)
        elif result.get("parameter") is None and ("exception" in result or "module_stderr" in result):
            # (a playbook's results carry an "exception" for every failure; the
            # modules name the parameter of every refusal)
            found.append("%s: an unforeseen error: %s" % (label, result["msg"]))
        elif result.get("parameter") != parameter and not str(result.get("parameter")).startswith(parameter + "."):
            found.append("%s: names %r, not %r: %s" % (label, result.get("parameter"), parameter, result["msg"]))
        elif parameter not in result["msg"]:
            found.append("%s: the message does not name %s: %s" % (label, parameter, result["msg"]))
        elif result.get("changed"):
            found.append("%s: reported a change" % label)
        if snapshot() != before:
            found.append("%s: changed the host" % label)
    return found
