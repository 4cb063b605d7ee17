"""Operator approval for every command that publishes or changes the ledger: who is acting,
and may they?

With `[site.approval]` an interactive run proves the operator is who they claim (their
password, through the site's PAM service) and that they belong to `admin_group`; the returned
name is recorded in the manifest and the change log. A non-interactive run (Ansible, a timer)
has nobody to ask: it must declare itself (`--non-interactive`; a missing terminal alone is
refused, so redirecting stdin never skips approval) and sign its generation with
`[site] signing_key`: the signature, not a password, is then the accountable act. Commands
that sign nothing (promote, the ledger commands) are interactive-only under approval.

Decisions, from measurements:

* The PAM service file must exist: a missing one does not fail, PAM silently uses `other`.
* We run as root, so pam_unix reads shadow itself; a non-root caller would get
  PAM_AUTHINFO_UNAVAIL for anyone but itself, which is reported as such.
* python-pam runs `pam_acct_mgmt` after a good password, so expired or locked accounts fail;
  `resetcreds=False` because we check a password, we do not log anyone in.
* Group membership is checked with NSS (`grp`/`pwd`/`os.getgrouplist`), the same view `sudo`
  and `id` have, so directory (sssd/LDAP) groups count as well as /etc/group. It is checked
  before the password is asked: a non-member is refused without typing a secret for nothing.

Messages name the operator and the reason, never the password.
"""

from __future__ import annotations

import getpass
import grp
import logging
import os
import pwd
import sys
from typing import Callable, Optional

from ..errors import RuntimeFailure
from ..policy.model import Approval, Policy

log = logging.getLogger(__name__)

SIGNED_SUFFIX = " (non-interactive, signed)"
PACKAGED_SERVICE = "packaging/pam.d/hpcpolicy"

# PAM return codes worth a specific explanation (security/_pam_types.h).
_PAM_REASONS = {
    7: "wrong password",
    9: "PAM cannot check passwords here (hpcpolicy must run as root)",
    10: "user unknown to PAM",
    12: "password expired: change it first",
    13: "account expired",
}


def authorize(
    policy: Policy,
    interactive: bool,
    *,
    password_prompt: Callable[[str], str] = getpass.getpass,
    service_dir: str = "/etc/pam.d",
) -> str:
    """Return the operator's name once they are allowed to change the deployment.

    `interactive` False: a declared batch run (Ansible, `--non-interactive`), accountable
    through the signature. Raises RuntimeFailure (exit 1) naming the operator and the reason
    when they are not allowed.
    """
    return approve(policy.site.approval, policy.site.signing_key, batch=not interactive,
                   interactive=interactive, password_prompt=password_prompt,
                   service_dir=service_dir)


def approve(
    approval: Optional[Approval],
    signing_key: Optional[str],
    *,
    batch: bool,
    signs: bool = True,
    interactive: Optional[bool] = None,
    password_prompt: Callable[[str], str] = getpass.getpass,
    service_dir: str = "/etc/pam.d",
) -> str:
    """Approval for any writing command, however its deploy root was named.

    `batch`: the run was declared non-interactive; only a command that signs what it publishes
    (`signs`: apply, rollback) may then go ahead, with a signing key. Without the declaration a
    missing terminal is refused: redirecting stdin must not turn approval off. `interactive`
    None: whether stdin is a terminal.
    """
    user = operator_name()
    if approval is None:
        return user
    if batch:
        if not signs:
            raise RuntimeFailure(
                f"operator {user}: [site.approval] is set and this command signs nothing, so a "
                "non-interactive run has nothing to be accountable through; run it from a "
                "terminal")
        return _signed_operator(signing_key, user)
    if not (interactive_session() if interactive is None else interactive):
        hint = (" (a scheduled run declares itself with --non-interactive and signs with "
                "[site] signing_key)") if signs else ""
        raise RuntimeFailure(
            f"operator {user}: [site.approval] is set and there is no terminal to ask for the "
            f"password{hint}")
    _require_service_file(service_dir, approval.pam_service)
    _require_admin(user, approval.admin_group)
    _authenticate(user, approval, password_prompt)
    log.info(
        "operator %s approved (PAM %s, group %s)", user, approval.pam_service, approval.admin_group
    )
    return user


def operator_name() -> str:
    """SUDO_USER when root runs us through sudo, else the login user, else our uid's name.

    Never $LOGNAME or $USER, which anybody sets. SUDO_USER is trusted only when we are root:
    only then did sudo (or root itself) set it. `os.getlogin` is the kernel's login uid (set at
    login by pam_loginuid) or the terminal's utmp entry. Under approval this name is then
    proved by its password.
    """
    sudo_user = os.environ.get("SUDO_USER", "")
    if sudo_user and os.geteuid() == 0:
        return sudo_user
    try:
        return os.getlogin()
    except OSError:
        return pwd.getpwuid(os.getuid()).pw_name


def interactive_session() -> bool:
    """Whether a person can answer a password prompt (stdin is a terminal)."""
    return sys.stdin is not None and sys.stdin.isatty()


def _signed_operator(signing_key: Optional[str], user: str) -> str:
    if signing_key is None:
        raise RuntimeFailure(
            "non-interactive apply needs [site] signing_key when [site.approval] is set"
        )
    log.info("operator %s: non-interactive run, accountable through the signature", user)
    return user + SIGNED_SUFFIX


def _require_service_file(service_dir: str, service: str) -> None:
    if not service or "/" in service or "\0" in service or service in (".", ".."):
        raise RuntimeFailure(f"[site.approval] pam_service {service!r} is not a PAM service name")
    path = os.path.join(service_dir, service)
    if not os.path.isfile(path):
        raise RuntimeFailure(
            f"PAM service file {path} missing: PAM would silently use 'other'; "
            f"install {PACKAGED_SERVICE}"
        )


def _require_admin(user: str, group: str) -> None:
    """Member by the primary gid or as a supplementary member, as NSS reports it."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise RuntimeFailure(f"operator {user}: admin group {group!r} does not exist") from None
    try:
        primary = pwd.getpwnam(user).pw_gid
    except KeyError:
        raise RuntimeFailure(f"operator {user}: no such user") from None
    if gid not in os.getgrouplist(user, primary):
        log.warning("operator %s refused: not a member of %s", user, group)
        raise RuntimeFailure(f"operator {user}: not a member of admin group {group!r}")


def _authenticate(user: str, approval: Approval, password_prompt: Callable[[str], str]) -> None:
    password = _ask(user, password_prompt)
    import pam  # python-pam loads libpam at import: only where approval is configured

    handle = pam.pam()
    try:
        ok = handle.authenticate(user, password, service=approval.pam_service, resetcreds=False)
    except ValueError as err:  # NUL byte in the name or password
        raise RuntimeFailure(f"operator {user}: refused: {err}") from None
    if not ok:
        reason = _PAM_REASONS.get(handle.code, "authentication failed")
        log.warning("operator %s refused by PAM %s: %s", user, approval.pam_service, handle.reason)
        raise RuntimeFailure(
            f"operator {user}: PAM service {approval.pam_service!r} refused: {reason} "
            f"({handle.reason})"
        )


def _ask(user: str, password_prompt: Callable[[str], str]) -> str:
    try:
        password = password_prompt(f"hpcpolicy: password of {user} (approval): ")
    except (EOFError, KeyboardInterrupt):
        raise RuntimeFailure(f"operator {user}: no password given") from None
    if not password:
        raise RuntimeFailure(f"operator {user}: empty password refused")
    return password
