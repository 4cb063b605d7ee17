"""apptainer.conf / singularity.conf: directive tables, passthrough checks, renderers, checker.

The checker (`tests/apptainer_checker.py`) reads files with Apptainer's parser rules; the
acceptance cases at the end are restated from the upstream e2e suites so the checker and the
tables are held to upstream's own list of directives and values, not only to our notes.
"""

from __future__ import annotations

import dataclasses
from typing import List

import pytest
from apptainer_checker import ConfigError, check_file, get_directives, parse, parse_go_uint
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_fixtures import bind, policy

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy import directives as d
from hpcpolicy.policy.model import Runtime
from hpcpolicy.render import apptainer, singularity

RENDER = {"apptainer": apptainer.render, "singularity": singularity.render}
PATHS = {"apptainer": apptainer.PATH, "singularity": singularity.PATH}
LATEST = {k: ".".join(map(str, v[-1])) for k, v in d.RELEASES.items()}


def release_ids() -> List[str]:
    return [f"{dia}-{'.'.join(map(str, r))}" for dia in d.RELEASES for r in d.RELEASES[dia]]


def render_text(dialect: str, version: str, *binds: object, **kw: object) -> str:
    """Render one dialect's file for `version` (other arguments as `runtime_fixtures.policy`)."""
    pol = policy(*binds, **{f"{dialect}_version": version}, **kw)  # type: ignore[arg-type]
    out = RENDER[dialect](pol, pol.binds)
    assert list(out) == [PATHS[dialect]]
    return out[PATHS[dialect]].decode()


# ------------------------------------------------------------------ every release, both products


@pytest.mark.parametrize("case", release_ids())
def test_every_release_gets_a_file_it_and_all_later_releases_parse(case: str) -> None:
    dialect, version = case.split("-")
    text = render_text(dialect, version, bind("/scratch"), bind("/gpfs/p", "/project"))
    assert check_file(text, dialect, version) == []
    conf = parse(text, dialect, version)
    assert conf["allow setuid"] is False
    assert (conf["mount home"], conf["mount tmp"], conf["mount hostfs"]) == (True, True, False)
    assert conf["bind path"] == ["/etc/localtime", "/etc/hosts", "/scratch", "/gpfs/p:/project"]
    ver = d.parse_version(dialect, version)
    has_userns_key = ver >= ((1, 4, 0) if dialect == "apptainer" else (4, 2, 0))
    assert ("allow user ns" in conf) is has_userns_key
    if has_userns_key:
        assert conf["allow user ns"] is True


@pytest.mark.parametrize("case", release_ids())
def test_file_is_complete_for_its_release(case: str) -> None:
    """Every directive with a value (default or set) is written: the file replaces the package's."""
    dialect, version = case.split("-")
    found = get_directives(render_text(dialect, version))
    ver = d.parse_version(dialect, version)
    expected = {
        name
        for name, span in d.directives_at(dialect, ver)
        if span.default is not None and name != "suidbinary path"
    }
    assert expected - set(found) == set()
    assert set(found) <= {name for name, _ in d.directives_at(dialect, ver)}


@pytest.mark.parametrize(
    ("dialect", "version", "absent"),
    [
        ("apptainer", "1.2", ["preferred", "iflimited", "allow ipc ns", "allow monitoring"]),
        ("apptainer", "1.1", ["allow setuid-mount", "apptheus"]),
        ("apptainer", "1.0", ["binary path", "systemd cgroups"]),
        ("apptainer", "1.5", ["sync writable extfs", "allow kernel"]),
        ("singularity", "3.11", ["oci mode", "tmp sandbox", "allow user ns", "search path"]),
        ("singularity", "4.1", ["driver", "allow setuid-mount", "binary path", "image driver"]),
    ],
)
def test_nothing_newer_than_the_declared_release_is_written(
    dialect: str, version: str, absent: List[str]
) -> None:
    text = render_text(dialect, version)
    for word in absent:
        assert word not in text


def test_release_defaults_follow_the_declared_release() -> None:
    """Defaults that changed between releases are those of the oldest release on the nodes."""
    assert parse(render_text("apptainer", "1.2"), "apptainer", "1.2")["enable overlay"] == "try"
    assert parse(render_text("apptainer", "1.3"), "apptainer", "1.3")["enable overlay"] == "yes"
    assert parse(render_text("apptainer", "1.1"), "apptainer", "1.1")["sessiondir max size"] == 16
    text = render_text("apptainer", "1.3")
    assert "allow setuid-mount squashfs = no\n" in text  # setuid-free: no kernel mounts


