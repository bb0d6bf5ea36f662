"""cloudinit_seed writing real seed images on this machine: idempotence, check
and diff mode, file attributes, removal, bad input, and secrets kept out of the
output. That a guest's cloud-init consumes the image is proven in
tests/integration/lab/test_first_boot.py."""

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest

from module_runner import COLLECTIONS, run_module

import badinput

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC8dbOPN3UC4XqnCRmHCDrxfzKaQuC+/ke1LB0p3Rc2K admin@example.org"
SECRET = "s3cret-Pa55word"


def seed_args(dest, **extra):
    args = {"dest": str(dest), "instance_id": "web1", "hostname": "web1", "ssh_authorized_keys": [KEY],
            "user_data": {"password": SECRET, "chpasswd": {"expire": False},
                          "write_files": [{"path": "/etc/hardway-test", "content": "hello\n"}]},
            "network_config": {"version": 2, "ethernets": {"eth0": {"dhcp4": False, "accept-ra": True}}}}
    args.update(extra)
    return args


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_create_is_idempotent_and_identical_input_gives_identical_bytes(tmp_path):
    dest = tmp_path / "web1.iso"
    result = run_module("cloudinit_seed", seed_args(dest))
    assert result["changed"] and result["dest"] == str(dest), result
    assert result["sha256"] == sha256(dest) and result["size"] == os.path.getsize(dest)
    assert result["files"] == ["meta-data", "network-config", "user-data"]
    assert oct(os.stat(dest).st_mode & 0o777) == "0o600"
    mtime = os.stat(dest).st_mtime_ns
    again = run_module("cloudinit_seed", seed_args(dest))
    assert not again["changed"] and again["sha256"] == result["sha256"]
    assert os.stat(dest).st_mtime_ns == mtime
    other = tmp_path / "copy.iso"
    assert run_module("cloudinit_seed", seed_args(other))["sha256"] == result["sha256"]
    with open(dest, "rb") as one, open(other, "rb") as two:
        assert one.read() == two.read()
    with open(dest, "rb") as handle:
        data = handle.read()
    assert data[0x8001:0x8006] == b"CD001" and data[0x8028:0x802e] == b"cidata"


def test_check_mode_writes_nothing_and_diff_shows_keys_not_values(tmp_path):
    dest = tmp_path / "web1.iso"
    result = run_module("cloudinit_seed", seed_args(dest), check=True)
    assert result["changed"] and not dest.exists()
    assert "local-hostname: web1" in result["diff"]["after"]
    assert "keys: chpasswd, password, ssh_authorized_keys, write_files" in result["diff"]["after"]
    run_module("cloudinit_seed", seed_args(dest))
    before = sha256(dest)
    changed = run_module("cloudinit_seed", seed_args(dest, hostname="web2"), check=True)
    assert changed["changed"] and sha256(dest) == before
    assert "local-hostname: web1" in changed["diff"]["before"] and "local-hostname: web2" in changed["diff"]["after"]
    assert changed["sha256"] != before


def test_a_content_change_rewrites_the_image(tmp_path):
    dest = tmp_path / "web1.iso"
    first = run_module("cloudinit_seed", seed_args(dest))
    os.chmod(dest, 0o640)
    second = run_module("cloudinit_seed", seed_args(dest, user_data={"runcmd": [["true"]]}))
    assert second["changed"] and second["sha256"] != first["sha256"] and second["sha256"] == sha256(dest)
    assert oct(os.stat(dest).st_mode & 0o777) == "0o640", "a rewrite keeps the file's mode"
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


def test_file_attributes(tmp_path):
    dest = tmp_path / "web1.iso"
    run_module("cloudinit_seed", seed_args(dest))
    result = run_module("cloudinit_seed", seed_args(dest, mode="0644", group="daemon"))
    assert result["changed"]
    assert oct(os.stat(dest).st_mode & 0o777) == "0o644" and os.stat(dest).st_gid == 1
    assert not run_module("cloudinit_seed", seed_args(dest, mode="0644", group="daemon"))["changed"]


def test_absent(tmp_path):
    dest = tmp_path / "web1.iso"
    run_module("cloudinit_seed", seed_args(dest))
    check = run_module("cloudinit_seed", {"dest": str(dest), "state": "absent"}, check=True)
    assert check["changed"] and dest.exists()
    assert "local-hostname: web1" in check["diff"]["before"] and check["diff"]["after"] == ""
    result = run_module("cloudinit_seed", {"dest": str(dest), "state": "absent"})
    assert result["changed"] and not dest.exists()
    assert not run_module("cloudinit_seed", {"dest": str(dest), "state": "absent"})["changed"]


