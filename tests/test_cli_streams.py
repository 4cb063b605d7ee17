"""The command's last word under hostile conditions, run as a real process (`python -m hpcpolicy`).

A closed stdout (EPIPE) ends it silently with exit 1; a full one (/dev/full) with exit 1 and one
line on stderr; read-only, missing and foreign output paths and a non-root user are ordinary
errors naming the path; SIGINT and SIGTERM mid-apply end it with exit 1 and, under
--format json, the one JSON object. Each in text and JSON: one line or one object, no
traceback, nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from hpcpolicy.deploy.lock import DeployLock
from tests.apply_fixtures import fast_dir
from tests.conftest import needs_root
from tests.test_e2e_admin import make_site

FORMATS = ["text", "json"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def hpcpolicy(*args: Any, stdout: Any = subprocess.PIPE, prefix: Optional[List[str]] = None,
              **kw: Any) -> subprocess.Popen:
    argv = (prefix or []) + [sys.executable, "-m", "hpcpolicy", *[str(a) for a in args]]
    return subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, **kw)


def finish(proc: subprocess.Popen) -> Dict[str, Any]:
    out, err = proc.communicate(timeout=60)
    return {"rc": proc.returncode, "out": (out or b"").decode(), "err": err.decode()}


def check_failure(res: Dict[str, Any], fmt: str, rc: int, words: str) -> Dict[str, Any]:
    """Exit `rc`; one line on stderr containing `words`; under json one object, else nothing."""
    assert res["rc"] == rc, res
    assert "Traceback" not in res["err"] and "Exception ignored" not in res["err"], res["err"]
    assert res["err"].count("\n") == 1 and words in res["err"], res["err"]
    if fmt == "json":
        (line,) = res["out"].splitlines()
        obj: Dict[str, Any] = json.loads(line)
        assert obj["failed"] is True and obj["changed"] is False and words in obj["msg"]
        return obj
    assert res["out"] == ""
    return {}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A files-only demo site on a directory every user may read (for the non-root test)."""
    where = fast_dir(tmp_path)
    yield make_site(where)
    shutil.rmtree(where, ignore_errors=True)


# ------------------------------------------------------------------------------ stdout