# ------------------------------------------------------------------ typed keys and binds


def test_typed_keys_map_to_their_directives() -> None:
    text = render_text(
        "apptainer",
        "1.4",
        setuid=True,
        user_namespaces=False,
        mount_home=False,
        mount_tmp=False,
        mount_hostfs=True,
    )
    conf = parse(text, "apptainer", "1.4")
    assert conf["allow setuid"] is True
    assert conf["allow user ns"] is False
    assert (conf["mount home"], conf["mount tmp"], conf["mount hostfs"]) == (False, False, True)
    # with setuid allowed the setuid-mount switches keep the release defaults
    assert conf["allow setuid-mount squashfs"] == "iflimited"
    assert conf["allow setuid-mount encrypted"] is True


def test_typed_keys_table_names_real_fields_and_directives() -> None:
    fields = {f.name for f in dataclasses.fields(Runtime)} | {"binds"}  # Policy.binds
    for field, name in d.TYPED_KEYS.items():
        assert field in fields
        assert name in d.TABLES["apptainer"]
        assert name in d.TABLES["singularity"]
    assert "fakeroot" not in d.TYPED_KEYS  # no launcher directive governs --fakeroot


def test_default_binds_off_leaves_only_site_binds() -> None:
    text = render_text("apptainer", "1.3", bind("/scratch"), default_binds=False)
    assert parse(text, "apptainer", "1.3")["bind path"] == ["/scratch"]


def test_no_binds_at_all_writes_no_bind_line() -> None:
    text = render_text("singularity", "4.1", default_binds=False)
    assert "bind path" not in text
    assert parse(text, "singularity", "4.1")["bind path"] == []


def test_site_bind_on_a_default_target_replaces_the_default() -> None:
    text = render_text("apptainer", "1.3", bind("/etc/site-hosts", "/etc/hosts"))
    assert parse(text, "apptainer", "1.3")["bind path"] == [
        "/etc/localtime",
        "/etc/site-hosts:/etc/hosts",
    ]


@pytest.mark.parametrize("path", ["/a:b", "/a,b", "/a\nb", "relative", "/a b "])
def test_a_bind_the_parser_would_misread_is_refused(path: str) -> None:
    with pytest.raises(InvalidInput):
        render_text("apptainer", "1.3", bind(path))


def test_hash_in_a_bind_path_is_literal_to_the_parser() -> None:
    text = render_text("apptainer", "1.3", bind("/data/#1"), default_binds=False)
    assert parse(text, "apptainer", "1.3")["bind path"] == ["/data/#1"]
    assert check_file(text, "apptainer", "1.3") == []


# ------------------------------------------------------------------ passthrough


def test_passthrough_overrides_defaults_and_typed_values() -> None:
    text = render_text(
        "apptainer",
        "1.3",
        apptainer=(("enable overlay", "driver"), ("mount home", False), ("max loop devices", 8)),
    )
    conf = parse(text, "apptainer", "1.3")
    assert (conf["enable overlay"], conf["mount home"], conf["max loop devices"]) == (
        "driver",
        False,
        8,
    )
    assert check_file(text, "apptainer", "1.3") == []


def test_list_passthrough_is_one_line_per_value() -> None:
    text = render_text(
        "apptainer", "1.3", apptainer=(("limit container owners", ("alice", "root")),)
    )
    assert text.count("limit container owners = ") == 2
    assert parse(text, "apptainer", "1.3")["limit container owners"] == ["alice", "root"]


