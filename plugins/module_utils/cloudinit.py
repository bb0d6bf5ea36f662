# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of a cloud-init NoCloud seed: validate and render its files
(meta-data, user-data, network-config, vendor-data), and lay them out as an
ISO 9660 image labelled ``cidata`` whose bytes depend on nothing but the
files (fixed timestamps, sorted names). Building happens in memory."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import contextlib
import hashlib
import io
import re
import sys
import time as _time

from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

LABEL = "cidata"
# every timestamp in the image; 2020-01-01T00:00:00Z
EPOCH = 1577836800
FILES = ("meta-data", "user-data", "network-config", "vendor-data")
CLOUD_CONFIG = "#cloud-config"
# what a user-data that is not a cloud-config may start with (cloud-init's part handlers)
RAW_STARTS = ("#!", "#include", "#include-once", "#cloud-boothook", "#part-handler", "#upstart-job",
              "#cloud-config-archive", "#cloud-config-jsonp", "## template: jinja", "Content-Type: multipart/")
# cloud-init keeps an instance's state in a directory of this name on the guest
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
HOSTNAME = re.compile(r"^(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-dss")
# top-level keys of cloud-init's cloud-config (schema of cloud-init 22.4, plus
# the base settings it reads outside the schema)
KNOWN_KEYS = frozenset("""
allow_public_ssh_keys ansible apk_repos apt apt_pipelining apt_reboot_if_required apt_update apt_upgrade
authkey_hash autoinstall bootcmd byobu_by_default ca-certs ca_certs chef chpasswd cloud_config_modules
cloud_final_modules cloud_init_modules device_aliases disable_ec2_metadata disable_root disable_root_opts
disk_setup drivers fan final_message fqdn fs_setup groups growpart grub-dpkg grub_dpkg hostname keyboard
landscape locale locale_configfile lxd manage_etc_hosts manage_resolv_conf mcollective migrate
mount_default_fields mounts no_ssh_fingerprints ntp package_reboot_if_required package_update package_upgrade
packages password phone_home power_state prefer_fqdn_over_hostname preserve_hostname puppet random_seed
reporting resize_rootfs resolv_conf rh_subscription rsyslog runcmd salt_minion snap spacewalk ssh
ssh_authorized_keys ssh_deletekeys ssh_fp_console_blacklist ssh_genkeytypes ssh_import_id
ssh_key_console_blacklist ssh_keys ssh_publish_hostkeys ssh_pwauth ssh_quiet_keygen swap timezone
ubuntu_advantage updates user users vendor_data wireguard write_files yum_repo_dir yum_repos zypper
merge_how merge_type output log_cfgs datasource datasource_list system_info network manual_cache_clean
syslog_fix_perms def_log_file ssh_redirect_user
""".split())


class MissingLibrary(Exception):
    """PyYAML or pycdlib is not importable on the host."""


def _yaml():
    try:
        import yaml  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise MissingLibrary("PyYAML")
    return yaml


def _dump(data):
    """YAML with sorted keys and no aliases: the same data gives the same text."""
    yaml = _yaml()

    class _NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True

    return yaml.dump(data, Dumper=_NoAliases, default_flow_style=False, sort_keys=True, allow_unicode=True,
                     width=4096)


def _load(parameter, text):
    yaml = _yaml()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParameterError(parameter, "is not valid YAML: %s" % str(exc).replace("\n", " "))


def check_hostname(parameter, value):
    if not isinstance(value, str) or not HOSTNAME.match(value):
        raise ParameterError(parameter, "%r is not a host name (RFC 1123)" % (value,))
    return value


def check_key(parameter, value):
    """An OpenSSH public key line: type, base64 blob whose first field is the type, comment."""
    if not isinstance(value, str) or "\n" in value.strip():
        raise ParameterError(parameter, "%r is not an SSH public key line" % (value,))
    fields = value.strip().split()
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise ParameterError(parameter, "%r is not an SSH public key (TYPE BASE64 [COMMENT], TYPE one of %s)"
                             % (value[:40], ", ".join(KEY_TYPES[:3])))
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except (ValueError, TypeError):
        raise ParameterError(parameter, "the key data of %r is not base64" % (value[:40],))
    length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else 0
    if blob[4:4 + length] != fields[0].encode("ascii"):
        raise ParameterError(parameter, "the key data of %r is not a %s key" % (value[:40], fields[0]))
    if "PRIVATE KEY" in value:
        raise ParameterError(parameter, "looks like a private key")
    return " ".join(fields)


