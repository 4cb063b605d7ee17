"""Smaller trust findings, each test written as the attack: hostile timeouts, terminal escapes
from the ledger and the lock file, a planted `render --out` link, look-alike paths, oversized
node sets, a byte-order mark, root as a sub-ID user, and unbounded echoed input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import tomli_w

from hpcpolicy.errors import InvalidInput, printable
from hpcpolicy.policy.cautions import cautions
from hpcpolicy.policy.load import load_text
from hpcpolicy.subid.ledger import LEDGER_RELPATH, load_ledger
from tests.apply_fixtures import write_directory, write_site
from tests.conftest import REPO, CliResult
from tests.deploy_fixtures import ledger_root

Cli = Callable[..., CliResult]
ESC = "\x1b[2J\x1b[31mPWNED"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return ledger_root(tmp_path, [1000, 1001])


def _edit_ledger(root: Path, change: Callable[[dict], None]) -> None:
    path = root / LEDGER_RELPATH
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


# --- --lock-timeout ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_lock_timeout_must_be_finite(cli: Cli, tmp_path: Path, root: Path, value: str) -> None:
    """`--lock-timeout nan` used to wait for ever behind a held lock (nan never passes a
    deadline): every command that takes the lock refuses it at once, exit 2."""
    files = write_directory(tmp_path / "dir", 2)
    site = write_site(tmp_path / "site", root, files)
    for argv in (("apply", site, "--check"),
                 ("subid", "revoke", "u1001", "--deploy-root", root),
                 ("node", "sync", "--from", root, "--root", tmp_path / "node")):
        res = cli(*argv, "--lock-timeout", value, "--format", "json")
        assert res.rc == 2, (argv, res.out, res.err)
        assert "not a number of seconds" in json.loads(res.out)["msg"]


def test_lock_timeout_checked_by_the_library_too(tmp_path: Path) -> None:
    from hpcpolicy.deploy.lock import DeployLock
    from hpcpolicy.errors import UsageError

    with pytest.raises(UsageError):
        DeployLock(str(tmp_path), float("nan"))


# --- the ledger and the lock file are untrusted text ---------------------------------------


def test_ledger_name_with_trailing_newline_refused(root: Path) -> None:
    def rename(doc: dict) -> None:
        doc["records"][0]["name"] = doc["records"][0]["name"] + "\n"

    _edit_ledger(root, rename)
    with pytest.raises(InvalidInput):
        load_ledger(str(root), None)


def test_ledger_history_escape_sequences_not_printed_raw(cli: Cli, root: Path) -> None:
    def poison(doc: dict) -> None:
        doc["records"][1]["history"][0]["detail"] = ESC + "\nFAKE LINE"

    _edit_ledger(root, poison)
    res = cli("subid", "show", "u1001", "--deploy-root", root)
    assert res.rc == 0, res.err
    assert "\x1b" not in res.out and "\\x1b[2J" in res.out
    assert "\nFAKE LINE" not in res.out


def test_lock_holder_text_not_printed_raw(cli: Cli, root: Path) -> None:
    """Whoever holds the lock writes its holder record: a pid of escape sequences and a fake
    line must reach the terminal escaped."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, json, os, time\n"
         f"fd = os.open({str(root / '.lock')!r}, os.O_RDWR | os.O_CREAT, 0o644)\n"
         "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
         f"os.write(fd, json.dumps({{'pid': {ESC + chr(10) + 'hpcpolicy: FAKE LINE'!r}, "
         "'host': 'h'}).encode())\n"
         "print('held', flush=True)\n"
         "time.sleep(30)\n"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        res = cli("subid", "revoke", "u1001", "--deploy-root", root, "--lock-timeout", "0.2")
    finally:
        holder.kill()
        holder.wait()
    assert res.rc == 1
    assert "\x1b" not in res.err and "\\x1b[2J" in res.err, res.err
    assert not any(line.startswith("hpcpolicy: FAKE LINE") for line in res.err.splitlines())


def test_printable_escapes_and_cuts() -> None:
    assert printable("a\x1b[31mb\u202ec") == "a\\x1b[31mb\\u202ec"
    assert printable("x" * 300, 10) == "xxxxxxxxxx... (290 more characters)"
    assert printable("a\nb", None, keep="\n") == "a\nb"


# --- render --out --------------------------------------------------------------------------


def _site(tmp_path: Path) -> Path:
    files = write_directory(tmp_path / "dir", 1)
    return write_site(tmp_path / "site", tmp_path / "deploy-unused", files)