@pytest.mark.parametrize(
    ("dialect", "name", "value", "version", "message"),
    [
        ("apptainer", "enable overlays", "yes", "1.3", "did you mean 'enable overlay'?"),
        ("apptainer", "Allow Setuid", "no", "1.3", "did you mean 'allow setuid'?"),
        ("apptainer", "allow  setuid", "no", "1.3", "did you mean 'allow setuid'?"),
        ("apptainer", "apptheus socket path", "/x", "1.3", "did you mean"),
        ("apptainer", "mount localtime", "no", "1.3", "unknown directive"),
        ("apptainer", "allow kernel squashfs", "no", "1.3", "SingularityCE directive"),
        ("singularity", "allow setuid-mount extfs", "no", "4.1", "Apptainer directive"),
        ("apptainer", "enable underlay", "preferred", "1.2", "needs Apptainer >= 1.3"),
        ("apptainer", "allow setuid-mount squashfs", "iflimited", "1.2", ">= 1.3"),
        ("apptainer", "allow setuid-mount squashfs", "no", "1.1", "needs Apptainer >= 1.1.8"),
        ("apptainer", "allow user ns", "no", "1.3", "needs Apptainer >= 1.4"),
        ("apptainer", "sync writable extfs", "yes", "1.5", "needs Apptainer >= 1.6"),
        ("singularity", "enable overlay", "driver", "3.11", "refused by SingularityCE >= 4.0"),
        ("singularity", "enable overlay", "driver", "4.1", "expected one of yes, no, try"),
        ("singularity", "enable underlay", "preferred", "4.5", "expected yes/no"),
        ("singularity", "image driver", "x", "3.11", "removed in SingularityCE 4.0"),
        ("singularity", "oci mode", "yes", "3.11", "needs SingularityCE >= 4.0"),
        ("apptainer", "cryptsetup path", "/usr/sbin/cryptsetup", "1.0", "removed in Apptainer 1.1"),
        ("apptainer", "mount dev", "Yes", "1.3", "expected one of yes, no, minimal"),
        ("apptainer", "allow setuid", "true", "1.3", "expected yes/no"),
        ("apptainer", "allow setuid", 1, "1.3", "expected yes/no"),
        ("apptainer", "max loop devices", -1, "1.3", "non-negative"),
        ("apptainer", "max loop devices", "010", "1.3", "non-negative integer"),
        ("apptainer", "max loop devices", True, "1.3", "non-negative integer"),
        ("apptainer", "mksquashfs mem", "1G # half", "1.3", "inline comments"),
        ("apptainer", "mksquashfs mem", "1G,2G", "1.3", "splits every value on commas"),
        ("apptainer", "mksquashfs mem", " 1G", "1.3", "whitespace"),
        ("apptainer", "mksquashfs mem", "", "1.3", "empty"),
        ("apptainer", "mksquashfs mem", "1G\nallow setuid = yes", "1.3", "newlines"),
        ("apptainer", "mksquashfs mem", "1G\x00", "1.3", "control"),
        ("apptainer", "mksquashfs mem", "1G\u2028", "1.3", "non-printable"),
        ("apptainer", "mksquashfs mem", ["1G"], "1.3", "expected a string"),
        ("apptainer", "limit container paths", ["/a", "/b,/c"], "1.3", "commas"),
        ("apptainer", "limit container paths", [], "1.3", "at least one"),
        ("apptainer", "limit container paths", [1], "1.3", "list of strings"),
        ("apptainer", "bind path", "/scratch", "1.3", "[[bind]]"),
        ("apptainer", "suidbinary path", "/x", "1.3", "internal"),
        ("apptainer", "allow setuid", "no", "2.0", "not a known Apptainer release"),
        ("docker", "allow setuid", "no", "1.3", "unknown dialect"),
    ],
)
def test_check_passthrough_refuses(
    dialect: str, name: str, value: object, version: str, message: str
) -> None:
    problem = d.check_passthrough(dialect, name, value, version)
    assert problem is not None
    assert message in problem


@pytest.mark.parametrize(
    ("dialect", "name", "value", "version"),
    [
        ("apptainer", "enable underlay", "preferred", "1.3"),
        ("apptainer", "enable overlay", False, "1.0"),
        ("apptainer", "allow setuid-mount squashfs", "no", "1.1.8"),
        ("apptainer", "allow setuid", True, "1.0"),
        ("apptainer", "allow setuid", "no", "1.5.3"),
        ("apptainer", "max loop devices", 0, "1.3"),
        ("apptainer", "binary path", "/usr/bin:/bin", "1.1"),
        ("apptainer", "limit container groups", "hpc", "1.3"),
        ("singularity", "enable overlay", "try", "3.6"),
        ("singularity", "allow kernel squashfs", "no", "3.11.2"),
        ("singularity", "user search path", "/usr/bin:/bin", "4.4.2"),
    ],
)
def test_check_passthrough_accepts(dialect: str, name: str, value: object, version: str) -> None:
    assert d.check_passthrough(dialect, name, value, version) is None


