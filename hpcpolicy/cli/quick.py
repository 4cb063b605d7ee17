"""The timer's `node sync` when nothing changed, answered before argparse is even imported.

Every node runs `hpcpolicy node sync` every few minutes and nearly always nothing changed;
then the run costs little more than Python's own start-up, and argparse with the rest of the
CLI (argparse, gettext, locale, every module `cli.main` pulls in) would be most of it. So
`cli.entry` hands a `node sync` command line to `run_idle` first:

* only the plain spellings of the options an idle sync can take are understood here
  (`--from X`, `--from=X`, `--root`, `--config`, `--deploy-owner`, `--allowed-signers`,
  `--class`, `--channel`, `--format text|json`, `--check`, `--no-reload`, `--debug`, `-v`);
  anything else (an abbreviation, `--help`, `--lock-timeout`, `--diff`, a typo) returns None;
* any error at all returns None too, and so does a sync that has work to do (the library's
  one `node.sync.sync` call, whose `before_full` hook hands the command over before the full
  sync starts);

and None means the normal CLI runs the command from the start: it parses with argparse,
reports errors through the funnel, and does the work. What this prints is what the normal CLI
prints for the same idle result (same Outcome, same `report.success` and `report.deliver`).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing: see node/idle.py
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Union

    Parsed = Dict[str, Union[str, bool, None]]


VALUED = {"--config": "config", "--from": "deploy_root", "--deploy-owner": "deploy_owner",
          "--root": "root", "--allowed-signers": "allowed_signers", "--class": "node_class",
          "--channel": "channel", "--format": "format"}
FLAGS = {"--check": "check", "--no-reload": "no_reload", "--debug": "debug", "-v": "verbose",
         "--verbose": "verbose"}



def parse(argv: List[str]) -> Optional[Parsed]:
    """The options of `node sync ...` in their plain spellings, or None (leave it to argparse)."""
    if argv[:2] != ["node", "sync"]:
        return None
    out: Parsed = {key: None for key in VALUED.values()}
    out.update({key: False for key in FLAGS.values()})
    out.update(root="/", format="text")
    i = 2
    while i < len(argv):
        arg = argv[i]
        if arg in FLAGS:
            out[FLAGS[arg]] = True
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name not in VALUED:
            return None
        if not eq:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
        i += 1 if eq else 2
        if not value or value.startswith("-"):
            return None
        out[VALUED[name]] = value
    return out if out["format"] in ("text", "json") else None


def _text(value: Union[str, bool, None]) -> Optional[str]:
    return value if isinstance(value, str) else None


class _HandOver(Exception):
    """The sync has work to do: the full CLI runs the command (logging, argparse, funnel)."""


def _hand_over() -> None:
    raise _HandOver


def run_idle(argv: List[str]) -> Optional[int]:
    """The exit code of an idle `node sync` (its report written), or None: run the full CLI."""
    options = parse(argv)
    if options is None:
        return None
    from hpcpolicy.interrupt import Interrupted

    as_json, debug = options["format"] == "json", bool(options["debug"])
    try:
        from hpcpolicy.node import config
        from hpcpolicy.node.sync import as_text, describe, sync, sync_options

        opts = sync_options(
            config.load(_text(options["config"]), root=str(options["root"])),
            deploy_root=_text(options["deploy_root"]),
            deploy_owner=_text(options["deploy_owner"]),
            allowed_signers=_text(options["allowed_signers"]),
            node_class=_text(options["node_class"]), channel=_text(options["channel"]),
            root=str(options["root"]), check=bool(options["check"]),
            reload=not options["no_reload"])
        result = sync(opts, before_full=_hand_over)
    except _HandOver:
        return None
    except Interrupted as err:  # a signal: the command's own report, as the CLI would give
        from hpcpolicy.cli.report import deliver, failure

        return deliver(failure(err, as_json, debug, {"generation": None, "changes": []}), debug)
    except Exception:  # noqa: BLE001 - the full CLI repeats the checks and reports the error
        return None
    from hpcpolicy.cli.outcome import Outcome
    from hpcpolicy.cli.report import deliver, success
    from hpcpolicy.cli.signals import quiet_signals

    outcome = Outcome(msg=result.msg, data=describe(result), text=as_text(result),
                      changed=result.changed, notes=[str(e) for e in result.errors])
    report = success(outcome, as_json)
    quiet_signals()
    return deliver(report, debug)
