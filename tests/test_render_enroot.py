"""Enroot: mounts.d fstab through util-linux's parser, enroot.conf through enroot's loader.

The loader and the `${NAME}` substitution are restated from NVIDIA/enroot (`enroot.in`
`config::load`, `src/common.sh` `common::envsubst`) and run in real bash / awk, so a value is only
"inert" if the shell really gives it back unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_fixtures import bind, policy

from hpcpolicy.errors import InvalidInput
from hpcpolicy.policy import directives as d
from hpcpolicy.policy.model import Bind
from hpcpolicy.render import enroot

FINDMNT = shutil.which("findmnt")
BASH = shutil.which("bash")
AWK = shutil.which("awk")
needs_findmnt = pytest.mark.skipif(FINDMNT is None, reason="findmnt (util-linux) not installed")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash not installed")

# enroot.in config::load, restated: read KEY VALUE lines, keep enroot's key patterns, and print
# `eval echo "$value"` for each, NUL-separated so any byte survives.
LOADER = r"""
while IFS=$' \t=' read -r key value; do
    if [[ "${key}" =~ ^ENROOT_[[:upper:]_]+$ ]] ||
       [[ "${key}" =~ ^(MELLANOX_|NVIDIA_) ]] ||
       [[ "${key}" =~ ^SSL_CERT_(DIR|FILE)$ ]] ||
       [[ "${key}" =~ ^(all|no|http|https)_proxy$ ]]; then
        printf '%s\0%s\0' "${key}" "$(eval echo "${value}")"
    fi
done < "$1"
"""

# src/common.sh common::envsubst, restated: ${NAME} -> the caller's environment.
ENVSUBST = r"""{
    line=$0
    while (match(line, /\${[A-Za-z_][A-Za-z0-9_]*}/)) {
        output = substr(line, 1, RSTART - 1)
        envvar = substr(line, RSTART, RLENGTH)
        gsub(/\$|{|}/, "", envvar)
        printf "%s%s", output, ENVIRON[envvar]
        line = substr(line, RSTART + RLENGTH)
    }
    print line
}"""


def render(*binds: Bind, conf: Tuple[Tuple[str, str], ...] = ()) -> Dict[str, bytes]:
    pol = policy(*binds, enroot=conf)
    return enroot.render(pol, pol.binds)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def load_conf(path: Path) -> List[Tuple[str, str]]:
    """Run enroot's loader (restated) on `path` in an empty environment."""
    assert BASH is not None
    out = subprocess.run(
        [BASH, "-c", LOADER, "loader", str(path)],
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        capture_output=True,
        check=True,
        cwd=path.parent,
    ).stdout.decode()
    parts = out.split("\0")[:-1]
    return list(zip(parts[0::2], parts[1::2]))


def findmnt_entries(path: Path) -> List[Dict[str, str]]:
    assert FINDMNT is not None
    out = subprocess.run(
        [FINDMNT, "--tab-file", str(path), "-J", "-o", "SOURCE,TARGET,FSTYPE,OPTIONS"],
        capture_output=True,
        check=True,
    ).stdout
    return list(json.loads(out)["filesystems"])


# ------------------------------------------------------------------ fstab


def test_fstab_lines_and_options() -> None:
    files = render(
        bind("/scratch"),
        bind("/gpfs/p", "/project"),
        Bind("/opt/t", "/opt/t", readonly=True, required=False, runtimes=("enroot",)),
    )
    text = files[enroot.FSTAB_PATH].decode()
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "/scratch /scratch none x-create=auto,rbind",
        "/gpfs/p /project none x-create=auto,rbind",
        "/opt/t /opt/t none x-create=auto,rbind,ro,nofail",
    ]
    assert text.endswith("\n") and "\r" not in text


TRICKY = [
    "with#hash",
    "dollar$HOME",
    "quote'd",
    'dq"x',
    "semi;amp&",
    "eq=sign",
    "caf\u00e9",
    "~tilde",
]


