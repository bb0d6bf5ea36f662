# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of an RBD volume: sizes in binary units, names, sources, feature
names, and the plan that turns an image's actual facts into the wanted ones
(with the facts it will have afterwards, for check mode and the diff). No I/O
here: the module reads the facts and applies the plan's actions."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError, list_entry, within
from ansible_collections.hardway.cloud.plugins.module_utils.ceph import check_name
from ansible_collections.hardway.cloud.plugins.module_utils.units import format_size, parse_size

# librbd's feature bits (include/rbd/features.h), a stable ABI
FEATURES = (("layering", 1), ("striping", 2), ("exclusive-lock", 4), ("object-map", 8), ("fast-diff", 16),
            ("deep-flatten", 32), ("journaling", 64), ("data-pool", 128), ("operations", 256),
            ("migrating", 512), ("non-primary", 1024))
FEATURE_BITS = dict(FEATURES)
INTERNAL = ("operations",)
# what a user chooses; the others follow from other settings or are librbd's own
SETTABLE = ("layering", "exclusive-lock", "object-map", "fast-diff", "deep-flatten", "journaling")
# what librbd changes on an existing image (deep-flatten can only be switched off)
MUTABLE = ("exclusive-lock", "object-map", "fast-diff", "journaling")
DISABLE_ONLY = ("deep-flatten",)
NEEDS = (("object-map", "exclusive-lock"), ("fast-diff", "object-map"), ("journaling", "exclusive-lock"))


def image_spec(pool, namespace, name, snapshot=None):
    """pool/image or pool/namespace/image, with @snapshot when given (the rbd CLI's spec)."""
    spec = "/".join(part for part in (pool, namespace, name) if part)
    return "%s@%s" % (spec, snapshot) if snapshot else spec