def test_render_out_symlink_refused(cli: Cli, tmp_path: Path) -> None:
    """`--out /tmp/x` with /tmp/x -> /etc wrote /etc/etc/... as root."""
    victim = tmp_path / "victim"
    victim.mkdir()
    link = tmp_path / "out"
    link.symlink_to(victim)
    res = cli("render", _site(tmp_path), "--out", link)
    assert res.rc == 2 and "symbolic link" in res.err
    assert list(victim.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a link to nobody")
def test_render_out_below_a_link_planted_by_another_user(cli: Cli, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    sticky = tmp_path / "scratch"
    sticky.mkdir(mode=0o1777)
    sticky.chmod(0o1777)
    planted = sticky / "mine"
    planted.symlink_to(victim)
    os.lchown(planted, 65534, 65534)  # as if nobody had made it in the sticky directory
    res = cli("render", _site(tmp_path), "--out", planted / "tree")
    assert res.rc == 2 and "owned by uid 65534" in res.err, res.err
    assert list(victim.iterdir()) == []
    own = tmp_path / "own"
    own.symlink_to(victim)  # a link the caller made is the caller's business
    assert cli("render", _site(tmp_path), "--out", own / "tree").rc == 0


# --- the site file -------------------------------------------------------------------------


BASE = {"schema": 1, "site": {"name": "t", "deploy_root": "/srv/d"}}


def load(**sections: object) -> object:
    return load_text(tomli_w.dumps({**BASE, **sections}), "site.toml", "/")


@pytest.mark.parametrize("target", ["/pr\u043ec", "/\uff45tc", "/opt/caf\u00e9"])
def test_non_ascii_bind_target_refused(target: str) -> None:
    with pytest.raises(InvalidInput) as info:
        load(bind=[{"source": "/scratch", "target": target}])
    assert "bind[1].target" in str(info.value) and "U+" in str(info.value)


def test_dangerous_and_non_ascii_sources_warned() -> None:
    pol = load(bind=[{"source": "/", "target": "/host"},
                     {"source": "/etc/shadow", "target": "/x/shadow"},
                     {"source": "/data/caf\u00e9", "target": "/cafe"},
                     {"source": "/scratch"}])
    got = [str(w) for w in cautions(pol)]  # type: ignore[arg-type]
    assert any("bind[1].source" in w and "whole file system" in w for w in got)
    assert any("bind[2].source" in w and "password hashes" in w for w in got)
    assert any("bind[3].source" in w and "U+00E9" in w for w in got)
    assert not any("bind[4]" in w for w in got)


def test_multi_dimensional_node_set_bound() -> None:
    with pytest.raises(InvalidInput, match="more than 65536 nodes"):
        load(node_class=[{"name": "a", "nodes": "a[1-20000]b[1-20000]c[1-20000]"}])
    load(node_class=[{"name": "a", "nodes": "a[1-200]b[1-200]"}])


def test_byte_order_mark_gets_a_clear_message(cli: Cli, tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_bytes(b"\xef\xbb\xbf" + tomli_w.dumps(BASE).encode())
    res = cli("validate", site, "--offline")
    assert res.rc == 2 and "byte-order mark" in res.err


def test_min_uid_zero_refused_low_warned() -> None:
    with pytest.raises(InvalidInput, match="directory.min_uid: must be at least 1"):
        load(directory={"min_uid": 0})
    warned = [str(w) for w in cautions(load(directory={"min_uid": 500}))]  # type: ignore[arg-type]
    assert any("directory.min_uid" in w and "system accounts" in w for w in warned)


def test_error_echo_of_unbounded_input_is_cut(cli: Cli, tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    (d / "passwd").write_text("u:x:" + "9" * 100000 + ":100::/h:/bin/sh\n")
    (d / "group").write_text("g:x:100:\n")
    site = write_site(tmp_path / "site", tmp_path / "deploy", (str(d / "passwd"),
                                                               str(d / "group")))
    res = cli("validate", site)
    assert res.rc == 2 and "more characters" in res.err and len(res.err) < 2000, len(res.err)


def test_site_file_echo_of_unbounded_input_is_cut(cli: Cli, tmp_path: Path) -> None:
    """A 100,000-character key or scope used to come back whole in the message."""
    site = tmp_path / "site.toml"
    site.write_text(tomli_w.dumps({**BASE, "runtime": {"apptainer": {"x" * 100000: "y"}},
                                   "images": {"rule": [{"scope": "r.example.org/" + "X" * 100000,
                                                        "action": "allow"}]}}))
    res = cli("validate", site, "--offline", "--format", "json")
    assert res.rc == 2
    errors = json.loads(res.out)["errors"]
    assert len(errors) == 2 and all("more characters" in e and len(e) < 3000 for e in errors)


def test_log_lines_escape_control_characters() -> None:
    import logging

    from hpcpolicy.cli.logfmt import PrintableFormatter

    record = logging.LogRecord("hpcpolicy", logging.WARNING, __file__, 1,
                               "holder %s", (ESC,), None)
    line = PrintableFormatter("hpcpolicy: %(message)s").format(record)
    assert "\x1b" not in line and line == "hpcpolicy: holder \\x1b[2J\\x1b[31mPWNED"