def test_renderer_refuses_an_unchecked_passthrough() -> None:
    with pytest.raises(InvalidInput) as err:
        render_text("apptainer", "1.2", apptainer=(("enable underlay", "preferred"),))
    assert 'runtime.apptainer."enable underlay"' in str(err.value)


def test_renderer_refuses_an_unknown_release() -> None:
    with pytest.raises(InvalidInput) as err:
        render_text("singularity", "5.0")
    assert "site.singularity_version" in str(err.value)


@pytest.mark.parametrize("dialect", ["apptainer", "singularity"])
def test_every_directive_value_round_trips_through_the_parser(dialect: str) -> None:
    """Each value the table allows for each directive, set by passthrough, parses back as set."""
    version = LATEST[dialect]
    for name, span in d.directives_at(dialect, d.parse_version(dialect, version)):
        if name in ("bind path", "suidbinary path"):
            continue
        samples: List[object] = {
            "bool": [True, False],
            "enum": list(span.allowed),
            "uint": [0, 1, 2**64 - 1],
            "string": ["/opt/x/bin"],
            "list": [("/a", "/b")],
        }[span.kind or ""]  # type: ignore[assignment]
        for value in samples:
            text = render_text(dialect, version, **{dialect: ((name, value),)})
            assert check_file(text, dialect, version) == []
            got = parse(text, dialect, version)[name]
            want = list(value) if isinstance(value, tuple) else value
            if span.kind == "enum" and isinstance(value, bool):
                want = "yes" if value else "no"
            assert got == want, (name, value)


_printable = st.text(
    st.characters(blacklist_categories=["Cs"], min_codepoint=1), min_size=0, max_size=30
)


@settings(max_examples=300, deadline=None)
@given(value=_printable)
def test_any_accepted_string_parses_back_unchanged(value: str) -> None:
    """If check_passthrough accepts a free string, Apptainer reads exactly that string."""
    if d.check_passthrough("apptainer", "mksquashfs mem", value, "1.3") is not None:
        return
    text = render_text("apptainer", "1.3", apptainer=(("mksquashfs mem", value),))
    assert parse(text, "apptainer", "1.3")["mksquashfs mem"] == value
    assert check_file(text, "apptainer", "1.3") == []


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_printable, min_size=1, max_size=4))
def test_any_accepted_list_parses_back_unchanged(values: List[str]) -> None:
    if d.check_passthrough("apptainer", "limit container paths", values, "1.3") is not None:
        return
    text = render_text("apptainer", "1.3", apptainer=(("limit container paths", tuple(values)),))
    assert parse(text, "apptainer", "1.3")["limit container paths"] == values


# ------------------------------------------------------------------ versions


@pytest.mark.parametrize(
    ("dialect", "version", "ok"),
    [
        ("apptainer", "1.3", True),
        ("apptainer", "1.3.6", True),
        ("apptainer", "1.3.7", False),
        ("apptainer", "1.0", True),
        ("apptainer", "0.9", False),
        ("apptainer", "1.6", False),
        ("apptainer", "v1.3", False),
        ("apptainer", "1.3.0-rc.1", False),
        ("apptainer", "01.3", False),
        ("apptainer", "1", False),
        ("singularity", "4.1", True),
        ("singularity", "3.11.2", True),
        ("singularity", "3.5", False),
        ("singularity", "1.3", False),
    ],
)
def test_check_version(dialect: str, version: str, ok: bool) -> None:
    assert (d.check_version(dialect, version) is None) is ok


def test_minor_version_means_its_first_release() -> None:
    assert d.parse_version("apptainer", "1.1") == (1, 1, 0)
    assert d.check_passthrough("apptainer", "allow setuid-mount extfs", "no", "1.1") is not None
    assert d.check_passthrough("apptainer", "allow setuid-mount extfs", "no", "1.1.9") is None


# ------------------------------------------------------------------ the checker's own rules
# Cases from apptainer's pkg/util/apptainerconf/parser_test.go (TestGetConfig) and parser.go.