def test_secrets_stay_out_of_the_result(tmp_path):
    dest = tmp_path / "web1.iso"
    for check in (True, False):
        result = run_module("cloudinit_seed", seed_args(dest), check=check)
        assert SECRET not in json.dumps(result)
    result = run_module("cloudinit_seed", seed_args(dest, user_data="#cloud-config\npassword: %s\n" % SECRET,
                                                    ssh_authorized_keys=[]))
    assert result["changed"] and SECRET not in json.dumps(result)


def test_unknown_keys_are_warned_about(tmp_path):
    result = run_module("cloudinit_seed", seed_args(tmp_path / "x.iso", user_data={"pacakges": ["nginx"]}))
    assert result["changed"]
    assert any("pacakges" in str(w) for w in result.get("warnings", [])), result


@pytest.mark.parametrize("extra,parameter", [
    ({"instance_id": None}, "instance_id"),
    ({"hostname": "web_1"}, "hostname"),
    ({"user_data": "just text"}, "user_data"),
    ({"user_data": "#cloud-config\nruncmd: [unclosed\n"}, "user_data"),
    ({"user_data": 42}, "user_data"),
    ({"ssh_authorized_keys": ["ssh-ed25519 AAAA"]}, "ssh_authorized_keys[0]"),
    ({"network_config": {"version": 7}}, "network_config"),
    ({"network_config": "dhcp"}, "network_config"),
    ({"meta_data": {"instance-id": "other"}}, "meta_data"),
    ({"dest": "/nonexistent-dir/seed.iso"}, "dest"),
])
def test_bad_input_fails_cleanly_and_writes_nothing(tmp_path, extra, parameter):
    args = seed_args(tmp_path / "x.iso")
    args.update(extra)
    result = run_module("cloudinit_seed", args)
    assert result.get("failed") and result.get("parameter") == parameter, result
    assert not result.get("changed")
    assert os.listdir(tmp_path) == []
    assert SECRET not in json.dumps(result)


def batch_args(tmp_path, count=3, **top):
    """Seeds of ``count`` VMs in one task: what they share at the top level."""
    seeds = [{"dest": str(tmp_path / ("vm%d.iso" % index)), "instance_id": "vm%d" % index,
              "hostname": "vm%d" % index} for index in range(count)]
    args = {"seeds": seeds, "ssh_authorized_keys": [KEY], "user_data": {"password": SECRET}, "mode": "0640"}
    args.update(top)
    return args


def test_a_batch_writes_the_same_bytes_as_single_runs_and_is_idempotent(tmp_path):
    args = batch_args(tmp_path)
    args["seeds"][1]["user_data"] = {"packages": ["nginx"], "password": SECRET + "-1"}
    planned = run_module("cloudinit_seed", args, check=True)
    assert planned["changed"] and os.listdir(tmp_path) == []
    assert [seed["changed"] for seed in planned["seeds"]] == [True, True, True]
    made = run_module("cloudinit_seed", args)
    assert made["changed"] and [seed["dest"] for seed in made["seeds"]] == [s["dest"] for s in args["seeds"]]
    assert [seed["sha256"] for seed in made["seeds"]] == [seed["sha256"] for seed in planned["seeds"]]
    for index, seed in enumerate(made["seeds"]):
        assert sha256(seed["dest"]) == seed["sha256"]
        assert oct(os.stat(seed["dest"]).st_mode & 0o777) == "0o640"
        # the entry's options over the top level's give what a single run of them writes
        single = dict((key, value) for key, value in args.items() if key != "seeds")
        single.update(args["seeds"][index], dest=str(tmp_path / ("single%d.iso" % index)))
        assert run_module("cloudinit_seed", single)["sha256"] == seed["sha256"]
    assert made["seeds"][1]["sha256"] != made["seeds"][0]["sha256"]
    for secret in (SECRET, SECRET + "-1"):
        assert secret not in json.dumps(made) and secret not in json.dumps(planned)
    again = run_module("cloudinit_seed", args)
    assert not again["changed"] and not any(seed["changed"] for seed in again["seeds"])
    # one changed entry: only it is rewritten, and the diff names it
    args["seeds"][2]["hostname"] = "vm2-renamed"
    changed = run_module("cloudinit_seed", args)
    assert [seed["changed"] for seed in changed["seeds"]] == [False, False, True]
    assert "# %s" % args["seeds"][2]["dest"] in changed["diff"]["after"] and "vm2-renamed" in changed["diff"]["after"]
    assert args["seeds"][0]["dest"] not in changed["diff"]["after"]
    removed = run_module("cloudinit_seed", {"seeds": [{"dest": seed["dest"]} for seed in args["seeds"]],
                                            "state": "absent"})
    assert removed["changed"] and sorted(os.listdir(tmp_path)) == ["single0.iso", "single1.iso", "single2.iso"]


