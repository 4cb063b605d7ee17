"""site.toml -> a validated `Policy`, or `InvalidInput` holding every problem at once.

Steps: read bytes (sha256 of exactly those), decode UTF-8, parse TOML (a syntax error becomes
`FILE:LINE:COL: message`), check each section against its schema (`policy.sections.*`), then the
rules that join sections, then read the keyrings `signed_by` names (so rendering stays pure).
Nothing here consults the directory: that is `directory.against`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hpcpolicy.errors import InvalidInput, Problem, ProblemCollector
from hpcpolicy.policy import enforcement_inputs
from hpcpolicy.policy.enforcement_inputs import KeyringReader
from hpcpolicy.policy.inputs import (
    KEYRING_MAX,
    SITE_MAX,
    Trust,
    read_checked,
    trust_for,
    trust_problem,
)
from hpcpolicy.policy.keyring import NotPublicKeyring, check_public
from hpcpolicy.policy.model import Bind, Directory, Images, NodeClass, Policy, Runtime, Site, SubId
from hpcpolicy.policy.schema import INVALID, Field, integer, read_table, table_array
from hpcpolicy.policy.sections import binds as binds_section
from hpcpolicy.policy.sections import directory as directory_section
from hpcpolicy.policy.sections import enforcement as enforcement_section
from hpcpolicy.policy.sections import images as images_section
from hpcpolicy.policy.sections import node_class as node_class_section
from hpcpolicy.policy.sections import runtime as runtime_section
from hpcpolicy.policy.sections import site as site_section
from hpcpolicy.policy.sections import subid as subid_section

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

SCHEMA = 1
MAX_SIZE = SITE_MAX
FAKEROOT_MIN_COUNT = 65536  # Apptainer/SingularityCE refuse shorter --fakeroot ranges
_AT_RE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _keep(value: Any, where: str, out: ProblemCollector) -> Any:
    return value  # a section checks its own table


def _schema(value: Any, where: str, out: ProblemCollector) -> Any:
    if integer()(value, where, out) is INVALID:
        return INVALID
    if value != SCHEMA:
        out.add(where, f"unsupported schema {value}: this hpcpolicy reads schema {SCHEMA}")
        return INVALID
    return value


TOP_FIELDS = {
    "schema": Field(_schema),
    "site": Field(_keep),
    "directory": Field(_keep, {}),
    "subid": Field(_keep, {}),
    "bind": Field(_keep, []),
    "images": Field(_keep, {}),
    "runtime": Field(_keep, {}),
    "node_class": Field(_keep, []),
}


def _key_homes() -> Dict[str, str]:
    """Key -> the one table that has it, to point a misplaced key at its home."""
    tables = {
        "[site]": site_section.FIELDS,
        "[site.approval]": site_section.APPROVAL_FIELDS,
        "[directory]": directory_section.fields("/"),
        "[directory.files]": directory_section.files_fields("/"),
        "[directory.ldap]": directory_section.LDAP_FIELDS,
        "[subid]": subid_section.FIELDS,
        "[[bind]]": binds_section.FIELDS,
        "[images]": images_section.FIELDS,
        "[[images.rule]]": images_section.RULE_FIELDS,
        "[[images.collection]]": images_section.COLLECTION_FIELDS,
        "[runtime]": runtime_section.FIELDS,
        "[runtime.storage]": enforcement_section.STORAGE_FIELDS,
        "[runtime.apptainer_limits]": enforcement_section.LIMITS_FIELDS,
        "[[node_class]]": node_class_section.FIELDS,
    }
    homes: Dict[str, List[str]] = {}
    for table, fields in tables.items():
        for key in fields:
            homes.setdefault(key, []).append(table)
    return {key: where[0] for key, where in homes.items() if len(where) == 1}


_HOMES = _key_homes()


def _point_misplaced(problems: List[Problem]) -> List[Problem]:
    """`unknown key` with no closer guess: say where that key belongs, if anywhere."""
    out = []
    for p in problems:
        key = p.path.rsplit(".", 1)[-1]
        if p.message == "unknown key" and key in _HOMES:
            p = Problem(p.file, p.path, f"unknown key here (it belongs in {_HOMES[key]})")
        out.append(p)
    return out


def _syntax_problem(err: Exception, text: str, file: str) -> Problem:
    """`FILE:LINE:COL: message` out of tomllib's text (it has no line attributes on 3.11)."""
    message = str(err)
    match = _AT_RE.search(message)
    if match is None:
        return Problem(file, "", f"TOML syntax error: {message}")
    if match.group(1):
        line, col = int(match.group(1)), int(match.group(2))
    else:
        line = text.count("\n") + 1
        col = len(text.rsplit("\n", 1)[-1]) + 1
    return Problem(f"{file}:{line}:{col}", "", message[: match.start()])