@pytest.mark.parametrize("fmt", FORMATS)
def test_closed_pipe_is_silent_exit_1(site: Path, fmt: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write gets EPIPE
    try:
        proc = hpcpolicy("validate", site, "--offline", "--format", fmt, stdout=write_end)
    finally:
        os.close(write_end)
    res = finish(proc)
    assert res == {"rc": 1, "out": "", "err": ""}


def test_closed_pipe_during_help_is_silent_exit_1() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = hpcpolicy("apply", "--help", stdout=write_end)
    finally:
        os.close(write_end)
    assert finish(proc) == {"rc": 1, "out": "", "err": ""}


def test_closed_pipe_during_a_stream_is_silent_exit_1(site: Path) -> None:
    """`audit --decisions` writes JSON Lines as it decides: the same rule mid-stream."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = hpcpolicy("audit", site, "--decisions", "--format", "json", stdout=write_end)
    finally:
        os.close(write_end)
    assert finish(proc) == {"rc": 1, "out": "", "err": ""}


def test_closed_stderr_is_no_second_failure(tmp_path: Path) -> None:
    """Nothing to tell a closed stderr: the JSON object and the exit code still arrive."""
    res = finish(hpcpolicy("validate", tmp_path / "nosuch.toml", "--format", "json",
                           preexec_fn=lambda: os.close(2)))
    assert res["rc"] == 2 and json.loads(res["out"])["failed"] is True


def test_closed_stdout_is_silent_exit_1(site: Path) -> None:
    """Started with no stdout at all (`>&-`)."""
    res = finish(hpcpolicy("validate", site, "--offline", "--format", "json", stdout=None,
                           stdin=subprocess.DEVNULL, close_fds=True,
                           preexec_fn=lambda: os.close(1)))
    assert res["rc"] == 1 and res["err"] == ""


@pytest.mark.parametrize("fmt", FORMATS)
def test_full_stdout_is_one_line_exit_1(site: Path, fmt: str) -> None:
    with open("/dev/full", "wb") as full:
        res = finish(hpcpolicy("validate", site, "--offline", "--format", fmt, stdout=full))
    assert res["rc"] == 1
    assert res["err"] == ("hpcpolicy: cannot write to standard output: "
                          "No space left on device\n")


@pytest.mark.parametrize("fmt", FORMATS)
def test_full_stdout_keeps_an_invalid_inputs_exit_2(tmp_path: Path, fmt: str) -> None:
    with open("/dev/full", "wb") as full:
        res = finish(hpcpolicy("validate", tmp_path / "nosuch.toml", "--format", fmt,
                               stdout=full))
    assert res["rc"] == 2 and "Traceback" not in res["err"]
    lines = res["err"].splitlines()
    assert lines[0].endswith("nosuch.toml: cannot read: No such file or directory")
    if fmt == "json":  # text mode has nothing for stdout: its one line went to stderr
        assert lines[1:] == ["hpcpolicy: cannot write to standard output: "
                             "No space left on device"]
    else:
        assert len(lines) == 1


# ------------------------------------------------------------------------------ output paths


@needs_root
@pytest.mark.parametrize("fmt", FORMATS)
def test_read_only_output_path(site: Path, fmt: str) -> None:
    ro = site.parent / "ro"
    ro.mkdir()
    cmd = (f"mount -t tmpfs -o ro none {ro} && exec {sys.executable} -m hpcpolicy "
           f"render {site} --out {ro}/out --format {fmt}")
    res = finish(subprocess.Popen(["unshare", "-m", "sh", "-c", cmd], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE))
    check_failure(res, fmt, 1, f"{ro}/out: Read-only file system")


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_path_below_a_file(site: Path, fmt: str) -> None:
    blocker = site.parent / "blocker"
    blocker.write_text("a file, not a directory\n")
    res = finish(hpcpolicy("render", site, "--out", blocker / "out", "--format", fmt))
    check_failure(res, fmt, 1, f"{blocker}/out")
    assert "Not a directory" in res["err"]
    assert blocker.read_text() == "a file, not a directory\n"


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_deploy_root_parent(site: Path, fmt: str) -> None:
    """A deploy root below a missing, unwritable place: the path and why, nothing created."""
    res = finish(hpcpolicy("status", "--deploy-root", site.parent / "nosuch" / "shared",
                           "--format", fmt))
    check_failure(res, fmt, 1, f"{site.parent}/nosuch/shared: does not exist")


# ------------------------------------------------------------------------------ non-root


@needs_root
@pytest.mark.parametrize("fmt", FORMATS)
def test_non_root_apply_says_so(site: Path, fmt: str) -> None:
    """A root-owned deploy root, apply run as nobody: the path, the reason, and that it is
    not root; nothing published."""
    first = finish(hpcpolicy("apply", site))  # root creates the deploy root
    assert first["rc"] == 0, first
    before = sorted(os.listdir(site.parent / "shared/generations"))
    os.chmod(site.parent, 0o755)
    res = finish(hpcpolicy("apply", site, "--format", fmt, prefix=NOBODY, cwd="/"))
    check_failure(res, fmt, 1, "Permission denied (running as uid 65534, not root)")
    assert str(site.parent / "shared") in res["err"]
    assert sorted(os.listdir(site.parent / "shared/generations")) == before


@needs_root
@pytest.mark.parametrize("fmt", FORMATS)
def test_non_root_render_into_root_owned_dir(site: Path, fmt: str) -> None:
    out = site.parent / "review"
    out.mkdir(mode=0o755)
    res = finish(hpcpolicy("render", site, "--out", out / "tree", "--format", fmt,
                           prefix=NOBODY, cwd="/"))
    check_failure(res, fmt, 1, f"{out}/tree: Permission denied (running as uid 65534, not root)")
    assert os.listdir(out) == []


# ------------------------------------------------------------------------------ signals


def _waits_on(proc: subprocess.Popen, path: Path) -> None:
    """Block until `proc` has `path` open (apply waiting for the deploy lock)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, finish(proc)
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fd")
        except FileNotFoundError:
            fds = []
        for fd in fds:
            try:
                if os.readlink(f"/proc/{proc.pid}/fd/{fd}") == str(path):
                    return
            except OSError:
                continue
        time.sleep(0.02)
    raise AssertionError(f"{proc.args} never opened {path}")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_apply(site: Path, fmt: str, sig: signal.Signals) -> None:
    """apply waits for the deploy lock another writer holds; a signal ends it with exit 1."""
    shared = site.parent / "shared"
    assert finish(hpcpolicy("apply", site))["rc"] == 0
    (site.parent / "passwd").write_text((site.parent / "passwd").read_text()
                                        + "late:x:3999:100::/home/late:/bin/bash\n")
    before = {p: p.read_bytes() for p in shared.rglob("*") if p.is_file()}
    links = {p: os.readlink(p) for p in shared.rglob("*") if p.is_symlink()}
    with DeployLock(str(shared), purpose="test holds the lock"):
        proc = hpcpolicy("apply", site, "--lock-timeout", "120", "--format", fmt)
        _waits_on(proc, shared / ".lock")
        proc.send_signal(sig)
        res = finish(proc)
    obj = check_failure(res, fmt, 1, f"interrupted by {sig.name}")
    if fmt == "json":
        assert obj["generation"] is None and obj["changes"] == []
    after = {p: p.read_bytes() for p in shared.rglob("*") if p.is_file()}
    assert after == before  # nothing written: no ledger, no generation, no temp file
    assert {p: os.readlink(p) for p in shared.rglob("*") if p.is_symlink()} == links


# ------------------------------------------------------------------------------ --format


@pytest.mark.parametrize("argv, as_json", [
    (["--form", "json"], True),            # an abbreviation argparse accepts
    (["--format=json"], True),
    (["--format", "json", "--format", "text"], False),  # the last one wins, as in argparse
    (["--format", "text", "--format", "json"], True),
])
def test_json_is_what_argparse_parsed(cli: Any, tmp_path: Path, argv: List[str],
                                      as_json: bool) -> None:
    res = cli("validate", tmp_path / "nosuch.toml", *argv)
    assert res.rc == 2 and "nosuch.toml" in res.err
    if as_json:
        assert json.loads(res.out)["failed"] is True
    else:
        assert res.out == ""


def test_usage_error_abbreviated_json(cli: Any) -> None:
    """argv that does not parse: --format json is still honoured, abbreviated too."""
    res = cli("validate", "--form", "json", "--no-such-option")
    assert res.rc == 2 and json.loads(res.out)["failed"] is True
