"""Operator approval against a REAL PAM stack (pam_unix) in a private mount namespace.

The namespace gets its own /etc/passwd, /etc/shadow, /etc/group and /etc/pam.d (bind mounts
of files made here, holding the shipped packaging/pam.d/hpcpolicy), so the host's /etc is
never touched. One child process runs every PAM case and reports JSON; the tests below each
check one case. Paths that stop before PAM run in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

from hpcpolicy.deploy import approval
from hpcpolicy.errors import RuntimeFailure
from hpcpolicy.policy.model import Approval, Policy, Site

REPO = Path(__file__).resolve().parent.parent
SERVICE_FILE = REPO / "packaging" / "pam.d" / "hpcpolicy"
PASSWORD = "Corr3ct horse battery"

# name -> (uid, primary group, supplementary admin member?, shadow expire field)
USERS = {
    "hpcop": (61001, "hpcusers", True, ""),
    "hpcprim": (61002, "hpcadmin", False, ""),
    "hpcout": (61003, "hpcusers", False, ""),
    "hpcexp": (61004, "hpcusers", True, "1"),
}
GROUPS = {"hpcusers": 61100, "hpcadmin": 61101}

CHILD = textwrap.dedent(
    """
    import json, os, sys
    import pam
    from hpcpolicy.deploy.approval import authorize
    from hpcpolicy.policy.model import Approval, Policy, Site

    password, out, pam_dir, empty_dir = sys.argv[1:5]

    def policy(key=None):
        site = Site(name="c", deploy_root="/x", signing_key=key, approval=Approval())
        return Policy(path="site.toml", sha256="0", site=site)

    def case(user, answer, interactive=True, key=None, service_dir=pam_dir):
        os.environ["SUDO_USER"] = user
        prompts = []
        def prompt(text):
            prompts.append(text)
            return answer
        try:
            got = {"ok": authorize(policy(key), interactive, password_prompt=prompt,
                                   service_dir=service_dir)}
        except Exception as err:
            got = {"error": type(err).__name__, "message": str(err)}
        got["prompts"] = prompts
        return got

    results = {
        "right": case("hpcop", password),
        "wrong": case("hpcop", password + "x"),
        "primary": case("hpcprim", password),
        "nonmember": case("hpcout", password),
        "expired": case("hpcexp", password),
        "no_service": case("hpcop", password, service_dir=empty_dir),
        "batch_nokey": case("hpcop", password, interactive=False),
        "batch_key": case("hpcop", password, interactive=False, key="/etc/hpcpolicy/key"),
        # why the service-file guard exists: PAM itself falls back to 'other' and says yes
        "raw_missing_service": pam.pam().authenticate(
            "hpcop", password, service="hpcpolicy-no-such-service", resetcreds=False),
    }
    with open(out, "w") as handle:
        json.dump(results, handle)
    """
)


def _hash(password: str) -> str:
    proc = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def _etc_files(root: Path) -> None:
    """Host passwd/group/shadow plus throwaway users and groups; a pam.d with our service."""
    pw_hash = _hash(PASSWORD)
    passwd = [Path("/etc/passwd").read_text().rstrip("\n")]
    shadow = [Path("/etc/shadow").read_text().rstrip("\n")]
    for name, (uid, primary, _admin, expire) in USERS.items():
        passwd.append(f"{name}:x:{uid}:{GROUPS[primary]}::/nonexistent:/bin/sh")
        shadow.append(f"{name}:{pw_hash}:19000:0:99999:7::{expire}:")
    admins = ",".join(n for n, (_u, _p, admin, _e) in USERS.items() if admin)
    group = [Path("/etc/group").read_text().rstrip("\n")]
    group.append(f"hpcusers:x:{GROUPS['hpcusers']}:")
    group.append(f"hpcadmin:x:{GROUPS['hpcadmin']}:{admins}")
    (root / "passwd").write_text("\n".join(passwd) + "\n")
    (root / "group").write_text("\n".join(group) + "\n")
    (root / "shadow").write_text("\n".join(shadow) + "\n")
    (root / "shadow").chmod(0o600)
    pam_dir = root / "pam.d"
    pam_dir.mkdir()
    for name in ("other", "common-auth", "common-account", "common-password", "common-session"):
        if Path("/etc/pam.d", name).is_file():
            shutil.copy(Path("/etc/pam.d", name), pam_dir / name)
    shutil.copy(SERVICE_FILE, pam_dir / "hpcpolicy")
    (root / "empty").mkdir()


@pytest.fixture(scope="module")
def pam_results(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """Run every PAM case once in a private mount namespace; return the JSON results."""
    if os.geteuid() != 0:
        pytest.skip("needs root (unshare --mount, bind mounts over /etc, pam_unix as root)")
    for tool in ("unshare", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    root = tmp_path_factory.mktemp("pamns")
    _etc_files(root)
    script, out = root / "child.py", root / "out.json"
    script.write_text(CHILD)
    mounts = " && ".join(
        f"mount --bind {root / name} /etc/{name}" for name in ("passwd", "group", "shadow", "pam.d")
    )
    shell = f'{mounts} && exec "$0" "$@"'
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, sys.executable]
    cmd += [str(script), PASSWORD, str(out), "/etc/pam.d", str(root / "empty")]
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result: Dict[str, Any] = json.loads(out.read_text())
    return result


def _refusal(result: Dict[str, Any]) -> str:
    assert "ok" not in result, result
    assert result["error"] == "RuntimeFailure", result
    return str(result["message"])


def test_member_with_right_password_is_approved(pam_results: Dict[str, Any]) -> None:
    assert pam_results["right"]["ok"] == "hpcop"
    assert pam_results["right"]["prompts"] == ["hpcpolicy: password of hpcop (approval): "]


def test_member_by_primary_group_is_approved(pam_results: Dict[str, Any]) -> None:
    assert pam_results["primary"]["ok"] == "hpcprim"


def test_wrong_password_is_refused_without_echoing_it(pam_results: Dict[str, Any]) -> None:
    message = _refusal(pam_results["wrong"])
    assert message.startswith("operator hpcop: PAM service 'hpcpolicy' refused: wrong password")
    assert PASSWORD not in message


def test_non_member_is_refused_before_any_password_prompt(pam_results: Dict[str, Any]) -> None:
    message = _refusal(pam_results["nonmember"])
    assert message == "operator hpcout: not a member of admin group 'hpcadmin'"
    assert pam_results["nonmember"]["prompts"] == []


def test_expired_account_is_refused_by_account_management(pam_results: Dict[str, Any]) -> None:
    """The right password is not enough: pam_acct_mgmt runs and sees the expiry."""
    assert "account expired" in _refusal(pam_results["expired"])


def test_missing_service_file_is_refused(pam_results: Dict[str, Any]) -> None:
    message = _refusal(pam_results["no_service"])
    assert "PAM would silently use 'other'; install packaging/pam.d/hpcpolicy" in message
    assert pam_results["no_service"]["prompts"] == []


def test_pam_itself_would_silently_accept_a_missing_service(
    pam_results: Dict[str, Any],
) -> None:
    """Evidence for the guard above: without it, a typo in pam_service still says yes."""
    if not Path("/etc/pam.d/other").is_file():
        pytest.skip("host has no /etc/pam.d/other to fall back to")
    assert pam_results["raw_missing_service"] is True


def test_non_interactive_needs_a_signing_key(pam_results: Dict[str, Any]) -> None:
    assert _refusal(pam_results["batch_nokey"]) == (
        "non-interactive apply needs [site] signing_key when [site.approval] is set"
    )
    assert pam_results["batch_key"]["ok"] == "hpcop (non-interactive, signed)"
    assert pam_results["batch_key"]["prompts"] == []


# --- in-process: paths that end before PAM is called -------------------------------------


def _policy(approval_: Optional[Approval], key: Optional[str] = None) -> Policy:
    site = Site(name="c", deploy_root="/x", signing_key=key, approval=approval_)
    return Policy(path="site.toml", sha256="0", site=site)


def _no_prompt(text: str) -> str:
    raise AssertionError(f"unexpected password prompt: {text}")


@pytest.fixture
def as_root_user(monkeypatch: pytest.MonkeyPatch) -> str:
    """Act as the operator `root` (an account every host has, in group `root`)."""
    if os.geteuid() != 0:
        pytest.skip("SUDO_USER is honoured only when running as root")
    monkeypatch.setenv("SUDO_USER", "root")
    return "root"


def test_without_approval_the_operator_is_just_named(as_root_user: str) -> None:
    assert approval.authorize(_policy(None), True, password_prompt=_no_prompt) == "root"
    assert approval.authorize(_policy(None), False, password_prompt=_no_prompt) == "root"


def test_sudo_user_names_the_operator_when_root(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    monkeypatch.setenv("SUDO_USER", "alice")
    assert approval.operator_name() == "alice"


def test_sudo_user_is_ignored_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone can set SUDO_USER; only sudo running us as root makes it meaningful."""
    monkeypatch.setenv("SUDO_USER", "alice")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getlogin", lambda: "bob")
    assert approval.operator_name() == "bob"


