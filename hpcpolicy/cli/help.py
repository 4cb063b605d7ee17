"""What `--help` shows beyond the options: a description and examples for every command and
subcommand, and `--site SITE` wherever a command takes SITE as its positional argument.

Kept in one table so that every command's help reads alike; `decorate` applies it to the
parser tree `main.build_parser` makes (a command missing from the table gets a test failure,
not a bare help page).
"""

from __future__ import annotations

import argparse
from typing import Dict, Iterator, List, Tuple

# Descriptions of the subcommands whose module docstring describes only their parent.
DESCRIPTIONS: Dict[str, str] = {
    "subid list": "Every record of the sub-ID ledger: user, range, state.",
    "subid show": "One user's sub-ID record and its history.",
    "subid revoke": "Withdraw a user's range even while they are eligible; it stays reserved\n"
                    "for them until `subid grant`. Takes effect at the next apply.",
    "subid grant": "Undo `subid revoke`: the user's reserved range is published again at the\n"
                   "next apply.",
    "subid reclaim": "Free the reserved range of a user who left, so it may be given to someone\n"
                     "else. Takes effect at the next apply.",
    "subid import": "Adopt the ranges of existing subuid and subgid files into the ledger (every\n"
                    "problem of both files at once; nothing adopted unless --partial).",
    "subid check": "Check any subuid/subgid file: overlaps, ranges past 2^32, ranges on real\n"
                   "UIDs/GIDs (with --site). Exit 2 when it finds problems.",
    "node sync": "Install the current generation of a deploy root on this node: verified,\n"
                 "atomic, shadow's lock held for subuid/subgid, never an older generation.",
    "node doctor": "Check what the policy needs of this node (bind sources, sysctls, setuid,\n"
                   "runtimes, sub-IDs); exit 1 when a check fails.",
    "fleet status": "Ask every node of a node set what it holds: generations, nodes behind,\n"
                    "failing and unreachable nodes.",
}

EXAMPLES: Dict[str, List[str]] = {
    "validate": ["hpcpolicy validate site.toml", "hpcpolicy validate site.toml --offline",
                 "hpcpolicy validate --site site.toml --format json"],
    "render": ["hpcpolicy render site.toml --out /tmp/review",
               "hpcpolicy render site.toml --out /tmp/gpu --class gpu"],
    "apply": ["hpcpolicy apply site.toml --check --diff", "hpcpolicy apply site.toml",
              "hpcpolicy apply site.toml --channel canary",
              "hpcpolicy apply site.toml --non-interactive --format json   (a timer or CI)"],
    "status": ["hpcpolicy status --site site.toml",
               "hpcpolicy status --deploy-root /shared/hpcpolicy --format json"],
    "generations": ["hpcpolicy generations --site site.toml"],
    "rollback": ["hpcpolicy rollback --site site.toml            (the one before current)",
                 "hpcpolicy rollback 41 --site site.toml --diff"],
    "promote": ["hpcpolicy promote canary --site site.toml"],
    "diff": ["hpcpolicy diff --site site.toml                (what the last apply changed)",
             "hpcpolicy diff 40 42 --deploy-root /shared/hpcpolicy --class gpu"],
    "audit": ["hpcpolicy audit site.toml",
              "hpcpolicy audit site.toml --image docker.io/library/ubuntu",
              "hpcpolicy audit site.toml --explain --user alice --image quay.io/bio/tool:1",
              "hpcpolicy audit site.toml --format html > audit.html"],
    "subid": ["hpcpolicy subid list --site site.toml",
              "hpcpolicy subid revoke alice --site site.toml",
              "hpcpolicy subid check /etc/subuid"],
    "subid list": ["hpcpolicy subid list --site site.toml",
                   "hpcpolicy subid list --deploy-root /shared/hpcpolicy --format json"],
    "subid show": ["hpcpolicy subid show alice --site site.toml"],
    "subid revoke": ["hpcpolicy subid revoke alice --site site.toml"],
    "subid grant": ["hpcpolicy subid grant alice --site site.toml"],
    "subid reclaim": ["hpcpolicy subid reclaim bob --site site.toml"],
    "subid import": ["hpcpolicy subid import /etc/subuid /etc/subgid --site site.toml",
                     "hpcpolicy subid import old/subuid old/subgid --site site.toml --partial"],
    "subid check": ["hpcpolicy subid check /etc/subuid",
                    "hpcpolicy subid check /etc/subgid --site site.toml"],
    "node": ["hpcpolicy node sync", "hpcpolicy node doctor --format json"],
    "node sync": ["hpcpolicy node sync                      (settings from node.toml)",
                  "hpcpolicy node sync --from /shared/hpcpolicy --check --diff",
                  "hpcpolicy node sync --channel canary --format json"],
    "node doctor": ["hpcpolicy node doctor",
                    "hpcpolicy node doctor --from /shared/hpcpolicy --class gpu"],
    "fleet": ["hpcpolicy fleet status 'node[001-100]' --site site.toml"],
    "fleet status": ["hpcpolicy fleet status 'node[001-100]' --site site.toml",
                     "hpcpolicy fleet status @compute --deploy-root /shared/hpcpolicy "
                     "--format json"],
}


def examples(command: str) -> str:
    return "examples:\n" + "".join(f"  {line}\n" for line in EXAMPLES[command])


def walk(parser: argparse.ArgumentParser,
         path: str = "") -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    """(command path, parser) for every command and subcommand below `parser`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                command = f"{path} {name}".strip()
                yield command, sub
                yield from walk(sub, command)


def _site_option(parser: argparse.ArgumentParser) -> None:
    """A positional SITE becomes optional and `--site SITE` names it too (main resolves)."""
    positional = [a for a in parser._actions if not a.option_strings and a.dest == "site"]
    if not positional or "--site" in parser._option_string_actions:
        return
    positional[0].nargs = "?"
    positional[0].required = False
    parser.add_argument("--site", dest="site_option", metavar="SITE",
                        help="the site file, as an option (same as the positional SITE)")


def decorate(parser: argparse.ArgumentParser) -> None:
    """Descriptions, examples and the --site alias on every command of `parser`."""
    for command, sub in walk(parser):
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        if not sub.description:
            sub.description = DESCRIPTIONS.get(command)
        if command in EXAMPLES:
            sub.epilog = examples(command)
        _site_option(sub)
