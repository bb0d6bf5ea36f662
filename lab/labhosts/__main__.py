"""Command line: python -m labhosts {up,down,status,summary,check,ssh,image} ..."""

import argparse
import json
import os
import sys

import yaml

from . import cloud, images, lab
from .errors import LabError
from .topology import parse


def host_arg(text):
    """NAME[:GROUP,GROUP][+DEVICE...] -> a host entry of the lab spec."""
    head, *devices = text.split("+")
    name, _sep, groups = head.partition(":")
    return {"name": name, "groups": [g for g in groups.split(",") if g], "devices": devices}


def _spec(args):
    spec = {}
    if args.spec:
        with open(args.spec, encoding="utf-8") as src:
            spec = yaml.safe_load(src) or {}
    if args.lab:
        spec["lab"] = args.lab
    if args.host:
        spec["hosts"] = [host_arg(h) for h in args.host]
    return parse(spec)


def summary(state):
    rows = [("host", "groups", "address")]
    rows += [(h["name"], ",".join(h["groups"]) or "-", h["address"]) for h in state["hosts"]]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["lab %s (underlay %s)" % (state["lab"], state["prefix"]), ""]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, width)).rstrip() for row in rows]
    lines += ["", "inventory:   %s" % state["inventory"],
              "ssh:         ssh -F %s <host>" % state["ssh_config"],
              "tear down:   make lab-down LAB=%s" % state["lab"]]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="labhosts", description="Lab hosts booting their own systemd.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="bring a lab up (keeps one that runs as specified, replaces anything else of that name)")
    p_up.add_argument("--spec", help="YAML file: {lab: NAME, hosts: [{name, groups, devices}]}")
    p_up.add_argument("--lab", help="lab name (overrides the spec's)")
    p_up.add_argument("--fresh", action="store_true", help="rebuild the lab even if it runs as specified")
    p_up.add_argument("--host", action="append",
                      help="NAME[:GROUP,GROUP][+kvm][+tun], repeatable (replaces the spec's hosts)")
    p_down = sub.add_parser("down", help="remove a lab and everything it left behind")
    p_down.add_argument("lab")
    p_status = sub.add_parser("status", help="print a lab's state as JSON (or the list of labs)")
    p_status.add_argument("lab", nargs="?")
    p_summary = sub.add_parser("summary", help="what the lab is made of and how to use it")
    p_summary.add_argument("lab")
    p_ssh = sub.add_parser("ssh", help="ssh into a lab host")
    p_ssh.add_argument("lab")
    p_ssh.add_argument("host")
    p_ssh.add_argument("command", nargs=argparse.REMAINDER)
    p_check = sub.add_parser("check", help="prove the lab cloud works end to end and print its summary")
    p_check.add_argument("lab")
    p_check.add_argument("--timeout", type=int, default=1200, help="seconds to wait for the instances to answer")
    p_image = sub.add_parser("image", help="build a guest image if it is not cached; print its paths as JSON")
    p_image.add_argument("name", choices=sorted(images.IMAGES))
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            state = lab.up(_spec(args), fresh=args.fresh)
            print(json.dumps({"lab": state["lab"], "inventory": state["inventory"]}))
        elif args.cmd == "down":
            lab.down(args.lab)
        elif args.cmd == "status":
            print(json.dumps(lab.load_state(args.lab) if args.lab else lab.labs(), indent=2))
        elif args.cmd == "summary":
            print(summary(lab.load_state(args.lab)))
        elif args.cmd == "check":
            state = lab.load_state(args.lab)
            print(cloud.summary(state, cloud.check(state, timeout=args.timeout)))
        elif args.cmd == "ssh":
            state = lab.load_state(args.lab)
            os.execvp("ssh", ["ssh", "-F", state["ssh_config"], args.host] + args.command)
        elif args.cmd == "image":
            info = images.ensure(args.name, lab.cache_dir(), log=lambda msg: print("image: " + msg, file=sys.stderr))
            print(json.dumps(info, indent=2, sort_keys=True))
    except LabError as exc:
        print("labhosts: error: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