def test_without_login_name_the_uid_names_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)

    def no_tty() -> str:
        raise OSError(6, "No such device or address")

    monkeypatch.setattr(os, "getlogin", no_tty)
    import pwd

    assert approval.operator_name() == pwd.getpwuid(os.getuid()).pw_name


def test_missing_service_file_message_names_the_path(tmp_path: Path, as_root_user: str) -> None:
    pol = _policy(Approval(pam_service="hpcpolicy", admin_group="root"))
    with pytest.raises(RuntimeFailure) as info:
        approval.authorize(pol, True, password_prompt=_no_prompt, service_dir=str(tmp_path))
    assert str(info.value) == (
        f"PAM service file {tmp_path}/hpcpolicy missing: PAM would silently use 'other'; "
        "install packaging/pam.d/hpcpolicy"
    )
    assert info.value.exit_code == 1


@pytest.mark.parametrize("service", ["../shadow", "", "a/b"])
def test_service_name_that_is_a_path_is_refused(
    tmp_path: Path, as_root_user: str, service: str
) -> None:
    pol = _policy(Approval(pam_service=service, admin_group="root"))
    with pytest.raises(RuntimeFailure, match="is not a PAM service name"):
        approval.authorize(pol, True, password_prompt=_no_prompt, service_dir=str(tmp_path))


