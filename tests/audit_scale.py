"""A synthetic site at scale for the audit's size tests and bench/audit.py: USERS users in
GROUPS project groups (each user in one, every 7th in a second), RULES image rules over
registry namespaces (a third of them limited to one of the first NAMED groups, a tenth denies,
one signed scope), and COLLECTIONS collections each limited to one group."""

from __future__ import annotations

import os
from typing import Any, Dict, List

import tomli_w

FIRST_UID = 100000


def write_site(work: str, users: int, groups: int = 20, rules: int = 40,
               collections: int = 2, named: int = 10) -> str:
    """Write passwd, group and site.toml into `work`; return the site file's path."""
    os.makedirs(work, exist_ok=True)
    members: List[List[str]] = [[] for _ in range(groups)]
    lines = ["root:x:0:0:root:/root:/bin/bash"]
    for i in range(users):
        name = f"u{i:06d}"
        lines.append(f"{name}:x:{FIRST_UID + i}:{FIRST_UID + i}::/home/{name}:/bin/bash")
        members[i % groups].append(name)
        if i % 7 == 0:
            members[(i // 7 + 1) % groups].append(name)
    with open(os.path.join(work, "passwd"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    glines = ["root:x:0:"] + [f"proj{g:03d}:x:{5000 + g}:{','.join(m)}"
                              for g, m in enumerate(members)]
    with open(os.path.join(work, "group"), "w") as handle:
        handle.write("\n".join(glines) + "\n")
    image_rules: List[Dict[str, Any]] = []
    for r in range(rules):
        scope = f"registry.example.org/ns{r % 50:02d}/repo{r:04d}"
        rule: Dict[str, Any] = {"scope": scope, "action": "deny" if r % 10 == 9 else "allow"}
        if r % 3 == 1:
            rule["groups"] = [f"proj{r % named:03d}"]
        image_rules.append(rule)
    image_rules.append({"scope": "registry.example.org/ns00", "action": "allow"})
    site = {
        "schema": 1,
        "site": {"name": "scale", "deploy_root": os.path.join(work, "shared"),
                 "runtimes": ["apptainer", "podman"]},
        "directory": {"sources": ["files"], "min_uid": 1000,
                      "files": {"passwd": "passwd", "group": "group"}},
        "subid": {"enabled": False},
        "runtime": {"fakeroot": False},
        "images": {"default": "deny", "local_transports": "deny", "rule": image_rules,
                   "collection": [{"path": f"/shared/containers/c{c:02d}",
                                   "group": f"proj{(named + c) % groups:03d}"}
                                  for c in range(collections)]},
    }
    path = os.path.join(work, "site.toml")
    with open(path, "wb") as handle:
        handle.write(tomli_w.dumps(site).encode())
    return path
