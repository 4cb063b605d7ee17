"""`audit.run`: the one library call behind `hpcpolicy audit` (the CLI only formats its result).

It loads the site, reads the directory the one checked way render and apply read it
(`deploy.plan.checked_snapshot`: the same problems refused, the same LDAP deadline, the same
referral warnings), observes the collection paths the targets need, and answers one of three
questions:

* `explain` (`user` and `image`): one decision with every detail;
* `user` alone: that user's decisions;
* otherwise the report by access profile (summary, findings, image x profile matrix), also for
  `image` or `group` alone (who may run this image, by profile).

`AuditResult.msg` and `AuditResult.as_dict()` are the one-line answer and the JSON object of
`--format json`, so a site's own script gets what the command prints. The full cross product
(`--decisions`) is `decisions(result)`, a generator: it never holds more than the report and
one decision.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional

from hpcpolicy import __version__
from hpcpolicy.access.targets import Target, default_targets, parse_target, paths_to_observe
from hpcpolicy.audit import enforce
from hpcpolicy.audit.context import (
    AuditDecision,
    Context,
    Observation,
    make_context,
    select_users,
)
from hpcpolicy.audit.decide import audit
from hpcpolicy.audit.enforce import store_paths
from hpcpolicy.audit.matrix import Report, audited_users, build_report, decisions_stream
from hpcpolicy.errors import HpcPolicyError, UsageError
from hpcpolicy.node import mountinfo


@dataclass
class AuditResult:
    """What one audit computed: `decisions` (explain / user) or `report` (by profile).

    `explain` and `image` are the question asked: they choose the answer's message.
    """

    ctx: Context
    obs: Observation
    decisions: List[AuditDecision] = field(default_factory=list)
    report: Optional[Report] = None
    explain: bool = False
    image: Optional[str] = None

    @property
    def site(self) -> str:
        return self.ctx.policy.site.name

    @property
    def msg(self) -> str:
        """The answer in one line: the verdict (explain), the counts (user), or the report's
        (who may run the image, when `image` alone was asked)."""
        from hpcpolicy.audit import report
        from hpcpolicy.audit.profile_report import report_line, who_line

        if self.report is not None:
            return who_line(self.report) if self.image else report_line(self.report)
        if self.explain:
            d = self.decisions[0]
            return f"{d.user} {'may run' if d.allowed else 'may not run'} {d.image} ({d.rule})"
        counts = report.summary(self.decisions)
        return report.summary_line(self.site, self.ctx.node_class, counts)

    def as_dict(self, members: bool = False) -> Dict[str, Any]:
        """The JSON object of the answer (`members`: each access profile's member names)."""
        if self.report is not None:
            return self.report.as_dict(members)
        if self.explain:
            return self.decisions[0].as_dict()
        from hpcpolicy.audit import report

        return {"decisions": report.to_json(self.decisions),
                "summary": report.summary(self.decisions), "site": self.site,
                "class": self.ctx.node_class}


def _target(arg: str, cwd: str) -> Target:
    try:
        return parse_target(arg, cwd)
    except ValueError as err:
        raise UsageError(f"--image {arg}: {err}") from err


def run(
    site: str,
    *,
    user: Optional[str] = None,
    image: Optional[str] = None,
    group: Optional[str] = None,
    node_class: str = "default",
    explain: bool = False,
    cwd: Optional[str] = None,
    now: Optional[datetime] = None,
) -> AuditResult:
    """Audit `site` (see the module docstring); UsageError / InvalidInput for bad input."""
    from hpcpolicy.audit.observe import observe
    from hpcpolicy.deploy.plan import checked_snapshot
    from hpcpolicy.policy.load import load

    if explain and not (user and image):
        raise UsageError("audit --explain needs --user U and --image REF")
    targets = [_target(image, cwd or os.getcwd())] if image else None
    policy = load(site)
    snapshot = checked_snapshot(policy)  # the one way into the directory, as apply reads it
    ctx = make_context(policy, snapshot, node_class)
    chosen = targets or default_targets(policy)
    walk, single = paths_to_observe(policy, chosen)
    single += store_paths(policy, node_class)  # site image stores: audited like collections
    obs = observe(walk, single)
    if user is not None:
        users = select_users(ctx, user, group)
        if not users:
            raise UsageError(f"--user {user} is not a member of --group {group}")
        return AuditResult(ctx, obs, audit(ctx, users, chosen, obs), explain=explain,
                           image=image)
    select_users(ctx, None, group)  # an unknown --group is exit 2
    report = build_report(ctx, chosen, obs, audited_users(ctx, group))
    uid_names = {u.uid: u.name for u in snapshot.users.values()}
    report.findings += enforce.findings(policy, node_class, obs.states, uid_names,
                                        mountinfo.read_mount_points())  # this host's mounts
    report.provenance = provenance(ctx, report, now)
    return AuditResult(ctx, obs, report=report, image=image)


def provenance(ctx: Context, report: Report, now: Optional[datetime] = None) -> Dict[str, Any]:
    """Where a report comes from: what a reader needs to trust (or date) it."""
    from hpcpolicy.deploy.plan import directory_warnings

    when = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    policy = ctx.policy
    return {
        "site": policy.site.name, "class": ctx.node_class, "site file": policy.path,
        "policy sha256": policy.sha256, "time": when, "hpcpolicy": __version__,
        "directory": ", ".join(policy.directory.sources),
        "users": sum(len(p.members) for p in report.profiles),
        "generation": _current(policy.site.deploy_root),
        # what the directory read noticed but did not refuse (LDAP referrals not followed:
        # users there are missing from this report); only when there is something to say
        **({"directory warnings": directory_warnings(ctx.snapshot)}
           if ctx.snapshot.warnings else {}),
    }


def _current(deploy_root: str) -> str:
    """The generation `current` names, when the deploy root is reachable from here (one
    readlink; the audit itself judges the site file and the directory as they are now)."""
    from hpcpolicy.generation.naming import channel_generation

    try:
        name = channel_generation(deploy_root)
    except (HpcPolicyError, OSError):
        name = None
    if name is None:
        return "unknown here (no current generation under site.deploy_root on this host)"
    return f"{name} is current (this audit judges the site file and the directory as they are now)"


def decisions(result: AuditResult) -> Iterator[AuditDecision]:
    """Every (image, user) decision of a report, streamed (`--decisions`)."""
    if result.report is None:
        yield from result.decisions
        return
    yield from decisions_stream(result.ctx, result.report, result.obs)