def _decode(data: bytes, file: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        raise InvalidInput([Problem(f"{file}:1:1", "", "starts with a UTF-8 byte-order mark, "
                                    "which TOML does not allow: save the file without it")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = before.count(b"\n") + 1
        col = err.start - (before.rfind(b"\n") + 1) + 1
        raise InvalidInput([Problem(f"{file}:{line}:{col}", "", "not valid UTF-8")]) from None


def _parse_toml(text: str, file: str) -> Dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InvalidInput([_syntax_problem(err, text, file)]) from None
    except RecursionError:
        raise InvalidInput([Problem(file, "", "TOML nesting too deep")]) from None


class _Sections:
    """The parsed sections; None where a section had a problem (already recorded)."""

    def __init__(self, raw: Dict[str, Any], out: ProblemCollector, base_dir: str) -> None:
        self.site: Optional[Site] = None
        self.site_part: Optional[Site] = None  # runtimes and releases, even if [site] is not sound
        if "site" in raw:
            self.site = site_section.parse(raw["site"], out)
        self.site_part = self.site or site_section.salvage(raw.get("site", {}))
        self.directory: Optional[Directory] = directory_section.parse(
            raw["directory"], out, base_dir)
        self.subid: Optional[SubId] = subid_section.parse(raw["subid"], out)
        self.runtime: Optional[Runtime] = runtime_section.parse(raw["runtime"], out, base_dir)
        self.images: Optional[Images] = images_section.parse(raw["images"], out, base_dir)
        self.classes = _node_classes(raw["node_class"], out, base_dir)
        self.binds = _binds(raw["bind"], out, self.site_part, self.classes)


def _node_classes(raw: Any, out: ProblemCollector,
                  base_dir: str = "/") -> Optional[List[NodeClass]]:
    parsed = table_array(raw, "node_class", out,
                         lambda r, w, i: (i, node_class_section.parse_one(r, w, out, base_dir)))
    if not isinstance(raw, list):
        return None
    good = [(i, p) for i, p in parsed if p is not None]
    classes = node_class_section.check_all(good, out)
    return classes if len(good) == len(parsed) else None


def _binds(raw: Any, out: ProblemCollector, site: Optional[Site],
           classes: Optional[List[NodeClass]]) -> Optional[Tuple[Bind, ...]]:
    parsed = table_array(raw, "bind", out,
                         lambda r, w, i: binds_section.parse_one(r, w, i, out))
    if not isinstance(raw, list):
        return None
    good = [p for p in parsed if p is not None]
    if site is None or classes is None:
        return None  # defaults and cross-rules need [site] and [[node_class]]
    names = ["default"] + [c.name for c in classes]
    done = binds_section.resolve(good, site.runtimes, names, out)
    if len(done) != len(parsed):
        return None
    return tuple(b for _, b in done)


def _cross(s: _Sections, out: ProblemCollector) -> None:
    """Rules joining sections, run only on sections that are sound on their own."""
    if s.subid is not None and s.directory is not None:
        subid_section.check_with_directory(s.subid, s.directory, out)
    if s.runtime is not None and s.site_part is not None:
        classes_ok = s.classes is None or enforcement_inputs.check_classes(
            s.runtime, s.classes, s.site_part, out)
        typed_limits = enforcement_inputs.any_limits(s.runtime, s.classes or [])
        s.runtime = runtime_section.check_passthrough(s.runtime, s.site_part, out,
                                                      typed_limits)
        if not classes_ok:
            s.runtime = None
    if s.runtime is None or s.subid is None:
        return
    if s.runtime.fakeroot and not s.subid.enabled:
        out.add("runtime.fakeroot", "true requires subid.enabled = true (users get --fakeroot "
                "and rootless Podman anyway; without sub-ID ranges they fail or fall back)")
    if s.site_part is None or not s.runtime.fakeroot or not s.subid.enabled:
        return
    needy = [r for r in s.site_part.runtimes if r in ("apptainer", "singularity")]
    if needy and s.subid.count < FAKEROOT_MIN_COUNT:
        out.add("subid.count", f"must be >= {FAKEROOT_MIN_COUNT} for --fakeroot with "
                f"{', '.join(needy)} (runtime.fakeroot = true), got {s.subid.count}")


def _same_file(st: os.stat_result, path: Optional[str]) -> bool:
    if not path:
        return False
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def _secrets(site: Optional[Site], directory: Optional[Directory]
             ) -> List[Tuple[str, Optional[str]]]:
    """Files named as secrets: never to be published as a keyring."""
    secrets = [("site.signing_key", site.signing_key if site else None)]
    if directory is not None and directory.ldap is not None:
        secrets.append(("directory.ldap.bind_password_file", directory.ldap.bind_password_file))
    return secrets


def _read_keyrings(images: Images, reader: KeyringReader) -> Dict[str, bytes]:
    """Every `signed_by` keyring, checked: it is published world-readable to every node."""
    keyrings: Dict[str, bytes] = {}
    for rule in images.rules:
        if rule.signed_by_path is None or rule.signed_by_path in keyrings or rule.alias_of:
            continue
        where = f"images.rule[{rule.index}].signed_by"
        data = reader(rule.signed_by_path, where)
        if data is not None:
            keyrings[rule.signed_by_path] = data
    return keyrings


def read_keyring(path: str, file: str, where: str, trust: Trust,
                 secrets: Sequence[Tuple[str, Optional[str]]],
                 out: ProblemCollector) -> Optional[bytes]:
    """A keyring that apply publishes (`signed_by`, an ECL keyring), or None with a problem.

    The file rule of `policy.inputs`, world-readable already, never one of `secrets` (the
    signing key, the LDAP password file: compared by inode, so no other spelling slips by),
    and an OpenPGP public keyring by its packets (`policy.keyring`).
    """
    try:
        data, st = read_checked(path, file=file, key=where, max_size=KEYRING_MAX, trust=trust)
    except InvalidInput as err:
        out.extend(err.problems)
        return None
    except OSError as err:
        out.add(where, f"cannot read keyring {path}: {err.strerror or err}")
        return None
    for key, secret in secrets:
        if _same_file(st, secret):
            out.add(where, f"{path} is the file {key} names: a secret, never a keyring "
                           "(keyrings are published to every node)")
            return None
    if not st.st_mode & stat.S_IROTH:
        out.add(where, f"{path} is not world-readable (mode {stat.S_IMODE(st.st_mode):04o}): "
                       "a keyring is published to every node, so it must be public already")
        return None
    try:
        check_public(data)
    except NotPublicKeyring as err:
        out.add(where, f"{path} is not an OpenPGP public keyring: {err}")
        return None
    return data


def _build(data: bytes, file: str, base_dir: str) -> Policy:
    text = _decode(data, file)
    raw = _parse_toml(text, file)
    out = ProblemCollector(file)
    read_table(raw, "", TOP_FIELDS, out)  # unknown top-level keys, schema, [site] present
    sections = _Sections(_defaults(raw), out, base_dir)
    _cross(sections, out)
    trust = trust_for(sections.site.deploy_owner if sections.site else None)
    secrets = _secrets(sections.site, sections.directory)

    def keyring(path: str, where: str) -> Optional[bytes]:
        return read_keyring(path, out.file, where, trust, secrets, out)

    keyrings = _read_keyrings(sections.images, keyring) if sections.images is not None else {}
    inputs: Dict[str, bytes] = {}
    if sections.runtime is not None and sections.site is not None:
        inputs = enforcement_inputs.read(sections.runtime, sections.classes or [], trust, out,
                                         keyring)
    if out.problems:
        raise InvalidInput(_point_misplaced(out.problems))
    return _policy(file, data, sections, keyrings, inputs)


def _defaults(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Top-level tables with absent ones as their empty defaults (`site` stays absent)."""
    out = {name: raw.get(name, spec.default) for name, spec in TOP_FIELDS.items()
           if name != "site"}
    if "site" in raw:
        out["site"] = raw["site"]
    return out


def _policy(file: str, data: bytes, s: _Sections, keyrings: Dict[str, bytes],
            inputs: Dict[str, bytes]) -> Policy:
    assert s.site and s.directory and s.subid and s.runtime and s.images
    assert s.binds is not None and s.classes is not None
    return Policy(
        path=file,
        sha256=hashlib.sha256(data).hexdigest(),
        site=s.site,
        directory=s.directory,
        subid=s.subid,
        binds=s.binds,
        images=s.images,
        runtime=s.runtime,
        node_classes=tuple(s.classes),
        keyrings=keyrings,
        inputs=inputs,
    )


def load_text(text: str, file: str, base_dir: str) -> Policy:
    """Validate site.toml text; `file` names it in messages, `base_dir` anchors `signed_by`."""
    return _build(text.encode("utf-8"), file, base_dir)


def load_bytes(data: bytes, file: str, base_dir: str) -> Policy:
    """As `load_text`, from the file's bytes (whose sha256 becomes `Policy.sha256`)."""
    return _build(data, file, base_dir)


def load(path: str) -> Policy:
    """Read and validate the site file at `path` (named as given in every message).

    The site file decides what root installs on every node, so it is read through the
    ownership rule of `policy.inputs`: besides root and the operator, only the deploy owner
    it names may own it.
    """
    try:
        data, st = read_checked(path, file=path, key="", max_size=MAX_SIZE)
    except (FileNotFoundError, PermissionError) as err:
        raise InvalidInput([Problem(path, "", f"cannot read: {err.strerror}")]) from None
    policy = _build(data, path, os.path.dirname(os.path.abspath(path)))
    why = trust_problem(path, st, trust_for(policy.site.deploy_owner))
    if why:
        raise InvalidInput([Problem(path, "", why)])
    return policy


__all__: Sequence[str] = ("load", "load_text", "load_bytes", "SCHEMA")
