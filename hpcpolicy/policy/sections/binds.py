"""[[bind]]: the global bind-mount table, in file order.

A bind's `target` defaults to its `source` and its `runtimes` to `site.runtimes`; both are filled
in by `resolve` once [site] is known. Rules: forbidden targets, runtime capabilities (only Enroot
can skip a missing source; Apptainer and SingularityCE cannot bind read-only), and no two binds
of one runtime on one node class with the same target.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hpcpolicy.errors import ProblemCollector
from hpcpolicy.policy import paths
from hpcpolicy.policy.model import RUNTIMES, Bind
from hpcpolicy.policy.schema import Field, array, boolean, one_of, read_table
from hpcpolicy.policy.sections.common import bind_target, named, path

NO_READONLY = ("apptainer", "singularity")  # `bind path` has no read-only form
CAN_SKIP = ("enroot",)  # only Enroot's fstab has nofail

FIELDS = {
    "source": Field(path()),
    "target": Field(bind_target(), None),
    "readonly": Field(boolean(), False),
    "required": Field(boolean(), True),
    "runtimes": Field(
        array(one_of(*RUNTIMES), nonempty=True, unique=True,
              empty_hint="leave it out for all of site.runtimes"),
        None,
    ),
    "classes": Field(
        array(named(paths.CLASS_NAME_RE, "node class name"), nonempty=True, unique=True,
              empty_hint="leave it out for every node class"),
        (),
    ),
}

Indexed = Tuple[int, Bind]


def parse_one(raw: Any, where: str, index: int, out: ProblemCollector) -> Optional[Indexed]:
    values = read_table(raw, where, FIELDS, out)
    if values is None:
        return None
    if values["target"] is None:
        problem = paths.check_bind_target(values["source"])
        if problem is not None:
            out.add(f"{where}.source", f"{problem} (it is also the target: bind.target is absent)")
            return None
        values["target"] = values["source"]
    values["runtimes"] = values["runtimes"] or ()
    return index, Bind(**values)


def resolve(binds: Sequence[Indexed], site_runtimes: Sequence[str], classes: Sequence[str],
            out: ProblemCollector) -> List[Indexed]:
    """Fill in default runtimes and check everything that needs [site] and [[node_class]]."""
    done: List[Indexed] = []
    for index, bind in binds:
        where = f"bind[{index}]"
        if not bind.runtimes:
            bind = replace(bind, runtimes=tuple(site_runtimes))
        if _check(bind, where, site_runtimes, classes, out):
            done.append((index, bind))
    if len(done) == len(binds):
        _check_duplicates(done, out)
    return done


def _check(bind: Bind, where: str, site_runtimes: Sequence[str], classes: Sequence[str],
           out: ProblemCollector) -> bool:
    ok = True
    for i, runtime in enumerate(bind.runtimes, 1):
        if runtime not in site_runtimes:
            out.add(f"{where}.runtimes[{i}]", f"{runtime!r} is not in site.runtimes")
            ok = False
    for i, name in enumerate(bind.classes, 1):
        if name not in classes:
            out.add(f"{where}.classes[{i}]", f"node class {name!r} is not declared "
                    "([[node_class]] names, or \"default\")")
            ok = False
    readonly_bad = [r for r in bind.runtimes if r in NO_READONLY]
    if bind.readonly and readonly_bad:
        out.add(f"{where}.readonly", f"{', '.join(readonly_bad)} cannot bind read-only "
                "(its `bind path` has no read-only form): drop it from this bind's runtimes")
        ok = False
    skip_bad = [r for r in bind.runtimes if r not in CAN_SKIP]
    if not bind.required and skip_bad:
        out.add(f"{where}.required", f"false needs runtimes = [\"enroot\"]: {', '.join(skip_bad)} "
                "cannot skip a missing source (only Enroot's nofail can)")
        ok = False
    return ok


def _check_duplicates(binds: Sequence[Indexed], out: ProblemCollector) -> None:
    """Two binds onto one target in one container: the second hides the first."""
    any_class: Dict[str, int] = {}  # target+runtime -> first bind, whatever its classes
    all_classes: Dict[str, int] = {}  # ... -> first bind without `classes`
    per_class: Dict[Tuple[str, str], int] = {}
    for index, bind in binds:
        clashes = []
        for runtime in bind.runtimes:
            key = bind.target + "\0" + runtime
            if not bind.classes:
                clashes.append((any_class.get(key), runtime))
                all_classes.setdefault(key, index)
            for name in bind.classes:
                clashes.append((per_class.get((key, name), all_classes.get(key)), runtime))
                per_class.setdefault((key, name), index)
            any_class.setdefault(key, index)
        found = [(other, runtime) for other, runtime in clashes if other is not None]
        if found:
            other, runtime = found[0]
            out.add(f"bind[{index}].target", f"{bind.target} is already the target of "
                    f"bind[{other}] for {runtime} (two mounts on one target: the last hides the "
                    "first)")