@pytest.mark.parametrize(
    "text",
    [
        "allow setuid = bad\n",
        "mount dev = bad\n",
        "max loop devices = -42\n",
        "allow setuid = no # off\n",
        "allow setuid = Yes\n",
        "allow setuid = true\n",
        "mount dev = minimal ,x\n",
        "max loop devices = 64 ,x\n",
        "max loop devices = 0x\n",
        "max loop devices = 18446744073709551616\n",
    ],
)
def test_checker_rejects_what_apptainer_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse(text, "apptainer", "1.3")
    assert check_file(text, "apptainer", "1.3") != []


def test_checker_parser_semantics() -> None:
    text = (
        "# comment = ignored\n"
        "  allow setuid   =   no  \n"
        "allow setuid = yes\n"  # first occurrence wins
        "allow setuid = bogus\n"  # later occurrences are never validated
        "image driver =\n"  # empty value dropped
        "bind path = /a, /b\n"
        "bind path = /c:/d:ro\n"
        "mount dev = minimal,no\n"
        "max loop devices = 010\n"
        "no equals sign here\n"
        "mksquashfs mem = 1G = 2G\n"
        "allow  setuid = yes\n"  # two spaces: another (unknown) key
        "; not a comment char for the regex, ignored anyway\n"
    )
    conf = parse(text, "apptainer", "1.3")
    assert conf["allow setuid"] is False
    assert conf["bind path"] == ["/a", "/b", "/c:/d:ro"]
    assert conf["mount dev"] == "minimal"
    assert conf["max loop devices"] == 8
    assert conf["image driver"] == ""
    assert conf["mksquashfs mem"] == "1G = 2G"
    assert conf["limit container paths"] == []  # list defaults only without a file
    problems = "\n".join(check_file(text, "apptainer", "1.3"))
    assert "'allow setuid' appears 3 times" in problems
    assert "'allow  setuid' is unknown" in problems
    assert "line 10 is ignored" in problems
    assert "'mount dev' = 'minimal,no': only the part before ','" in problems


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("010", 8), ("0x10", 16), ("0o17", 15), ("0b101", 5), ("1_000", 1000), ("42", 42)],
)
def test_go_parseuint(text: str, value: int) -> None:
    assert parse_go_uint(text) == value


@pytest.mark.parametrize("text", ["", "-1", "+1", "1_", "_1", "0x", "1__0", "08", "1e3", " 1"])
def test_go_parseuint_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_go_uint(text)


def test_checker_sees_a_value_only_newer_releases_refuse() -> None:
    text = "enable overlay = driver\n"
    assert check_file(text, "singularity", "4.0") != []
    assert any("4.0 refuses" in p for p in check_file(text, "singularity", "3.11"))


def test_checker_without_bind_lines_has_no_binds() -> None:
    """A hand-written file without `bind path` has no system binds (GetConfig list rule)."""
    assert parse("allow setuid = no\n", "apptainer", "1.3")["bind path"] == []


# ------------------------------------------------------------------ upstream acceptance cases
# Restated from apptainer/apptainer e2e/config/config.go (configGlobal) and
# sylabs/singularity e2e/config/config.go: each case sets one directive to one value with
# `config global --set` and runs a probe. Here: the value must pass check_passthrough for a
# release that has the directive, render, and read back (checker) as the value the probe
# relies on. ("bind path" is a [[bind]], "allow setuid"/"mount *"/"allow user ns" are typed keys.)

