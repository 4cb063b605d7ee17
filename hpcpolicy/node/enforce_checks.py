"""`node doctor` checks of what makes the policy hold where users run images.

From the node class's requirements (`requirements.classes.NAME` in the manifest):

* site image stores: each exists, is writable by nobody but its root owner (nor is any parent
  directory, except a root-owned sticky one: whoever can rename a parent can swap the store),
  users can read its metadata, and it holds the lock files that
  containers/storage opens read-only in a read-only store (`DRIVER-images/images.lock`,
  `DRIVER-layers/layers.lock`); without them rootless Podman cannot use the store at all;
* setuid mode (`setuid = true` on the class): the setuid starter is there, root-owned, mode
  4755, or Apptainer runs in user-namespace mode, where its limits do not hold;
* the directories the ECL names and `limit container paths` exist (Apptainer refuses every
  container when a limit path is missing; an ECL directory must equal its resolved path);
* read-only binds: every source that has mounts below it on this node, for the runtimes that
  cannot make a bind recursively read-only, unless each such mount is bound read-only itself.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from hpcpolicy.node import mountinfo

OK, WARN, FAIL = "OK", "WARN", "FAIL"
STARTERS = {
    "apptainer": ("usr/libexec/apptainer/bin/starter-suid",
                  "usr/local/libexec/apptainer/bin/starter-suid"),
    "singularity": ("usr/libexec/singularity/bin/starter-suid",
                    "usr/local/libexec/singularity/bin/starter-suid"),
}
SHOWN = 5

# (name, status, detail, remedy): the doctor wraps these in its own Check type.
Result = Tuple[str, str, str, str]


def lock_files(store: str, driver: str) -> List[str]:
    """The lock files containers/storage opens read-only in an additional image store."""
    return [os.path.join(store, f"{driver}-images", "images.lock"),
            os.path.join(store, f"{driver}-layers", "layers.lock")]


def _node(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _writable_by_others(st: os.stat_result) -> bool:
    return st.st_uid != 0 or bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _open_to_all(mode: int) -> bool:
    want = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return stat.S_ISLNK(mode) or mode & want == want


def _unreadable(path: str, driver: str) -> List[str]:
    """What every user's containers/storage reads in a store and cannot, relative to it: the
    image and layer metadata, each image's directory and files, each layer's directory and its
    own files (not its contents, `diff`, which keep the image's permissions). A pull by root
    adds 0700 directories, so this is checked again after every pull. One lstat per entry
    (scandir), since a site store holds thousands of layers."""
    out: List[str] = []
    for rel in (f"{driver}-images", f"{driver}-images/images.json", f"{driver}-layers",
                f"{driver}-layers/layers.json", driver):
        try:
            if not _open_to_all(os.lstat(os.path.join(path, rel)).st_mode):
                out.append(rel)
        except OSError:
            continue
    for top, skip in ((f"{driver}-images", ()), (driver, ("diff", "work", "merged"))):
        try:
            entries = list(os.scandir(os.path.join(path, top)))
        except OSError:
            continue
        for entry in entries:
            mode = entry.stat(follow_symlinks=False).st_mode
            if not _open_to_all(mode):
                out.append(f"{top}/{entry.name}")
            if not stat.S_ISDIR(mode):
                continue
            try:
                inner = list(os.scandir(entry.path))
            except OSError:
                continue
            out += [f"{top}/{entry.name}/{e.name}" for e in inner if e.name not in skip
                    and not _open_to_all(e.stat(follow_symlinks=False).st_mode)]
    return sorted(out)


def readable_command(store: str, driver: str) -> str:
    """Opens a store's own directories and metadata to users (root fills it with 0700 dirs),
    leaving the layers' contents (diff) with the image's permissions."""
    return (f"cd {store} && find {driver}-images {driver}-layers {driver} \\( -name diff "
            "-o -name work -o -name merged \\) -prune -o -type d -exec chmod go+rx {} + "
            "-o -type f -exec chmod go+r {} +")


def _store_problems(root: str, store: str, driver: str) -> List[str]:
    path = _node(root, store)
    try:
        st = os.lstat(path)
    except OSError:
        return [f"{store} does not exist"]
    if not stat.S_ISDIR(st.st_mode):
        return [f"{store} is not a directory"]
    problems: List[str] = []
    chain = [path]
    parent = os.path.dirname(path)
    while parent.rstrip("/") != root.rstrip("/") and parent != os.path.dirname(parent):
        chain.append(parent)
        parent = os.path.dirname(parent)
    for part in chain:
        pst = os.lstat(part)
        if part != path and pst.st_mode & stat.S_ISVTX and pst.st_uid == 0:
            continue  # a root-owned sticky parent (/tmp-like): nobody else can replace the store
        if _writable_by_others(pst):
            problems.append(f"{part[len(root.rstrip('/')):] or '/'} is writable by uid "
                            f"{pst.st_uid} or its group/others (mode "
                            f"{stat.S_IMODE(pst.st_mode):04o})")
    for sub in (f"{driver}-images", f"{driver}-layers", driver):
        sub_path = os.path.join(path, sub)
        if os.path.isdir(sub_path) and _writable_by_others(os.lstat(sub_path)):
            problems.append(f"{store}/{sub} is writable by someone other than root")
    unreadable = [f"{store}/{rel}" for rel in _unreadable(path, driver)]
    if unreadable:
        more = f" and {len(unreadable) - SHOWN} more" if len(unreadable) > SHOWN else ""
        problems.append("users cannot read " + ", ".join(unreadable[:SHOWN]) + more)
    for lock in lock_files(path, driver):
        shown = lock[len(root.rstrip("/")):]
        try:
            lst = os.lstat(lock)
        except OSError:
            problems.append(f"{shown} is missing (containers/storage cannot create it in a "
                            "read-only store)")
            continue
        if not stat.S_ISREG(lst.st_mode) or not lst.st_mode & stat.S_IROTH:
            problems.append(f"{shown} is not a world-readable regular file")
    return problems


def check_image_stores(root: str, needs: Mapping[str, Any]) -> List[Result]:
    stores = [str(s) for s in needs.get("image_stores") or ()]
    driver = str(needs.get("storage_driver") or "overlay")
    out: List[Result] = []
    for store in stores:
        problems = _store_problems(root, store, driver)
        if problems:
            out.append((f"image-store {store}", FAIL, "; ".join(problems[:SHOWN]),
                        f"fill it as root (podman --root {store} pull ...), keep it and its "
                        "parents root-owned and not group/other-writable, make it readable "
                        f"({readable_command(store, driver)}), and create the lock files "
                        f"(touch {' '.join(lock_files(store, driver))})"))
        else:
            out.append((f"image-store {store}", OK, "present, writable by root only, lock "
                        "files present", ""))
    return out


def check_setuid_starter(root: str, needs: Mapping[str, Any],
                         runtimes: Sequence[str]) -> Optional[Result]:
    """Where the class runs in setuid mode: the starter must be root-owned 4755."""
    if not needs.get("setuid_allowed"):
        return None
    wanted = [r for r in ("apptainer", "singularity") if r in runtimes]
    if not wanted:
        return ("setuid-starter", OK, "setuid allowed; no Apptainer or SingularityCE managed", "")
    found: List[str] = []
    problems: List[str] = []
    for runtime in wanted:
        for rel in STARTERS[runtime]:
            path = _node(root, rel)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            found.append("/" + rel)
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"/{rel} is not a regular file")
            elif st.st_uid != 0 or stat.S_IMODE(st.st_mode) != 0o4755:
                problems.append(f"/{rel} is uid {st.st_uid}, mode "
                                f"{stat.S_IMODE(st.st_mode):04o} (wants root, 4755)")
    if problems:
        return ("setuid-starter", FAIL, "; ".join(problems),
                "reinstall the setuid package (apptainer-suid), or chown root:root and "
                "chmod 4755 the starter")
    if not found:
        return ("setuid-starter", FAIL, "setuid = true on this class but no setuid starter is "
                "installed: Apptainer runs in user-namespace mode, where its limits and ECL do "
                "not hold", "install apptainer-suid (or SingularityCE's setuid install)")
    return ("setuid-starter", OK, f"root-owned 4755: {', '.join(found)}", "")


def check_limit_dirs(root: str, needs: Mapping[str, Any]) -> List[Result]:
    out: List[Result] = []
    paths = [str(p) for p in needs.get("container_paths") or ()]
    missing = [p for p in paths if not os.path.isdir(_node(root, p))]
    if missing:
        out.append(("limit-container-paths", FAIL, "missing: " + ", ".join(missing[:SHOWN]),
                    "create them: Apptainer refuses every container while one is missing"))
    elif paths:
        out.append(("limit-container-paths", OK, f"{len(paths)} present", ""))
    dirs = [str(p) for p in needs.get("ecl_dirs") or ()]
    bad = []
    for d in dirs:
        path = _node(root, d)
        if not os.path.isdir(path):
            bad.append(f"{d} missing")
        elif os.path.realpath(path) != os.path.normpath(path):
            bad.append(f"{d} goes through a symlink (the ECL needs it resolved)")
    if bad:
        out.append(("ecl-dirs", FAIL, "; ".join(bad[:SHOWN]),
                    "create the directories, or name their resolved paths in the ECL"))
    elif dirs:
        out.append(("ecl-dirs", OK, f"{len(dirs)} ECL directories present", ""))
    return out


def _covered(sub: str, bind: Mapping[str, Any], runtime: str,
             binds: Sequence[Mapping[str, Any]]) -> bool:
    """Whether `sub` (below bind's source) is bound read-only itself at the same place."""
    rel = sub[len(str(bind["source"]).rstrip("/")):]
    want = str(bind["target"]).rstrip("/") + rel
    return any(b["source"] == sub and b["target"] == want and runtime in b["runtimes"]
               for b in binds)


def weak_readonly_binds(binds: Sequence[Mapping[str, Any]], points: Sequence[str],
                        root: str = "/") -> List[Dict[str, Any]]:
    """[{source, runtimes, submounts}] of read-only binds with writable mounts below them."""
    out = []
    for bind in binds:
        source = str(bind["source"])
        node_source = _node(root, source)
        found = mountinfo.submounts(node_source, points)
        prefix = root.rstrip("/")
        subs = [p[len(prefix):] if prefix and p.startswith(prefix + "/") else p for p in found]
        for runtime in bind["runtimes"]:
            open_subs = [s for s in subs if not _covered(s, bind, runtime, binds)]
            if open_subs:
                out.append({"source": source, "runtime": runtime, "submounts": open_subs})
    return out


def check_readonly_binds(root: str, needs: Mapping[str, Any],
                         points: Optional[Sequence[str]] = None) -> List[Result]:
    binds = list(needs.get("readonly_binds") or ())
    if not binds:
        return []
    if points is None:
        points = mountinfo.read_mount_points()
    if points is None:
        return [("readonly-binds", WARN, "cannot read /proc/self/mountinfo", "")]
    weak = weak_readonly_binds(binds, points, root)
    if not weak:
        return [("readonly-binds", OK, f"{len(binds)} read-only bind(s) have no mounts below "
                 "their sources (or each is bound read-only itself)", "")]
    return [(f"readonly-bind {w['source']} ({w['runtime']})", FAIL,
             f"mounts below the source stay writable in {w['runtime']} containers "
             f"(not recursively read-only): {', '.join(w['submounts'][:SHOWN])}",
             "add a readonly [[bind]] for each of them (same relative target), or unmount them")
            for w in weak]