def parse_source(value):
    """A clone source POOL/IMAGE@SNAP or POOL/NAMESPACE/IMAGE@SNAP, or an absolute file path."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ParameterError("source", "%r is not a source" % (value,))
    if value.startswith("/"):
        if any(ord(char) < 32 for char in value):
            raise ParameterError("source", "%r has control characters" % (value,))
        return {"kind": "file", "path": value}
    hint = "give POOL/IMAGE@SNAPSHOT, POOL/NAMESPACE/IMAGE@SNAPSHOT or an absolute path of a qcow2 or raw file"
    image, at, snapshot = value.partition("@")
    parts = image.split("/")
    if not at or len(parts) not in (2, 3):
        raise ParameterError("source", "%r is not a source: %s" % (value, hint))
    names = [("pool", parts[0])] + ([("namespace", parts[1])] if len(parts) == 3 else []) + \
        [("image", parts[-1]), ("snapshot", snapshot)]
    for what, name in names:
        if not name:
            raise ParameterError("source", "%r has an empty %s name: %s" % (value, what, hint))
        check_name("source", name, what)
    namespace = parts[1] if len(parts) == 3 else ""
    return {"kind": "clone", "pool": parts[0], "namespace": namespace, "image": parts[-1], "snapshot": snapshot,
            "spec": image_spec(parts[0], namespace, parts[-1], snapshot)}


def feature_names(bits):
    """librbd's feature bitmask as names, in bit order. ``operations`` is left
    out: librbd sets it on its own (on clones of format 2, depending on the
    cluster's clients), so no one chooses or compares it."""
    return [name for name, bit in FEATURES if bits & bit and name not in INTERNAL]


def feature_bits(names):
    bits = 0
    for name in names:
        bits |= FEATURE_BITS[name]
    return bits


def features_from_conf(value):
    """``rbd_default_features`` as librbd reads it: a number or names separated by commas."""
    text = str(value).strip()
    if text.isdigit():
        return feature_names(int(text))
    names = [name.strip() for name in text.split(",") if name.strip()]
    return [name for name, _bit in FEATURES if name in names]


def check_features(value, clone=False):
    """The wanted feature names (sorted in bit order), or None to leave librbd's defaults."""
    if value is None:
        return None
    names = []
    for index, name in enumerate(value):
        if name not in SETTABLE:
            raise ParameterError("features[%d]" % index, "%r is not a feature one can choose; choose from %s"
                                 % (name, ", ".join(SETTABLE)))
        names.append(name)
    for feature, needed in NEEDS:
        if feature in names and needed not in names:
            raise ParameterError("features", "%s needs %s" % (feature, needed))
    if clone and "layering" not in names:
        raise ParameterError("features", "a clone needs layering")
    return [name for name, _bit in FEATURES if name in names]


def check_snapshots(value):
    """The declared snapshots: name, protected (None keeps an existing snapshot's
    protection, a new one is not protected) and state."""
    snapshots, seen = [], {}
    for index, item in enumerate(value or []):
        where = "snapshots[%d]" % index
        if not isinstance(item, dict):
            raise ParameterError(where, "must be a dict with a name")
        name = check_name(where + ".name", item.get("name"), "snapshot")
        if name in seen:
            raise ParameterError(where + ".name", "snapshot %s is listed twice (also snapshots[%d])"
                                 % (name, seen[name]))
        seen[name] = index
        state = item.get("state") or "present"
        if state not in ("present", "absent"):
            raise ParameterError(where + ".state", "%r is not one of present, absent" % (state,))
        protected = item.get("protected")
        if protected is not None and not isinstance(protected, bool):
            raise ParameterError(where + ".protected", "%r is not a boolean" % (protected,))
        snapshots.append({"name": name, "protected": protected, "state": state, "where": where})
    return snapshots


# what one image is declared with: given per entry of ``volumes``, or at the
# top level for the one image of ``name`` and for every entry that leaves it out
IMAGE_OPTIONS = ("state", "size", "source", "snapshots", "flatten", "allow_shrink", "force", "features")
VOLUME_EXAMPLE = "{name: web1-disk, source: vms/debian12@base}"


def image_options(params):
    """The checked values of IMAGE_OPTIONS (missing ones take their defaults)."""
    state = params.get("state") or "present"
    if state not in ("present", "absent"):
        raise ParameterError("state", "%r is not one of present, absent" % (state,))
    size = params.get("size")
    size = parse_size("size", size) if size is not None else None
    source = parse_source(params.get("source"))
    return {
        "state": state,
        "size": size,
        "source": source,
        "features": check_features(params.get("features"), clone=bool(source and source["kind"] == "clone")),
        "snapshots": check_snapshots(params.get("snapshots")),
        "flatten": bool(params.get("flatten")),
        "allow_shrink": bool(params.get("allow_shrink")),
        "force": bool(params.get("force")),
    }


def wanted(params):
    """The wanted state from module parameters (type-checked by Ansible);
    raises ParameterError on any value that makes no sense."""
    if params.get("pool") is None:
        raise ParameterError("pool", "is required: the pool of image %s" % (params.get("name"),))
    pool = check_name("pool", params["pool"], "pool")
    namespace = params.get("namespace") or ""
    if namespace:
        check_name("namespace", namespace, "namespace")
    name = check_name("name", params["name"], "image")
    want = {"pool": pool, "namespace": namespace, "name": name, "spec": image_spec(pool, namespace, name)}
    want.update(image_options(params))
    return want


def wanted_volumes(params):
    """The wanted state of each entry of ``volumes``, in the order given. An
    option an entry leaves out (or sets to null) is the top level's, which has
    the single image's default. Every entry is checked before any is used; an
    error names the entry's option (volumes[3].size), an image listed twice
    names volumes."""
    image_options(params)  # the top level's values, once: an error names the top-level option
    for key, what in (("pool", "pool"), ("namespace", "namespace")):
        if params.get(key):
            check_name(key, params[key], what)
    wants, seen = [], {}
    for index, item in enumerate(params.get("volumes") or []):
        where = "volumes[%d]" % index
        item = list_entry(where, item, "name", VOLUME_EXAMPLE, ("pool", "namespace") + IMAGE_OPTIONS)
        merged = dict((key, params.get(key)) for key in ("pool", "namespace") + IMAGE_OPTIONS)
        merged.update((key, value) for key, value in item.items() if value is not None)
        if merged["pool"] is None:
            raise ParameterError(where + ".pool", "is required for image %s: give the pool in the entry or at the "
                                                  "top level" % (item["name"],))
        try:
            want = wanted(merged)
        except ParameterError as exc:
            named = exc.parameter not in ("pool", "namespace", "name")
            raise within(where, exc, image_spec(merged["pool"], merged["namespace"], item["name"]) if named else None,
                         "image ")
        want["where"] = where
        if want["spec"] in seen:
            raise ParameterError("volumes", "lists image %s twice (%s and %s): give each image once"
                                 % (want["spec"], seen[want["spec"]], where))
        seen[want["spec"]] = where
        wants.append(want)
    return wants


_ENTRY = re.compile(r"^volumes\[(?P<index>[0-9]+)\]")


def entry_index(parameter):
    """The index of the entry of volumes a parameter (volumes[3].size) is in, or None."""
    match = _ENTRY.match(parameter or "")
    return int(match.group("index")) if match else None


def _child_spec(child):
    return image_spec(child["pool"], child["pool_namespace"], child["image"])


class Batch(object):
    """What the entries of a batch planned so far will have made of the images
    they touch, so that each entry is planned against the state it meets when
    it is applied: a clone of a snapshot that an earlier entry creates, the
    clones of a snapshot that earlier entries made, removed or flattened."""

    def __init__(self, wants):
        self.where = dict((want["spec"], want["where"]) for want in wants)
        self.after = {}    # spec: (where, facts afterwards or None) of the entries planned so far
        self.parents = {}  # spec: the image's parent afterwards (None: none, or no image), where it changes

    def record(self, want, actions, after):
        """Entry ``want`` is planned: ``actions`` lead to ``after``."""
        self.after[want["spec"]] = (want["where"], after)
        self.parents[want["spec"]] = after["parent"] if after is not None else None
        for action in actions:
            if action[0] == "flatten_children":
                for child in action[2]:
                    self.parents[_child_spec(child)] = None

    def made_by(self, spec):
        """The entry that manages image ``spec``, or None."""
        return self.where.get(spec)

    def source(self, source):
        """A clone source's size and features as an earlier entry leaves it, or
        None when no earlier entry manages the source image."""
        spec = image_spec(source["pool"], source["namespace"], source["image"])
        if spec not in self.after:
            return None
        where, facts = self.after[spec]
        if facts is None:
            raise ParameterError("source", "image %s is removed by %s, earlier in this batch" % (spec, where))
        snap = _snapshot(facts, source["snapshot"])
        if snap is None:
            raise ParameterError("source", "image %s has no snapshot %s after %s (it has: %s): declare it there "
                                           "(snapshots: [{name: %s, protected: true}])"
                                 % (spec, source["snapshot"], where,
                                    ", ".join(s["name"] for s in facts["snapshots"]) or "none", source["snapshot"]))
        return {"size": snap["size"], "features": list(facts["features"])}

    def current(self, want, facts):
        """The image's facts as the earlier entries leave them (a clone they flatten has no parent)."""
        if facts is None or want["spec"] not in self.parents:
            return facts
        facts = dict(facts)
        facts["parent"] = self.parents[want["spec"]]
        return facts

    def children(self, want, children):
        """The clones of each of the image's snapshots once the earlier entries are applied."""
        adjusted = {}
        for name, found in children.items():
            at = "%s@%s" % (want["spec"], name)
            kept = [child for child in found if self.parents.get(_child_spec(child), at) == at]
            known = set(_child_spec(child) for child in found)
            for spec, parent in self.parents.items():
                if parent == at and spec not in known:
                    # made by an earlier entry: no id yet, found by name
                    _where, facts = self.after[spec]
                    kept.append({"pool": facts["pool"], "pool_namespace": facts["namespace"], "image": facts["name"],
                                 "id": None, "trash": False})
            adjusted[name] = kept
        return adjusted


def batch_diff(entries):
    """The diff of a batch: before and after of each image that changes (would
    change), keyed by its spec; an image that does not exist has no key."""
    before, after = {}, {}
    for spec, old, new, changed in entries:
        if not changed:
            continue
        if old is not None:
            before[spec] = view(old)
        if new is not None:
            after[spec] = view(new)
    return before, after


def view(facts):
    """What the diff shows: the facts the module owns (not who has the image open)."""
    if facts is None:
        return {}
    shown = dict((key, value) for key, value in facts.items() if key != "watchers")
    shown["snapshots"] = [dict(snap) for snap in facts["snapshots"]]
    return shown


def wanted_size(want, current_size, source_size):
    """The size the image should have. With a source, ``size`` is raised to the
    source's size (an image is never smaller than what it was made from); when
    the source's size is unknown (a file that is gone), never below the current size."""
    size = want["size"]
    if size is None or want["source"] is None:
        return size
    floor = source_size if source_size is not None else current_size
    return max(size, floor or 0)


def _children_text(children):
    return ", ".join(image_spec(c["pool"], c["pool_namespace"], c["image"]) + (" (in trash)" if c.get("trash") else "")
                     for c in children)


def plan(want, current, children=None, source_size=None, source_features=None):
    """The actions that turn ``current`` (the image's facts, None when it does
    not exist) into ``want``, and the facts afterwards.

    ``children`` maps each snapshot to its clones ({pool, pool_namespace, image,
    id, trash}). ``source_size`` is the clone source snapshot's or the source
    file's (virtual) size; ``source_features`` the features a new image gets
    when ``features`` is not given (the parent's for a clone, librbd's default
    otherwise). Returns (actions, after, warnings); each action is a tuple
    (verb, argument...). Refusals raise ParameterError before any action."""
    children = children or {}
    if want["state"] == "absent":
        return _plan_absent(want, current, children)
    actions, warnings = [], []
    source = want["source"]
    if current is None:
        after = _plan_create(want, source_size, source_features, actions)
    else:
        after = copy.deepcopy(current)
        if source is not None and source["kind"] == "clone" and current["parent"] not in (None, source["spec"]):
            warnings.append("image %s exists as a clone of %s, not of the source %s: a source is only used to "
                            "create an image, so nothing was re-created"
                            % (want["spec"], current["parent"], source["spec"]))
        target = wanted_size(want, current["size"], source_size)
        if target is not None and target != current["size"]:
            if target < current["size"] and not want["allow_shrink"]:
                raise ParameterError("size", "%s is smaller than the image's %s: shrinking loses the data beyond "
                                             "the new end; set allow_shrink: true to shrink"
                                     % (format_size(target), format_size(current["size"])))
            actions.append(("resize", current["size"], target))
            after["size"] = target
        _plan_features(want, current, actions, after)
    if want["flatten"] and after["parent"] is not None:
        actions.append(("flatten", after["parent"]))
        after["parent"] = None
    _plan_snapshots(want, current, children, actions, after)
    return actions, after, warnings


def _plan_create(want, source_size, source_features, actions):
    source = want["source"]
    size = want["size"]
    features = want["features"] if want["features"] is not None else list(source_features or [])
    parent = None
    if source is None:
        if size is None:
            raise ParameterError("size", "is required to create image %s without a source" % want["spec"])
        actions.append(("create", size, want["features"]))
    elif source["kind"] == "clone":
        actions.append(("clone", source, want["features"]))
        parent = source["spec"]
        if size is not None and size > source_size:
            actions.append(("resize", source_size, size))
        size = max(size or 0, source_size)
    else:
        size = max(size or 0, source_size)
        actions.append(("import", source, size, want["features"]))
    return {"pool": want["pool"], "namespace": want["namespace"], "name": want["name"], "size": size,
            "features": features, "parent": parent, "snapshots": [], "watchers": []}


def _plan_features(want, current, actions, after):
    if want["features"] is None:
        return
    have = [name for name in current["features"] if name in SETTABLE]
    enable = [name for name in want["features"] if name not in have]
    disable = [name for name in have if name not in want["features"]]
    fixed = [name for name in enable if name not in MUTABLE] + \
        [name for name in disable if name not in MUTABLE + DISABLE_ONLY]
    if fixed:
        raise ParameterError("features", "%s of image %s can only be chosen when the image is created (librbd "
                                         "cannot %s it on an existing image)"
                             % (", ".join(fixed), want["spec"], "enable" if fixed[0] in enable else "disable"))
    if not (enable or disable):
        return
    if current["watchers"]:
        raise ParameterError("features", "image %s is in use by %s: features change only while no client has it "
                                         "open" % (want["spec"], ", ".join(current["watchers"])))
    if disable:
        actions.append(("disable_features", disable))
    if enable:
        actions.append(("enable_features", enable))
    after["features"] = [name for name, _bit in FEATURES
                         if name in want["features"] or (name in current["features"] and name not in SETTABLE)]


def _snapshot(after, name):
    return next((snap for snap in after["snapshots"] if snap["name"] == name), None)


def _plan_snapshots(want, current, children, actions, after):
    for wanted_snap in want["snapshots"]:
        name, where = wanted_snap["name"], wanted_snap["where"]
        snap = _snapshot(after, name)
        clones = children.get(name, []) if current is not None else []
        if wanted_snap["state"] == "absent":
            if snap is None:
                continue
            _release_clones(want, name, clones, where, "remove it", actions)
            if snap["protected"]:
                actions.append(("unprotect", name))
            actions.append(("remove_snapshot", name))
            after["snapshots"].remove(snap)
            continue
        if snap is None:
            actions.append(("snapshot", name))
            snap = {"name": name, "size": after["size"], "protected": False, "children": 0}
            after["snapshots"].append(snap)
        if wanted_snap["protected"] is True and not snap["protected"]:
            actions.append(("protect", name))
            snap["protected"] = True
        elif wanted_snap["protected"] is False and snap["protected"]:
            _release_clones(want, name, clones, where + ".protected", "unprotect it", actions)
            actions.append(("unprotect", name))
            snap["protected"] = False
            snap["children"] = 0


def _release_clones(want, name, clones, where, doing, actions):
    """Clones of a snapshot block its removal: refused, or flattened with force."""
    if not clones:
        return
    if not want["force"]:
        raise ParameterError(where, "snapshot %s@%s has clones (%s): set force: true to flatten them (copy the "
                                    "parent's data into each) and %s"
                             % (want["spec"], name, _children_text(clones), doing))
    actions.append(("flatten_children", name, clones))


def _plan_absent(want, current, children):
    if current is None:
        return [], None, []
    spec = want["spec"]
    if current["watchers"]:
        raise ParameterError("state", "image %s is in use by %s (a running VM, a mapped device?): stop or detach "
                                      "it first (force does not remove an image in use; a crashed client's watch "
                                      "expires within 30 s)" % (spec, ", ".join(current["watchers"])))
    clones = [(snap["name"], children.get(snap["name"], [])) for snap in current["snapshots"]]
    with_clones = [(name, found) for name, found in clones if found]
    if with_clones and not want["force"]:
        raise ParameterError("state", "image %s has clones (%s): set force: true to flatten them and remove the "
                                      "image with its snapshots"
                             % (spec, "; ".join("%s of @%s" % (_children_text(found), name)
                                                for name, found in with_clones)))
    if current["snapshots"] and not want["force"]:
        raise ParameterError("state", "image %s has snapshots (%s): set force: true to remove them with the image"
                             % (spec, ", ".join(snap["name"] for snap in current["snapshots"])))
    actions = []
    for snap in current["snapshots"]:
        found = children.get(snap["name"], [])
        if found:
            actions.append(("flatten_children", snap["name"], found))
        if snap["protected"]:
            actions.append(("unprotect", snap["name"]))
        actions.append(("remove_snapshot", snap["name"]))
    actions.append(("remove",))
    return actions, None, []


def describe(want, action):
    """One line per action, as the module returns them in ``actions``."""
    verb, args = action[0], action[1:]
    spec = want["spec"]
    if verb == "create":
        return "create %s (%s)" % (spec, format_size(args[0]))
    if verb == "clone":
        return "clone %s from %s" % (spec, args[0]["spec"])
    if verb == "import":
        return "import %s into %s (%s)" % (args[0]["path"], spec, format_size(args[1]))
    if verb == "resize":
        return "resize %s from %s to %s" % (spec, format_size(args[0]), format_size(args[1]))
    if verb == "flatten":
        return "flatten %s (detach from %s)" % (spec, args[0])
    if verb in ("enable_features", "disable_features"):
        return "%s features %s of %s" % (verb.split("_")[0], ", ".join(args[0]), spec)
    if verb == "snapshot":
        return "create snapshot %s@%s" % (spec, args[0])
    if verb in ("protect", "unprotect"):
        return "%s snapshot %s@%s" % (verb, spec, args[0])
    if verb == "remove_snapshot":
        return "remove snapshot %s@%s" % (spec, args[0])
    if verb == "flatten_children":
        return "flatten %s (clones of %s@%s)" % (_children_text(args[1]), spec, args[0])
    if verb == "remove":
        return "remove %s" % spec
    raise ValueError(verb)


def qemu_rbd_target(pool, namespace, name, user, conf, keyring, timeout):
    """qemu-img's legacy rbd: filename. ':' separates options and '=' keys from
    values; both (and the backslash) are escaped with a backslash. qemu looks
    for '@' (a snapshot) before it reads escapes, so a path with '@' cannot be
    passed. Only paths go there, never key material."""
    for parameter, path in (("conf", conf), ("keyring", keyring)):
        if path and "@" in path:
            raise ParameterError(parameter, "%s contains '@', which qemu-img's rbd target cannot carry; an import "
                                            "needs a path without it" % path)

    def escape(text):
        return re.sub(r"([\\:=])", r"\\\1", str(text))

    target = "rbd:" + "/".join(escape(part) for part in (pool, namespace, name) if part)
    options = [("id", user), ("conf", conf)]
    if keyring:
        options.append(("keyring", keyring))
    options += [("client_mount_timeout", timeout), ("rados_mon_op_timeout", timeout),
                ("rados_osd_op_timeout", timeout)]
    return target + "".join(":%s=%s" % (key, escape(value)) for key, value in options)


def import_name(name):
    """The temporary image an import writes into before it is renamed into
    place: a crashed import never leaves a half-written image under the real name."""
    return ".%s.importing" % name