ACCEPTANCE = [
    # (products, directive, value as in the e2e case, parsed value)
    ("AS", "allow setuid", "no", False),
    ("AS", "max loop devices", "0", 0),
    ("AS", "allow ipc ns", "no", False),
    ("AS", "allow ipc ns", "yes", True),
    ("AS", "allow pid ns", "no", False),
    ("AS", "allow pid ns", "yes", True),
    ("AS", "allow user ns", "no", False),
    ("AS", "allow user ns", "yes", True),
    ("AS", "allow uts ns", "no", False),
    ("AS", "allow uts ns", "yes", True),
    ("AS", "config passwd", "no", False),
    ("AS", "config passwd", "yes", True),
    ("AS", "config group", "no", False),
    ("AS", "config group", "yes", True),
    ("AS", "config resolv_conf", "no", False),
    ("AS", "config resolv_conf", "yes", True),
    ("AS", "mount proc", "no", False),
    ("AS", "mount proc", "yes", True),
    ("AS", "mount sys", "no", False),
    ("AS", "mount sys", "yes", True),
    ("AS", "mount dev", "no", "no"),
    ("AS", "mount dev", "minimal", "minimal"),
    ("AS", "mount dev", "yes", "yes"),
    ("AS", "mount devpts", "no", False),
    ("AS", "mount home", "no", False),
    ("AS", "mount home", "yes", True),
    ("AS", "mount tmp", "no", False),
    ("AS", "mount tmp", "yes", True),
    ("AS", "user bind control", "no", False),
    ("AS", "user bind control", "yes", True),
    ("AS", "enable overlay", "no", "no"),
    ("AS", "limit container owners", "alice", ["alice"]),
    ("AS", "limit container owners", "alice, root", ["alice", "root"]),
    ("AS", "limit container groups", "hpc", ["hpc"]),
    ("AS", "limit container groups", "hpc, root", ["hpc", "root"]),
    ("AS", "limit container paths", "/proc", ["/proc"]),
    ("AS", "limit container paths", "/tmp/e2e-testdir", ["/tmp/e2e-testdir"]),
    ("AS", "allow container sif", "no", False),
    ("AS", "allow container sif", "yes", True),
    ("AS", "allow container encrypted", "no", False),
    ("AS", "allow container encrypted", "yes", True),
    ("AS", "allow container squashfs", "no", False),
    ("AS", "allow container squashfs", "yes", True),
    ("AS", "allow container extfs", "no", False),
    ("AS", "allow container extfs", "yes", True),
    ("AS", "allow container dir", "no", False),
    ("AS", "allow container dir", "yes", True),
    ("A", "allow setuid-mount encrypted", "no", False),
    ("A", "allow setuid-mount encrypted", "yes", True),
    ("A", "allow setuid-mount squashfs", "no", "no"),
    ("A", "allow setuid-mount squashfs", "iflimited", "iflimited"),
    ("A", "allow setuid-mount squashfs", "yes", "yes"),
    ("A", "allow setuid-mount extfs", "no", False),
    ("A", "allow setuid-mount extfs", "yes", True),
    ("A", "root default capabilities", "no", "no"),
    ("A", "root default capabilities", "full", "full"),
    ("AS", "systemd cgroups", "yes", True),
    ("AS", "systemd cgroups", "no", False),
    ("S", "allow kernel squashfs", "no", False),
    ("S", "allow kernel squashfs", "yes", True),
    ("S", "allow kernel extfs", "no", False),
    ("S", "allow kernel extfs", "yes", True),
    ("S", "oci mode", "yes", True),
    ("S", "oci mode", "no", False),
    ("S", "user search path", "/opt/bin", "/opt/bin"),
    ("S", "root search path", "/opt/sbin", "/opt/sbin"),
]


def _acceptance_ids() -> List[str]:
    return [f"{p}:{name}={value}" for p, name, value, _ in ACCEPTANCE]


@pytest.mark.parametrize(("products", "name", "raw", "expected"), ACCEPTANCE, ids=_acceptance_ids())
def test_upstream_acceptance_case(products: str, name: str, raw: str, expected: object) -> None:
    for dialect in [{"A": "apptainer", "S": "singularity"}[p] for p in products]:
        version = LATEST[dialect]
        value: object = [v.strip() for v in raw.split(",")] if "," in raw else raw
        span = d.span_at(dialect, name, d.parse_version(dialect, version))
        assert span is not None
        if span.kind == "list" and isinstance(value, str):
            value = [value]
        if span.kind == "uint":
            value = int(raw)
        assert d.check_passthrough(dialect, name, value, version) is None
        as_toml = tuple(value) if isinstance(value, list) else value
        text = render_text(dialect, version, **{dialect: ((name, as_toml),)})
        assert check_file(text, dialect, version) == []
        assert parse(text, dialect, version)[name] == expected
        # the raw e2e value, as `config global --set` writes it, reads the same
        assert parse(f"{name} = {raw}\n", dialect, version)[name] == expected


def test_upstream_bind_path_case() -> None:
    """e2e BindPathPasswd: `bind path = /etc/passwd:/passwd` (here a [[bind]] table)."""
    for dialect in ("apptainer", "singularity"):
        text = render_text(dialect, LATEST[dialect], bind("/etc/passwd", "/passwd"))
        binds = parse(text, dialect, LATEST[dialect])["bind path"]
        assert isinstance(binds, list) and "/etc/passwd:/passwd" in binds
