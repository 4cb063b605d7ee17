"""[site]: identity, deploy root, retention, runtimes, oldest launcher releases, approval."""

from __future__ import annotations

from typing import Any, Optional

from hpcpolicy.errors import ProblemCollector
from hpcpolicy.policy import directives, paths
from hpcpolicy.policy.model import RUNTIMES, Approval, Site
from hpcpolicy.policy.schema import Field, array, integer, one_of, read_table, string
from hpcpolicy.policy.sections.common import account, named, path, sub_table

DEFAULT = Site(name="", deploy_root="")


def _deploy_root(value: str) -> Optional[str]:
    problem = paths.check_path(value)
    if problem is None and value == "/":
        return "must not be / (use a directory of its own on shared storage)"
    return problem


def _version(dialect: str) -> Any:
    def rule(value: str) -> Optional[str]:
        return directives.check_version(dialect, value)

    return string(rule)


APPROVAL_FIELDS = {
    "pam_service": Field(named(paths.PAM_SERVICE_RE, "PAM service name"), Approval.pam_service),
    "admin_group": Field(account("group name"), Approval.admin_group),
}

FIELDS = {
    "name": Field(named(paths.SITE_NAME_RE, "site name")),
    "deploy_root": Field(string(_deploy_root)),
    "keep": Field(integer(2, 100000), DEFAULT.keep),
    "gc_grace": Field(integer(0, 10**9), DEFAULT.gc_grace),
    "runtimes": Field(
        array(one_of(*RUNTIMES), nonempty=True, unique=True, empty_hint="name at least one"),
        DEFAULT.runtimes,
    ),
    "apptainer_version": Field(_version("apptainer"), DEFAULT.apptainer_version),
    "singularity_version": Field(_version("singularity"), DEFAULT.singularity_version),
    "deploy_owner": Field(account("user name", numeric_ok=True), DEFAULT.deploy_owner),
    "signing_key": Field(path(), None),
    "approval": Field(sub_table(APPROVAL_FIELDS, Approval), None),
}


def parse(raw: Any, out: ProblemCollector) -> Optional[Site]:
    values = read_table(raw, "site", FIELDS, out)
    return None if values is None else Site(**values)


def salvage(raw: Any) -> Optional[Site]:
    """When [site] is invalid: a stand-in carrying its runtimes and releases if THOSE are sound.

    Lets the rules that only need them (bind runtimes, passthrough directives, the fakeroot count)
    still report, without repeating the problems `parse` recorded.
    """
    if not isinstance(raw, dict):
        return None
    scratch = ProblemCollector("")
    keys = ("runtimes", "apptainer_version", "singularity_version")
    values = {k: FIELDS[k].check(raw[k], k, scratch) if k in raw else FIELDS[k].default
              for k in keys}
    if scratch:
        return None
    return Site(name="", deploy_root="", **values)