def _cloud_config(parameter, value, warnings):
    """user-data or vendor-data: a dict becomes #cloud-config; a string is used as
    given, and checked when it is a cloud-config. Returns (text, dict or None)."""
    if isinstance(value, dict):
        data = dict(value)
        return None, data
    if not isinstance(value, str):
        raise ParameterError(parameter, "must be a dict (rendered as #cloud-config) or a string, not %s"
                             % type(value).__name__)
    first = value.lstrip("\ufeff").split("\n", 1)[0].strip()
    if first == CLOUD_CONFIG:
        data = _load(parameter, value)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ParameterError(parameter, "a #cloud-config must be a mapping of settings")
        _warn_unknown(parameter, data, warnings)
        return value if value.endswith("\n") else value + "\n", None
    if not first.startswith(RAW_STARTS):
        raise ParameterError(parameter, "a string must start with #cloud-config, a script's #!, or another "
                                        "cloud-init part header (e.g. #include, Content-Type: multipart/mixed)")
    return value, None


def _warn_unknown(parameter, data, warnings):
    unknown = sorted(str(k) for k in data if k not in KNOWN_KEYS)
    if unknown:
        warnings.append("%s: cloud-init does not know the top-level keys %s (typo?)" % (parameter, ", ".join(unknown)))


def _render_config(parameter, data, warnings):
    if any(not isinstance(k, str) for k in data):
        raise ParameterError(parameter, "keys must be strings")
    _warn_unknown(parameter, data, warnings)
    return CLOUD_CONFIG + "\n" + _dump(data)


def _network_config(value):
    if not isinstance(value, dict):
        raise ParameterError("network_config", "must be a dict (cloud-init network config version 1 or 2)")
    inner = value.get("network") if set(value) == {"network"} else value
    if not isinstance(inner, dict) or inner.get("version") not in (1, 2):
        raise ParameterError("network_config", "needs version: 1 or version: 2 (cloud-init's network config "
                                               "formats)")
    return _dump(value)


def files(params, warnings):
    """The seed's files {name: text}; raises ParameterError. ``warnings`` collects
    what is allowed but probably wrong."""
    instance_id = params.get("instance_id")
    if not isinstance(instance_id, str) or not INSTANCE_ID.match(instance_id):
        raise ParameterError("instance_id", "%r is not an instance ID: 1-128 letters, digits, '_', '.', ':' and '-', "
                                            "starting with a letter or digit (cloud-init runs its first-boot modules "
                                            "again when it changes)" % (instance_id,))
    meta = {}
    extra = params.get("meta_data") or {}
    if not isinstance(extra, dict):
        raise ParameterError("meta_data", "must be a dict")
    for key in extra:
        if key in ("instance-id", "local-hostname"):
            raise ParameterError("meta_data", "%s is set by the %s option" % (
                key, "instance_id" if key == "instance-id" else "hostname"))
    meta.update(extra)
    meta["instance-id"] = instance_id
    if params.get("hostname") is not None:
        meta["local-hostname"] = check_hostname("hostname", params["hostname"])
    result = {"meta-data": _dump(meta)}

    keys = [check_key("ssh_authorized_keys[%d]" % i, k) for i, k in enumerate(params.get("ssh_authorized_keys") or [])]
    user_data = params.get("user_data")
    if user_data is None and keys:
        user_data = {}
    if user_data is not None:
        text, data = _cloud_config("user_data", user_data, warnings)
        if keys:
            if data is None:
                raise ParameterError("ssh_authorized_keys", "can only be merged into user_data given as a dict; "
                                                            "put the keys into the user_data text instead")
            data["ssh_authorized_keys"] = list(data.get("ssh_authorized_keys") or []) + [
                k for k in keys if k not in (data.get("ssh_authorized_keys") or [])]
        result["user-data"] = text if data is None else _render_config("user_data", data, warnings)
    else:
        # NoCloud needs the file; an empty cloud-config changes nothing
        result["user-data"] = CLOUD_CONFIG + "\n{}\n"
    if params.get("network_config") is not None:
        result["network-config"] = _network_config(params["network_config"])
    if params.get("vendor_data") is not None:
        text, data = _cloud_config("vendor_data", params["vendor_data"], warnings)
        result["vendor-data"] = text if data is None else _render_config("vendor_data", data, warnings)
    return result