@pytest.mark.parametrize("change,parameter", [
    ({"user_data": "just text"}, "seeds[1].user_data"),
    ({"hostname": "vm_1"}, "seeds[1].hostname"),
    ({"network_config": {"version": 7}}, "seeds[1].network_config"),
    ({"mode": "0600"}, "seeds[1].mode"),
    ({"rbd": {"pool": "vms", "image": "x"}}, "seeds[1].dest"),
    ({"dest": None}, "seeds[1].dest"),
    ({"dest": "/nonexistent-dir/seed.iso"}, "seeds[1].dest"),
    ({"dest": "SAME"}, "seeds[1]"),
    ("vm1", "seeds[1]"),
])
def test_a_bad_entry_fails_naming_it_and_nothing_is_written(tmp_path, change, parameter):
    args = batch_args(tmp_path)
    if isinstance(change, dict):
        change = dict(change)
        if change.get("dest") == "SAME":
            change["dest"] = args["seeds"][0]["dest"]
        args["seeds"][1].update(change)
    else:
        args["seeds"][1] = change
    result = run_module("cloudinit_seed", args)
    assert result.get("failed") and result.get("parameter") == parameter, result
    assert result["msg"].startswith(parameter) and result.get("failed_entry") == 1, result
    assert not result.get("changed") and os.listdir(tmp_path) == []
    assert SECRET not in json.dumps(result)


def test_a_generated_corpus_of_bad_input_is_refused_naming_the_parameter(tmp_path):
    valid = seed_args(tmp_path / "x.iso")
    bad = {"hostname": ["-web", "web-", "a..b", "x" * 64], "instance_id": ["../../etc", "x" * 129],
           "ssh_authorized_keys[]": ["not a key", "ssh-rsa", "ssh-ed25519 AAAA", KEY + "\n" + KEY,
                                     "-----BEGIN OPENSSH PRIVATE KEY-----"],
           "user_data": ["just text", "#cloud-config\n[1, 2]\n", "#cloud-config\nusers: [\n", 5],
           "meta_data": [{"instance-id": "x"}], "network_config": [{"version": 3}],
           "dest": [str(tmp_path / "missing" / "x.iso"), str(tmp_path)]}
    cases = badinput.corpus(badinput.argument_spec("cloudinit_seed"), valid, names=("instance_id", "hostname"),
                            bad=bad, needed=("instance_id",))
    # the same for an entry of seeds
    entry = dict((key, value) for key, value in valid.items() if key != "user_data")
    for label, args, parameter in badinput.corpus(badinput.load("cloudinit_seed").SEED_OPTIONS, entry,
                                                  names=("instance_id", "hostname"), bad=bad,
                                                  needed=("instance_id",)):
        cases.append(("seeds[0]: " + label, {"seeds": [args]}, "seeds[0]." + parameter))
    assert len(cases) >= 60
    found = badinput.problems(cases, lambda args: run_module("cloudinit_seed", args),
                              lambda: sorted(os.listdir(tmp_path)))
    assert not found, "\n".join(found)


def test_no_secret_in_a_playbook_run_at_vvv_with_diff(tmp_path):
    """What an operator pastes into a bug report: ansible-playbook -vvv --diff
    run twice (changes, then none) with a seed, a batch of seeds and a batch
    that fails on a bad entry; the user-data and vendor-data passwords are in
    none of it, and the seeds that hold them are the owner's only."""
    other = SECRET + "-vendor"
    tasks = [
        {"name": "one seed",
         "hardway.cloud.cloudinit_seed": seed_args(tmp_path / "one.iso", vendor_data={"password": other})},
        {"name": "a batch", "hardway.cloud.cloudinit_seed": {
            "user_data": "#cloud-config\npassword: %s\n" % SECRET,
            "seeds": [{"dest": str(tmp_path / ("vm%d.iso" % index)), "instance_id": "vm%d" % index,
                       "vendor_data": {"password": other}} for index in range(2)]}},
        {"name": "a batch with a bad entry", "ignore_errors": True, "hardway.cloud.cloudinit_seed": {
            "user_data": {"password": SECRET}, "seeds": [
                {"dest": str(tmp_path / "vm9.iso"), "instance_id": "vm9", "vendor_data": {"password": other}},
                {"dest": str(tmp_path / "vm10.iso"), "instance_id": "vm 10"}]}},
    ]
    playbook = tmp_path / "seeds.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                                     "tasks": tasks}]))
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-vvv",
               "--diff", str(playbook), "-e", "ansible_python_interpreter=" + sys.executable]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS)
    outputs = []
    for _run in range(2):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        outputs.append(proc.stdout + proc.stderr)
    assert "changed=2" in outputs[0] and "changed=0" in outputs[1] and "failed=0" in outputs[1], outputs[1][-2000:]
    assert "seeds[1].instance_id" in outputs[0]
    for output in outputs:
        assert SECRET not in output and other not in output
    for name in ("one.iso", "vm0.iso", "vm1.iso"):
        assert stat.S_IMODE(os.stat(str(tmp_path / name)).st_mode) == 0o600
    assert not os.path.exists(str(tmp_path / "vm9.iso"))
