"""sysctl.d drop-in for what setuid-free containers need of the kernel.

* `user.max_user_namespaces = runtime.max_user_namespaces` (default 15000, the value Apptainer's
  admin guide gives for EL7, whose default of 0 breaks every unprivileged container).
* `user.max_net_namespaces = N` only when `runtime.max_net_namespaces` is set: 0 is a hardening
  Apptainer recommends, but it also breaks rootless Podman networking and systemd's
  PrivateNetwork, so it is never implied.
* `-kernel.unprivileged_userns_clone = 1`: the Debian/Ubuntu kernel switch (absent upstream and
  on EL, hence the leading `-`, which systemd-sysctl and sysctl.d(5) read as "ignore if the key
  does not exist"; procps `sysctl -p` before 4.0.3 reports it, so apply with `sysctl -e -p`).

`runtime.user_namespaces = false` is the decision to run without user namespaces (a setuid
site). Then `user.max_user_namespaces = 0` and `-kernel.unprivileged_userns_clone = 0`: the count
is the only switch every kernel has, it also stops root's own user namespaces (which such a site
does not rely on), and `max_user_namespaces` is ignored. Ubuntu's
`kernel.apparmor_restrict_unprivileged_userns` is left to the distribution: `node doctor` reports
it rather than this file silently turning a distribution hardening off.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy.model import Policy
from hpcpolicy.render.header import header

PATH = "etc/sysctl.d/90-hpcpolicy.conf"

# Both counts are ints in the kernel (proc_dointvec_minmax, 0..INT_MAX).
_INT_MAX = 2**31 - 1


def settings(policy: Policy) -> List[Tuple[str, int, bool]]:
    """(key, value, optional) in file order; the manifest's sysctl requirements come from here."""
    rt = policy.runtime
    userns = rt.user_namespaces
    count = rt.max_user_namespaces if userns else 0
    out: List[Tuple[str, int, bool]] = [("user.max_user_namespaces", count, False)]
    if rt.max_net_namespaces is not None:
        out.append(("user.max_net_namespaces", rt.max_net_namespaces, False))
    out.append(("kernel.unprivileged_userns_clone", 1 if userns else 0, True))
    return out


def _check(policy: Policy, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT_MAX:
        field = key.split(".", 1)[1]
        raise InvalidInput(
            f"{value!r} is not a count between 0 and {_INT_MAX}",
            file=policy.path,
            path=f"runtime.{field}",
        )
    return value


def render(policy: Policy) -> Dict[str, bytes]:
    """`{"etc/sysctl.d/90-hpcpolicy.conf": bytes}`."""
    lines = []
    for key, value, optional in settings(policy):
        prefix = "-" if optional else ""
        lines.append(f"{prefix}{key} = {_check(policy, key, value)}\n")
    return {PATH: header(policy) + "".join(lines).encode()}