def outline(seed_files):
    """What a diff may show of the files: meta-data and network-config whole,
    only the top-level keys of user-data and vendor-data (they carry secrets)."""
    lines = []
    for name in FILES:
        if name not in seed_files:
            continue
        text = seed_files[name]
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        if name in ("meta-data", "network-config"):
            lines.append("%s:\n%s" % (name, "".join("  " + line + "\n" for line in text.splitlines())))
            continue
        keys = None
        if text.startswith(CLOUD_CONFIG):
            try:
                data = _yaml().safe_load(text)
                keys = sorted(str(k) for k in data) if isinstance(data, dict) else None
            except Exception:  # pylint: disable=broad-except
                keys = None
        shown = ("keys: %s" % ", ".join(keys)) if keys is not None else "not a cloud-config"
        lines.append("%s: (content hidden, sha256 %s, %s)\n" % (name, digest, shown))
    return "".join(lines)


class _FixedClock(object):
    """Stands in for the ``time`` module inside pycdlib while it builds: every
    date in the image becomes EPOCH, in UTC whatever the host's time zone."""

    @staticmethod
    def time():
        return float(EPOCH)

    @staticmethod
    def localtime(seconds=None):
        return _time.gmtime(EPOCH if seconds is None else seconds)

    gmtime = staticmethod(_time.gmtime)
    strftime = staticmethod(_time.strftime)
    mktime = staticmethod(_time.mktime)
    struct_time = _time.struct_time


@contextlib.contextmanager
def _fixed_clock():
    patched = []
    for name, module in list(sys.modules.items()):
        if (name == "pycdlib" or name.startswith("pycdlib.")) and getattr(module, "time", None) is _time:
            module.time = _FixedClock
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            module.time = _time


def _iso_name(name):
    """ISO 9660 level-1 name of a seed file: META_DAT.;1 style, unique per file."""
    base = re.sub(r"[^A-Z0-9_]", "_", name.upper())
    stem, ext = base[:8], base[8:11] if len(base) > 8 else ""
    return "/%s.%s;1" % (stem, ext)


def build_iso(seed_files):
    """The ISO image (bytes) holding ``seed_files`` under their own names
    (Rock Ridge and Joliet), volume label ``cidata``."""
    try:
        import pycdlib  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise MissingLibrary("pycdlib")
    with _fixed_clock():
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=1, joliet=3, rock_ridge="1.09", vol_ident=LABEL, sys_ident="LINUX",
                app_ident_str="HARDWAY.CLOUD", set_size=1, seqnum=1)
        for name in sorted(seed_files):
            data = seed_files[name].encode("utf-8")
            iso.add_fp(io.BytesIO(data), len(data), _iso_name(name), rr_name=name, joliet_path="/" + name)
        out = io.BytesIO()
        iso.write_fp(out)
        iso.close()
    return out.getvalue()


def read_iso(data):
    """{name: text} of a seed image's files (Joliet names), and its label."""
    try:
        import pycdlib  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise MissingLibrary("pycdlib")
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        label = iso.pvd.volume_identifier.decode("utf-8", "replace").strip()
        found = {}
        for name in FILES:
            out = io.BytesIO()
            try:
                iso.get_file_from_iso_fp(out, joliet_path="/" + name)
            except pycdlib.pycdlibexception.PyCdlibException:
                continue
            found[name] = out.getvalue().decode("utf-8", "replace")
    finally:
        iso.close()
    return label, found
