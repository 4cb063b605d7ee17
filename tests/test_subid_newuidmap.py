"""A rendered /etc/subuid honoured by the real consumers: setuid newuidmap/newgidmap,
util-linux `unshare --map-auto` and shadow's `getsubids`.

Runs in a private mount namespace where tmp copies of passwd, group, subuid and subgid are
bind-mounted over /etc (the host's files are never touched), as a throwaway user that exists
only in that namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

from hpcpolicy.render.subid import render
from hpcpolicy.subid.allocate import allocate
from tests.conftest import needs_root
from tests.subid_fixtures import policy, snap, user

pytestmark = [needs_root, pytest.mark.root]
TOOLS = ("unshare", "setpriv", "newuidmap", "newgidmap", "getsubids")
UIDS = (4241, 4242, 4243)


@pytest.fixture(scope="module")
def tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {missing} (Debian: uidmap, util-linux)")
    for etc in ("/etc/subuid", "/etc/subgid", "/etc/passwd", "/etc/group"):
        if not os.path.isfile(etc):
            pytest.skip(f"{etc} missing: nothing to bind-mount over")


def _in_namespace(tmp: Path, files: Dict[str, bytes], script: str) -> subprocess.CompletedProcess:
    """Run `script` (sh) as root in a private mount namespace with `files` over /etc."""
    etc = tmp / "etc"
    etc.mkdir(exist_ok=True)
    binds: List[str] = []
    for name, data in files.items():
        (etc / name).write_bytes(data)
        os.chmod(etc / name, 0o644)
        binds.append(f"mount --bind {etc / name} /etc/{name}")
    full = "set -u\n" + "\n".join(binds) + "\n" + textwrap.dedent(script)
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", full],
        capture_output=True, text=True, timeout=60)


def _identity() -> Dict[str, bytes]:
    passwd = "root:x:0:0:root:/root:/bin/sh\n" + "".join(
        f"hpcsub{uid}:x:{uid}:{uid}::/nonexistent:/bin/sh\n" for uid in UIDS)
    group = "root:x:0:\n" + "".join(f"hpcsub{uid}:x:{uid}:\n" for uid in UIDS)
    return {"passwd": passwd.encode(), "group": group.encode()}


def _as(uid: int, command: str) -> str:
    return f"setpriv --reuid={uid} --regid={uid} --init-groups {command}"


@pytest.mark.parametrize("key", ["uid", "name"])
def test_rendered_files_are_honoured(tmp_path: Path, tools: None, key: str) -> None:
    pol = policy(key=key, start=524288, count=65536)
    res = allocate(pol, snap([user(f"hpcsub{u}", u) for u in UIDS]), None, now="t")
    mine = next(a for a in res.allocations if a.uid == 4242)
    assert mine.start == 524288 + 65536  # the middle line: others before and after it
    tree = render(pol, res.allocations)
    files = {**_identity(), "subuid": tree["etc/subuid"], "subgid": tree["etc/subgid"]}
    s, c = mine.start, mine.count
    auto = _as(4242, "unshare --user --map-auto cat /proc/self/uid_map /proc/self/gid_map")
    too_many = _as(4242, f"newuidmap $child 0 4242 1 1 {s} {c + 1}")
    neighbour = _as(4242, f"newuidmap $child 0 4242 1 1 {s - c} {c}")
    proc = _in_namespace(tmp_path, files, f"""
        echo "== map-auto"; {auto}
        echo "== getsubids"; getsubids hpcsub4242; getsubids -g hpcsub4242
        {_as(4242, "unshare --user sleep 20")} &
        pid=$!; sleep 0.3
        child=$(pgrep -P $pid || echo $pid)
        echo "== exact"; {_as(4242, f"newuidmap $child 0 4242 1 1 {s} {c}")} && echo uid-ok
        {_as(4242, f"newgidmap $child 0 4242 1 1 {s} {c}")} && echo gid-ok
        cat /proc/$child/uid_map
        kill $pid 2>/dev/null; wait 2>/dev/null
        {_as(4242, "unshare --user sleep 20")} &
        pid=$!; sleep 0.3
        child=$(pgrep -P $pid || echo $pid)
        echo "== one too many"; {too_many} || echo refused-too-many
        echo "== neighbour"; {neighbour} || echo refused-neighbour
        kill $pid 2>/dev/null; wait 2>/dev/null
        true
    """)
    out = proc.stdout
    assert proc.returncode == 0, (out, proc.stderr)
    map_auto = out.split("== map-auto")[1].split("== getsubids")[0].split()
    assert map_auto == ["0", str(s), str(c), "0", str(s), str(c)], out
    assert f"0: hpcsub4242 {s} {c}" in out or f"0: 4242 {s} {c}" in out, out
    assert "uid-ok" in out and "gid-ok" in out, (out, proc.stderr)
    assert f"1 {s} {c}".split() == out.split("gid-ok")[1].split()[3:6], out
    assert "refused-too-many" in out and "refused-neighbour" in out, (out, proc.stderr)
    assert "not allowed" in proc.stderr


def test_user_without_a_line_is_refused(tmp_path: Path, tools: None) -> None:
    pol = policy(start=524288)
    res = allocate(pol, snap([user("hpcsub4241", 4241)]), None, now="t")
    tree = render(pol, res.allocations)
    files = {**_identity(), "subuid": tree["etc/subuid"], "subgid": tree["etc/subgid"]}
    proc = _in_namespace(tmp_path, files, f"""
        {_as(4242, "unshare --user --map-auto true")} && echo mapped || echo refused
        getsubids hpcsub4242 || echo none
    """)
    assert "refused" in proc.stdout and "none" in proc.stdout, (proc.stdout, proc.stderr)
    assert 'no line matching user "hpcsub4242"' in proc.stderr
