#!/usr/bin/env python3
"""Generate the man pages and the bash completion of hpcpolicy from its argparse parser.

Run when the sdist is built (setup.py's sdist command, or the package build scripts): the
output is shipped in the sdist, so builders on distributions without the generator libraries
(EL9 has neither argparse-manpage nor shtab in its base) install it as it is. Never committed:
it is derived from the parser, and writing it by hand would drift.

    packaging/gen-docs.py [OUTDIR]      # default: packaging/generated

OUTDIR/man/hpcpolicy.8 (every command), OUTDIR/man/hpcpolicy-COMMAND.8 (one per command group)
and OUTDIR/bash-completion/hpcpolicy. Needs argparse-manpage (1.x as in Debian 12, or newer)
and shtab >= 1.6 (Debian 12's 1.5.5 completes only the first choice of a positional argument:
`hpcpolicy subid <TAB>` would offer `list` alone), and hpcpolicy importable (this tree is put
first on sys.path). `pip install -e '.[test]'` brings both.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(HERE, "generated")
SECTION = "8"
MIN_SHTAB = (1, 6)


class GenError(Exception):
    """What is missing to generate the pages, said in one line."""


def _shtab():  # type: ignore[no-untyped-def]
    try:
        import shtab
    except ImportError:
        raise GenError("shtab is not installed (pip install 'shtab>=1.6')") from None
    version = tuple(int(p) for p in re.findall(r"\d+", shtab.__version__)[:2])
    if version < MIN_SHTAB:
        raise GenError(f"shtab {shtab.__version__} completes only the first choice of a "
                       "positional argument; need >= 1.6 (pip install 'shtab>=1.6')")
    return shtab


def _manpage_class() -> type:
    try:  # argparse-manpage >= 2
        from argparse_manpage.manpage import Manpage
    except ImportError:
        try:  # argparse-manpage 1.x (Debian 12) names its module build_manpages
            from build_manpages.manpage import Manpage
        except ImportError:
            raise GenError("argparse-manpage is not installed (pip install argparse-manpage, "
                           "or Debian's python3-argparse-manpage)") from None
    return Manpage


def _subcommands(parser: argparse.ArgumentParser) -> List[Tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every command, in `--help` order."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out.append((name, helps.get(name, ""), sub))
    return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("-", "\\-")


def _date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc))
    return when.strftime("%Y-%m-%d")


def _page(parser: argparse.ArgumentParser, name: str, summary: str, version: str,
          see_also: List[str]) -> str:
    """One man page: the library's rendering with our header, NAME line and SEE ALSO."""
    body = str(_manpage_class()(parser))
    lines = body.splitlines()
    header = (f'.TH {name.upper()} {SECTION} "{_date()}" "hpcpolicy {version}" '
              '"System Administration"')
    if lines and lines[0].startswith(".TH"):
        lines[0] = header
    else:
        lines.insert(0, header)
    if ".SH NAME" in lines:
        at = lines.index(".SH NAME") + 1
        lines[at] = f"{_escape(name)} \\- {_escape(summary)}"
    # a text line starting with . or ' would be read as a roff request
    lines = [("\\&" + ln) if ln[:1] in ".'" and not re.match(r"^\.[A-Za-z]{1,2}\b", ln) else ln
             for ln in lines]
    # the library runs a subcommand's usage line into its description: end the paragraph
    out: List[str] = []
    for ln in lines:
        out.append(ln)
        if ln.startswith("usage: "):
            out.append(".PP")
    lines = out
    lines.append(".SH SEE ALSO")
    lines.append(",\n".join(f".BR {_escape(ref)} ({SECTION})" for ref in see_also))
    return "\n".join(lines).rstrip("\n") + "\n"


def generate(out_dir: str) -> Dict[str, str]:
    """Write every page and the completion under out_dir; returns {relative path: text}."""
    sys.path.insert(0, REPO)
    # argparse wraps text at the terminal width and the man page library turns every line
    # break into a hard one (.br): a huge width leaves the paragraph to man to fill
    os.environ["COLUMNS"] = "100000"
    shtab = _shtab()
    _manpage_class()

    from hpcpolicy import __version__
    from hpcpolicy.cli.main import build_parser
    from hpcpolicy.fsutil import atomic_write

    parser = build_parser()
    commands = _subcommands(parser)
    files: Dict[str, str] = {}
    groups = [f"hpcpolicy-{name}" for name, _, _ in commands]
    summary = "keep the container policy of every HPC node in one reviewed site file"
    files[f"man/hpcpolicy.{SECTION}"] = _page(parser, "hpcpolicy", summary, __version__, groups)
    for name, help_text, sub in commands:
        page = f"hpcpolicy-{name}"
        files[f"man/{page}.{SECTION}"] = _page(
            sub, page, help_text or f"the {name} command", __version__, ["hpcpolicy"])
    files["bash-completion/hpcpolicy"] = shtab.complete(parser, shell="bash")
    for rel, text in files.items():
        path = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, text.encode("utf-8"), sync=False)
    return files


def main(argv: List[str]) -> int:
    out_dir = os.path.abspath(argv[0]) if argv else DEFAULT_OUT
    try:
        files = generate(out_dir)
    except GenError as err:
        sys.stderr.write(f"gen-docs: {err}\n")
        return 1
    sys.stderr.write(f"gen-docs: {len(files)} files in {out_dir}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