def _service_dir(tmp_path: Path) -> str:
    shutil.copy(SERVICE_FILE, tmp_path / "hpcpolicy")
    return str(tmp_path)


def test_unknown_admin_group_is_refused(tmp_path: Path, as_root_user: str) -> None:
    pol = _policy(Approval(admin_group="hpcpolicy-no-such-group"))
    with pytest.raises(RuntimeFailure, match="admin group 'hpcpolicy-no-such-group' does not"):
        approval.authorize(
            pol, True, password_prompt=_no_prompt, service_dir=_service_dir(tmp_path)
        )


def _raising(exc: BaseException) -> Callable[[str], str]:
    def prompt(text: str) -> str:
        raise exc

    return prompt


@pytest.mark.parametrize(
    "prompt, reason",
    [
        (_raising(EOFError()), "no password given"),
        (_raising(KeyboardInterrupt()), "no password given"),
        (lambda text: "", "empty password refused"),
    ],
)
def test_no_or_empty_password_is_refused_before_pam(
    tmp_path: Path, as_root_user: str, prompt: Callable[[str], str], reason: str
) -> None:
    pol = _policy(Approval(admin_group="root"))
    with pytest.raises(RuntimeFailure, match=f"^operator root: {reason}$"):
        approval.authorize(pol, True, password_prompt=prompt, service_dir=_service_dir(tmp_path))


def test_interactive_session_follows_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stdin:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    calls: List[bool] = []
    for tty in (True, False):
        monkeypatch.setattr(sys, "stdin", Stdin(tty))
        calls.append(approval.interactive_session())
    assert calls == [True, False]