@needs_findmnt
def test_findmnt_verifies_directory_binds_with_tricky_names(tmp_path: Path) -> None:
    binds = []
    for i, name in enumerate(TRICKY):
        target = tmp_path / name
        target.mkdir()
        # libmount (not enroot's getmntent) reads a source with '=' as a LABEL=-style tag
        source = f"/src/{i}/{name}".replace("=", "_")
        binds.append(bind(source, str(target)))
    fstab = write(tmp_path, "t.fstab", render(*binds)[enroot.FSTAB_PATH])
    verify = subprocess.run(
        [FINDMNT or "findmnt", "--verify", "--tab-file", str(fstab)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "0 parse errors" in verify.stdout + verify.stderr or "Success" in verify.stdout
    got = [(e["source"], e["target"]) for e in findmnt_entries(fstab)]
    assert got == [(b.source, b.target) for b in binds]


@needs_findmnt
def test_fstab_escapes_space_tab_newline_backslash(tmp_path: Path) -> None:
    """Validation forbids most of these; the renderer escapes them anyway, as getmntent decodes."""
    weird = ["/a b", "/tab\tx", "/new\nline", "/back\\slash", "/all \t\n\\"]
    binds = [bind(w, w + "-dst") for w in weird]
    fstab = write(tmp_path, "t.fstab", render(*binds)[enroot.FSTAB_PATH])
    lines = fstab.read_bytes().decode().splitlines()
    assert len([x for x in lines if not x.startswith("#")]) == len(weird)
    entries = findmnt_entries(fstab)
    assert [(e["source"], e["target"]) for e in entries] == [(b.source, b.target) for b in binds]
    assert all(e["options"] == "x-create=auto,rbind" and e["fstype"] == "none" for e in entries)


@needs_findmnt
def test_file_bind_parses(tmp_path: Path) -> None:
    fstab = write(
        tmp_path, "t.fstab", render(bind("/etc/hosts", "/etc/site-hosts"))[enroot.FSTAB_PATH]
    )
    assert findmnt_entries(fstab) == [
        {
            "source": "/etc/hosts",
            "target": "/etc/site-hosts",
            "fstype": "none",
            "options": "x-create=auto,rbind",
        }
    ]


@pytest.mark.parametrize("path", ["/data/${HOME}", "/x/${A_1}/y", "relative/x"])
def test_fstab_refuses_what_enroot_would_rewrite(path: str) -> None:
    with pytest.raises(InvalidInput):
        render(bind(path))


@pytest.mark.skipif(AWK is None, reason="awk not installed")
def test_enroot_envsubst_leaves_rendered_lines_alone(tmp_path: Path) -> None:
    """enroot substitutes ${NAME} in mounts.d before parsing: accepted paths survive it intact."""
    binds = [bind("/d/$HOME"), bind("/d/$"), bind("/d/{x}"), bind("/d/$(id)"), bind("/d/#1")]
    data = render(*binds)[enroot.FSTAB_PATH]
    fstab = write(tmp_path, "t.fstab", data)
    out = subprocess.run(
        [AWK or "awk", ENVSUBST, str(fstab)],
        env={"HOME": "/root", "x": "EVIL", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    ).stdout
    assert out == data


# ------------------------------------------------------------------ enroot.conf

CONF_OK: List[Tuple[str, object, str]] = [
    ("ENROOT_ROOTFS_WRITABLE", True, "yes"),
    ("ENROOT_REMAP_ROOT", False, "no"),
    ("ENROOT_MOUNT_HOME", "yes", "yes"),
    ("ENROOT_BUNDLE_ALL", "True", "yes"),  # str(True), should a loader store it so
    ("ENROOT_ALLOW_HTTP", "false", "no"),
    ("ENROOT_SQUASH_OPTIONS", "-comp zstd -Xcompression-level 3 -noD", ""),
    ("ENROOT_ZSTD_OPTIONS", "-1", ""),
    ("ENROOT_MAX_PROCESSORS", 0, "0"),
    ("ENROOT_MAX_CONNECTIONS", "10", "10"),
    ("ENROOT_CACHE_PATH", "/var/cache/enroot-cache/x_y.z", ""),
    ("ENROOT_GZIP_PROGRAM", "pigz", ""),
    ("SSL_CERT_FILE", "/etc/pki/tls/cert.pem", ""),
    ("https_proxy", "http://user:p%40ss@proxy.example.org:3128", ""),
    ("no_proxy", "localhost,.example.org,10.0.0.0/8", ""),
]


def test_conf_lines_are_sorted_name_value() -> None:
    conf = tuple((n, v) for n, v, _ in CONF_OK)
    text = render(conf=conf)[enroot.CONF_PATH].decode()  # type: ignore[arg-type]
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == sorted(body)
    assert "ENROOT_ROOTFS_WRITABLE yes" in body and "ENROOT_REMAP_ROOT no" in body


@needs_bash
def test_conf_passes_bash_n_and_loads_byte_for_byte(tmp_path: Path) -> None:
    conf = tuple((n, v) for n, v, _ in CONF_OK)
    path = write(tmp_path, "enroot.conf", render(conf=conf)[enroot.CONF_PATH])  # type: ignore[arg-type]
    subprocess.run([BASH or "bash", "-n", str(path)], check=True)
    loaded = load_conf(path)
    expected = sorted((n, shown or str(v)) for n, v, shown in CONF_OK)
    assert loaded == expected


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ENROOT_HOOKS_PATH", "/x", "unknown enroot variable"),
        ("ENROOT_ROOTFS_WRITEABLE", "yes", "did you mean 'ENROOT_ROOTFS_WRITABLE'?"),
        ("NVIDIA_DRIVER_CAPABILITIES", "all", "unknown"),
        ("ENROOT_DATA_PATH", "/tmp/enroot-$(id -u)", "'$'"),
        ("ENROOT_DATA_PATH", "/tmp/${USER}", "'$'"),
        ("ENROOT_DATA_PATH", "/tmp/`id`", "'`'"),
        ("ENROOT_DATA_PATH", "~/enroot", "'~'"),
        ("ENROOT_DATA_PATH", "/tmp/a*", "'*'"),
        ("ENROOT_DATA_PATH", "/tmp/a?", "'?'"),
        ("ENROOT_DATA_PATH", "/tmp/[ab]", "'['"),
        ("ENROOT_DATA_PATH", "/tmp/{a,b}", "'{'"),
        ("ENROOT_DATA_PATH", "/tmp/a;reboot", "';'"),
        ("ENROOT_DATA_PATH", "/tmp/a|b", "'|'"),
        ("ENROOT_DATA_PATH", "/tmp/a&", "'&'"),
        ("ENROOT_DATA_PATH", "/tmp/<a", "'<'"),
        ("ENROOT_DATA_PATH", "/tmp/a>", "'>'"),
        ("ENROOT_DATA_PATH", "/tmp/(a)", "'('"),
        ("ENROOT_DATA_PATH", "/tmp/'a'", '"\'"'),
        ("ENROOT_DATA_PATH", '/tmp/"a"', "'\"'"),
        ("ENROOT_DATA_PATH", "/tmp/a\\b", "'\\\\'"),
        ("ENROOT_DATA_PATH", "/tmp/#a", "'#'"),
        ("ENROOT_DATA_PATH", "/tmp/a\nENROOT_X y", "'\\n'"),
        ("ENROOT_DATA_PATH", "/tmp/a\x00", "'\\x00'"),
        ("ENROOT_DATA_PATH", "/tmp/a\tb", "'\\t'"),
        ("ENROOT_DATA_PATH", "/tmp/a b", "spaces"),
        ("ENROOT_DATA_PATH", "tmp/a", "absolute path"),
        ("ENROOT_DATA_PATH", "", "empty"),
        ("ENROOT_DATA_PATH", 3, "expected a string"),
        ("ENROOT_SQUASH_OPTIONS", "-comp  lzo", "single spaces"),
        ("ENROOT_SQUASH_OPTIONS", " -comp lzo", "single spaces"),
        ("ENROOT_SQUASH_OPTIONS", "-n", "echo would take it as an option"),
        ("ENROOT_SQUASH_OPTIONS", "-e -comp", "option"),
        ("ENROOT_SQUASH_OPTIONS", "=x", "separator"),
        ("ENROOT_SQUASH_OPTIONS", "-Xlevel=", "separator"),  # bash read drops a final '='
        ("ENROOT_ROOTFS_WRITABLE", "maybe", "true/false"),
        ("ENROOT_ROOTFS_WRITABLE", 1, "true/false"),
        ("ENROOT_MAX_CONNECTIONS", "-1", "non-negative"),
        ("ENROOT_MAX_CONNECTIONS", "010", "non-negative"),
        ("ENROOT_MAX_CONNECTIONS", True, "non-negative"),
        ("ENROOT_MAX_CONNECTIONS", 1.5, "non-negative"),
    ],
)
def test_check_enroot_refuses(name: str, value: object, message: str) -> None:
    problem = d.check_enroot(name, value)
    assert problem is not None
    assert message in problem, problem


def test_every_variable_of_enroot_conf_in_is_known() -> None:
    """The variables of NVIDIA/enroot conf/enroot.conf.in (v4.1.x), restated."""
    upstream = [
        *("LIBRARY_PATH", "SYSCONF_PATH", "RUNTIME_PATH", "CONFIG_PATH", "CACHE_PATH"),
        *("DATA_PATH", "TEMP_PATH", "GZIP_PROGRAM", "ZSTD_OPTIONS", "SQUASH_OPTIONS"),
        *("ROOTFS_WRITABLE", "NATIVE_OVERLAYFS", "REMAP_ROOT", "UNSHARE_NET", "UNSHARE_PID"),
        *("UNSHARE_IPC", "UNSHARE_UTS", "MAX_PROCESSORS", "MAX_CONNECTIONS", "CONNECT_TIMEOUT"),
        *("TRANSFER_TIMEOUT", "TRANSFER_RETRIES", "LOGIN_SHELL", "ALLOW_SUPERUSER", "ALLOW_HTTP"),
        *("BUNDLE_ALL", "BUNDLE_CHECKSUM", "MOUNT_HOME", "RESTRICT_DEV", "FORCE_OVERRIDE"),
    ]
    extra = ["SSL_CERT_DIR", "SSL_CERT_FILE", "all_proxy", "no_proxy", "http_proxy", "https_proxy"]
    assert sorted(d.ENROOT_VARS) == sorted(["ENROOT_" + v for v in upstream] + extra)


def test_renderer_refuses_an_unchecked_value() -> None:
    with pytest.raises(InvalidInput) as err:
        render(conf=(("ENROOT_DATA_PATH", "/tmp/$(id -u)"),))
    assert "runtime.enroot.ENROOT_DATA_PATH" in str(err.value)


_ALPHABET = st.characters(min_codepoint=1, max_codepoint=0x7F) | st.sampled_from("é\u00a0\u2028")
# Mostly characters the check allows, so that many examples reach the shell.
_NEAR = st.sampled_from(list("/aZ09-._:@%+,= ") * 4 + list("$`\\'\"~#*{}!"))
_WORD = st.text(st.sampled_from(list("aZ09-._/:@%+,=") * 3 + list("$`~#*!")), min_size=1)
_VALUES = (
    st.text(_ALPHABET, min_size=1, max_size=24)
    | st.text(_NEAR, min_size=1, max_size=24)
    | st.builds(lambda w: "/" + w, _WORD)
    | st.builds(" ".join, st.lists(_WORD, min_size=1, max_size=4))
)


@needs_bash
@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(["ENROOT_SQUASH_OPTIONS", "ENROOT_DATA_PATH", "no_proxy"]),
    value=_VALUES,
)
def test_any_accepted_value_loads_unchanged(name: str, value: str) -> None:
    """Whatever check_enroot lets through, enroot's loader gives back byte for byte."""
    if d.check_enroot(name, value) is not None:
        return
    data = render(conf=((name, value),))[enroot.CONF_PATH]
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    path = tmp / f"hpcpolicy-enroot-{os.getpid()}.conf"
    try:
        path.write_bytes(data)
        assert subprocess.run([BASH or "bash", "-n", str(path)]).returncode == 0
        assert load_conf(path) == [(name, value)]
    finally:
        path.unlink()
