"""The profile report at scale: its size follows profiles x images, not users, and the HTML
page loads in headless Chromium (the real browser) without script errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Tuple

import pytest

from hpcpolicy.audit import api, profile_report
from tests.audit_scale import write_site


def _sizes(work: Path, users: int) -> Tuple[int, int, str]:
    site = write_site(str(work), users)
    result = api.run(site)
    r = result.report
    assert r is not None
    page = profile_report.profile_html(r, "t", profile_report.report_line(r))
    return len(json.dumps(r.as_dict(), sort_keys=True)), len(page), page


def test_report_size_follows_profiles_not_users(tmp_path: Path) -> None:
    small_json, small_html, _ = _sizes(tmp_path / "small", 3000)
    big_json, big_html, _ = _sizes(tmp_path / "big", 30000)
    assert big_json <= 1.5 * small_json and big_html <= 1.5 * small_html
    assert big_html < 1_000_000  # a page a person opens


def test_html_loads_in_chromium(tmp_path: Path) -> None:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium missing (Debian package chromium)")
    _, _, page = _sizes(tmp_path / "site", 30000)
    assert "<link" not in page and "src=" not in page and "http" not in page.split("<body>")[0]
    path = tmp_path / "report.html"
    path.write_text(page)
    home = tmp_path / "home"
    home.mkdir()
    shot = tmp_path / "shot.png"
    argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
            "--window-size=1400,1000", f"--screenshot={shot}", f"file://{path}"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOME": str(home)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # something was painted
    assert "Uncaught" not in res.stderr, res.stderr[-2000:]
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          f"file://{path}"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOME": str(home)})
    assert dom.returncode == 0 and 'id="findings"' in dom.stdout and 'class="mx"' in dom.stdout
    pdf = tmp_path / "report.pdf"  # it prints (the print stylesheet hides the filter box)
    printed = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                              f"--print-to-pdf={pdf}", f"file://{path}"], capture_output=True,
                             text=True, timeout=120, env={**os.environ, "HOME": str(home)})
    assert printed.returncode == 0 and pdf.read_bytes().startswith(b"%PDF")
    assert pdf.stat().st_size < 5_000_000  # no per-cell vector hatching in print
    assert "@media print" in page and ".filter { display: none; }" in page


def test_html_escapes_directory_names() -> None:
    """Group and user names come from a directory the audit does not control."""
    from hpcpolicy.audit.decide import Observation, make_context, parse_target
    from hpcpolicy.audit.matrix import audited_users, build_report
    from hpcpolicy.directory.model import Group, Snapshot, User
    from tests.audit_fixtures import make_policy, rule

    evil = "<img src=x onerror=alert(1)>"
    snap = Snapshot.of([User("a</script><script>alert(2)</script>", 5001, 5001, "files"),
                        User("carol", 5003, 5003, "files")],
                       [Group(evil, 6001, frozenset({"a</script><script>alert(2)</script>"}),
                              "files")])
    p = make_policy([rule("registry.example.org/x", groups=[evil])], runtimes=("podman",))
    ctx = make_context(p, snap)
    r = build_report(ctx, [parse_target("registry.example.org/x/y:1")], Observation(),
                     audited_users(ctx))
    page = profile_report.profile_html(r, "t", "h", members=True)
    assert evil not in page and "<script>alert(2)" not in page
    assert page.count("<script") == 2  # the cell table (JSON) and the filter script only
