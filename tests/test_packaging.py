"""The packages a site installs: sdist, Debian package, EL9 RPM, wheels on three setuptools.

Each package is built once per session with the real tools (dpkg-buildpackage, rpmbuild,
pip wheel) by the build scripts in packaging/, then listed, extracted and run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from hpcpolicy import __version__
from hpcpolicy.cli.main import build_parser

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
SYSTEM_PYTHON = "/usr/bin/python3"
PYENV = Path.home() / ".pyenv" / "versions"

pytestmark = pytest.mark.packaging


def _run(argv: List[str], **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def _need_build_python() -> Dict[str, str]:
    """The environment for the build scripts: this interpreter builds the sdist (it has
    setuptools, shtab and argparse-manpage from the test extra)."""
    import importlib.util

    for name in ("setuptools", "shtab", "tomli_w"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} not installed in {sys.executable} (pip install -e '.[test]')")
    if not (importlib.util.find_spec("argparse_manpage")
            or importlib.util.find_spec("build_manpages")):
        pytest.skip("argparse-manpage not installed (pip install -e '.[test]')")
    return {**os.environ, "PYTHON": sys.executable}


def _need_system_modules(*modules: str) -> None:
    probe = _run([SYSTEM_PYTHON, "-c", "import " + ", ".join(modules)])
    if probe.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} lacks one of {modules}: {probe.stderr.strip()[-200:]}")


def _commands() -> List[Tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    raise AssertionError("the parser has no commands")


def _options(parser: argparse.ArgumentParser) -> Set[str]:
    """Every option string of a parser and of its nested subcommands, --help excepted."""
    found: Set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
            for sub in action.choices.values():
                found |= _options(sub)
        found.update(o for o in action.option_strings if o not in ("-h", "--help"))
    return found


EXPECTED_PAGES = {"hpcpolicy.8"} | {f"hpcpolicy-{name}.8" for name, _ in _commands()}


# ---------------------------------------------------------------- session-wide builds


@pytest.fixture(scope="session")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = _need_build_python()
    out = tmp_path_factory.mktemp("sdist")
    res = _run([str(PACKAGING / "build-sdist.sh"), str(out)], env=env)
    assert res.returncode == 0, res.stderr
    return Path(res.stdout.strip())


@pytest.fixture(scope="session")
def deb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need("dpkg-buildpackage", "dh", "lintian", "ansible-galaxy")
    env = _need_build_python()
    out = tmp_path_factory.mktemp("deb")
    res = _run([str(PACKAGING / "build-deb.sh"), str(out)], env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    return out


@pytest.fixture(scope="session")
def deb_tree(deb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deb-x")
    (deb,) = deb_dir.glob("hpcpolicy_*_all.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


@pytest.fixture(scope="session")
def rpm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need("rpmbuild", "rpm", "ansible-galaxy")
    env = _need_build_python()
    out = tmp_path_factory.mktemp("rpm")
    res = _run([str(PACKAGING / "build-rpm.sh"), str(out)], env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    return out


def _rpm(rpm_dir: Path) -> Path:
    (rpm,) = rpm_dir.glob("hpcpolicy-*.noarch.rpm")
    return rpm


# ---------------------------------------------------------------- sdist, man pages, completion


def test_sdist_is_a_complete_source(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    must = {
        "LICENSE", "setup.cfg", "setup.py", "pyproject.toml", "README.md",
        "tests/conftest.py", "tests/test_packaging.py", "tests/ldap_fixtures.py",
        "tests/data/sites/minimal.toml", "docs/install.md", "etc/site.example.toml",
        "etc/demo/site.toml", "etc/demo/passwd", "packaging/pam.d/hpcpolicy",
        "packaging/systemd/hpcpolicy-sync.service", "packaging/systemd/hpcpolicy-sync.timer",
        "packaging/debian/control", "packaging/rpm/hpcpolicy.spec", "packaging/gen-docs.py",
        "ansible_collections/hpcpolicy/site/galaxy.yml",
        "ansible_collections/hpcpolicy/site/plugins/modules/hpcpolicy_apply.py",
        "packaging/generated/bash-completion/hpcpolicy", "scripts/test.sh",
    } | {f"packaging/generated/man/{page}" for page in EXPECTED_PAGES}
    assert must - names == set()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_generated_docs_are_not_committed() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = _run(["git", "-C", str(REPO), "ls-files", "packaging/generated"])
    assert tracked.returncode == 0 and tracked.stdout == ""


def test_man_pages_and_completion_match_the_parser(sdist: Path, tmp_path: Path) -> None:
    """Every command has its page; every option of a command appears in its page and in the
    completion (as generated into the sdist from this very parser)."""
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path)
    gen = next(tmp_path.glob("hpcpolicy-*")) / "packaging" / "generated"
    pages = {p.name: p.read_text() for p in (gen / "man").iterdir()}
    assert set(pages) == EXPECTED_PAGES
    completion = (gen / "bash-completion" / "hpcpolicy").read_text()
    top = pages["hpcpolicy.8"]
    assert top.startswith(".TH HPCPOLICY 8 ") and f'"hpcpolicy {__version__}"' in top
    for name, sub in _commands():
        page = pages[f"hpcpolicy-{name}.8"]
        assert page.startswith(f".TH HPCPOLICY-{name.upper()} 8 ")
        assert f".BR hpcpolicy\\-{name} (8)" in top  # SEE ALSO lists every group page
        assert re.search(rf"^hpcpolicy\\-{name} \\- \S", page, re.M)  # a NAME line for whatis
        for option in _options(sub):
            assert option.replace("-", "\\-") in page, f"{option} missing from hpcpolicy-{name}.8"
            assert option in completion, f"{option} missing from the bash completion"
        assert re.search(rf"\b{name}\b", completion)


def test_man_pages_render_without_warnings(sdist: Path, tmp_path: Path) -> None:
    _need("man")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path)
    gen = next(tmp_path.glob("hpcpolicy-*")) / "packaging" / "generated" / "man"
    for page in sorted(gen.iterdir()):
        res = _run(["man", "--warnings", "-l", str(page)],
                   env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"})
        assert res.returncode == 0 and res.stderr == "", (page.name, res.stderr)
        assert "SEE ALSO" in res.stdout


def test_completion_is_a_working_bash_function(sdist: Path, tmp_path: Path) -> None:
    """Source the completion in bash and ask it what follows `hpcpolicy subid `."""
    _need("bash")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path)
    script = next(tmp_path.glob("hpcpolicy-*")) / "packaging/generated/bash-completion/hpcpolicy"
    probe = (f"source {script}; COMP_WORDS=(hpcpolicy subid ''); COMP_CWORD=2; "
             "COMP_LINE='hpcpolicy subid '; COMP_POINT=${#COMP_LINE}; "
             "_shtab_hpcpolicy hpcpolicy '' subid; printf '%s\\n' \"${COMPREPLY[@]}\"")
    res = _run(["bash", "-c", probe])
    assert res.returncode == 0, res.stderr
    assert {"list", "import", "check"} <= set(res.stdout.split())


# ---------------------------------------------------------------- Debian package


def test_deb_contents_are_in_their_places(deb_dir: Path) -> None:
    (deb,) = deb_dir.glob("hpcpolicy_*_all.deb")
    listing = _run(["dpkg-deb", "-c", str(deb)]).stdout
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    must = {
        "/usr/bin/hpcpolicy", "/etc/pam.d/hpcpolicy",
        "/lib/systemd/system/hpcpolicy-sync.service", "/lib/systemd/system/hpcpolicy-sync.timer",
        "/usr/share/bash-completion/completions/hpcpolicy",
        "/usr/share/doc/hpcpolicy/copyright",
        "/usr/share/doc/hpcpolicy/examples/site.example.toml",
        "/usr/share/doc/hpcpolicy/examples/demo/site.toml",
        "/usr/lib/python3/dist-packages/hpcpolicy/cli/main.py",
        "/usr/lib/python3/dist-packages/hpcpolicy/py.typed",
        "/usr/share/ansible/collections/ansible_collections/hpcpolicy/site/galaxy.yml",
        "/usr/share/ansible/collections/ansible_collections/hpcpolicy/site/plugins/modules/"
        "hpcpolicy_node_sync.py",
    } | {f"/usr/share/man/man8/{page}.gz" for page in EXPECTED_PAGES}
    assert must - paths == set()
    assert not [p for p in paths if p.startswith(("/opt", "/usr/local"))]


def test_deb_metadata_and_lintian(deb_dir: Path) -> None:
    (deb,) = deb_dir.glob("hpcpolicy_*_all.deb")
    fields = _run(["dpkg-deb", "-f", str(deb), "Depends", "Architecture", "Version"]).stdout
    line = fields.split("\n")[0].split(":", 1)[1]
    depends = {d.strip().split()[0] for d in re.split(r"[,|]", line)}
    assert {"python3-ldap3", "python3-clustershell", "python3-tomli-w", "python3-pampy",
            "python3-six"} <= depends
    assert "python3-pam" not in depends  # another library that also installs a module "pam"
    assert "Architecture: all" in fields and f"Version: {__version__}-" in fields
    lintian = (deb_dir / "lintian.txt").read_text()
    assert not [ln for ln in lintian.splitlines() if ln.startswith("E: ")], lintian
    assert list(deb_dir.glob("hpcpolicy_*.dsc")), "the source package is built too"


def test_deb_dependencies_resolve_in_debian(deb_dir: Path) -> None:
    """apt's own resolver, simulated (nothing installed): every Depends exists in Debian."""
    _need("apt-get", "apt-cache")
    for dep in ("python3-ldap3", "python3-clustershell", "python3-tomli-w", "python3-pampy"):
        policy = _run(["apt-cache", "policy", dep]).stdout
        if "Candidate: (none)" in policy or not policy.strip():
            pytest.skip(f"apt knows no {dep} here (no package lists: apt-get update)")
    (deb,) = deb_dir.glob("hpcpolicy_*_all.deb")
    res = _run(["apt-get", "install", "-s", "--no-install-recommends", str(deb)])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert re.search(r"^Inst hpcpolicy \(", res.stdout, re.M)


def test_deb_copyright_carries_the_licence(deb_tree: Path) -> None:
    text = (deb_tree / "usr/share/doc/hpcpolicy/copyright").read_text()
    assert "License: BSD-3-Clause" in text and "The hpcpolicy developers" in text
    assert "Neither the name of the copyright holder" in text


def test_deb_command_runs_from_the_extracted_package(deb_tree: Path) -> None:
    """Debian's python3 with the packaged modules (and Debian's runtime dependencies)."""
    _need_system_modules("ldap3", "ClusterShell", "tomli_w", "pam", "six")
    env = {**os.environ, "PYTHONPATH": str(deb_tree / "usr/lib/python3/dist-packages")}
    exe = str(deb_tree / "usr/bin/hpcpolicy")
    first = Path(exe).read_text().splitlines()[0]
    assert first == "#!/usr/bin/python3"
    # the minimal launcher, not setuptools' script (which imports re and importlib.metadata)
    assert Path(exe).read_text() == (REPO / "packaging/bin/hpcpolicy").read_text()
    res = _run([SYSTEM_PYTHON, exe, "--version"], env=env)
    assert res.returncode == 0 and res.stdout.strip() == f"hpcpolicy {__version__}", res.stderr
    # the packaged example site is valid, read by the packaged code
    site = deb_tree / "usr/share/doc/hpcpolicy/examples/site.example.toml"
    res = _run([SYSTEM_PYTHON, exe, "validate", "--offline", str(site), "--format", "json"],
               env=env)
    assert res.returncode == 0 and json.loads(res.stdout)["failed"] is False, res.stdout
    # the module Debian's python3-pampy provides is the python-pam API hpcpolicy calls
    probe = _run([SYSTEM_PYTHON, "-c", "import pam; assert callable(pam.pam().authenticate)"])
    assert probe.returncode == 0, probe.stderr


def test_deb_man_page_reads_with_man(deb_tree: Path) -> None:
    _need("man")
    page = deb_tree / "usr/share/man/man8/hpcpolicy.8.gz"
    res = _run(["man", "-l", str(page)], env={**os.environ, "MANPAGER": "cat", "PAGER": "cat"})
    assert res.returncode == 0, res.stderr
    assert "HPCPOLICY(8)" in res.stdout and "SEE ALSO" in res.stdout
    with gzip.open(deb_tree / "usr/share/man/man8/hpcpolicy-apply.8.gz", "rt") as handle:
        assert "\\-\\-deploy\\-root" in handle.read()


def test_deb_units_name_the_packaged_command(deb_tree: Path) -> None:
    service = (deb_tree / "lib/systemd/system/hpcpolicy-sync.service").read_text()
    starts = re.findall(r"^ExecStart=(\S+)", service, re.M)
    assert starts and all(s == "/usr/bin/hpcpolicy" for s in starts)
    assert (deb_tree / starts[0].lstrip("/")).is_file()


def test_galaxy_tarball_is_a_build_artefact(deb_dir: Path) -> None:
    (tarball,) = deb_dir.glob("hpcpolicy-site-*.tar.gz")
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
        names = set(tar.getnames())
    assert manifest["collection_info"]["namespace"] == "hpcpolicy"
    assert manifest["collection_info"]["license"] == ["BSD-3-Clause"]
    assert "plugins/modules/hpcpolicy_apply.py" in names


# ---------------------------------------------------------------- RPM

FHS_PREFIXES = (
    "/usr/bin/hpcpolicy", "/usr/lib/python3", "/usr/share/man/man8/hpcpolicy",
    "/usr/share/bash-completion/completions/hpcpolicy", "/usr/lib/systemd/system/hpcpolicy-",
    "/etc/pam.d/hpcpolicy", "/usr/share/doc/hpcpolicy", "/usr/share/licenses/hpcpolicy",
    "/usr/share/ansible",
)


def test_rpm_lists_every_file_in_its_fhs_place(rpm_dir: Path) -> None:
    files = _run(["rpm", "-qlp", str(_rpm(rpm_dir))]).stdout.split()
    assert [f for f in files if not f.startswith(FHS_PREFIXES)] == []
    must = {
        "/usr/bin/hpcpolicy", "/etc/pam.d/hpcpolicy",
        "/usr/lib/systemd/system/hpcpolicy-sync.service",
        "/usr/lib/systemd/system/hpcpolicy-sync.timer",
        "/usr/share/bash-completion/completions/hpcpolicy",
        "/usr/share/licenses/hpcpolicy/LICENSE",
        "/usr/share/doc/hpcpolicy/examples/site.example.toml",
        "/usr/share/ansible/collections/ansible_collections/hpcpolicy/site/plugins/modules/"
        "hpcpolicy_apply.py",
    } | {f"/usr/share/man/man8/{page}" for page in EXPECTED_PAGES}
    assert must - set(files) == set()
    assert any(re.match(r"/usr/lib/python3\.\d+/site-packages/hpcpolicy/cli/main\.py$", f)
               for f in files)


def test_rpm_metadata(rpm_dir: Path) -> None:
    rpm = str(_rpm(rpm_dir))
    info = _run(["rpm", "-qp", "--qf", "%{ARCH} %{LICENSE} %{VERSION}\\n", rpm]).stdout
    assert info.strip() == f"noarch BSD-3-Clause {__version__}"
    requires = _run(["rpm", "-qp", "--requires", rpm]).stdout
    for dist in ("ldap3", "clustershell", "tomli-w", "python-pam", "six"):
        assert f"python3dist({dist})" in requires
    config = _run(["rpm", "-qpc", rpm]).stdout.split()
    assert config == ["/etc/pam.d/hpcpolicy"]
    assert list(rpm_dir.glob("hpcpolicy-*.src.rpm")) and list(rpm_dir.glob("hpcpolicy-site-*"))


def test_rpm_command_runs_from_the_extracted_package(rpm_dir: Path, tmp_path: Path) -> None:
    _need("rpm2archive")
    _need_system_modules("ldap3", "ClusterShell", "tomli_w", "pam", "six")
    archive = _run(["sh", "-c", f"rpm2archive - < {_rpm(rpm_dir)} | tar -xzf - -C {tmp_path}"])
    assert archive.returncode == 0, archive.stderr
    (site,) = tmp_path.glob("usr/lib/python3.*/site-packages")
    res = _run([SYSTEM_PYTHON, str(tmp_path / "usr/bin/hpcpolicy"), "--version"],
               env={**os.environ, "PYTHONPATH": str(site)})
    assert res.returncode == 0 and res.stdout.strip() == f"hpcpolicy {__version__}", res.stderr
    launcher = (tmp_path / "usr/bin/hpcpolicy").read_text()
    assert launcher == (REPO / "packaging/bin/hpcpolicy").read_text()  # not setuptools' script
    service = (tmp_path / "usr/lib/systemd/system/hpcpolicy-sync.service").read_text()
    assert "ExecStart=/usr/bin/hpcpolicy " in service


# ---------------------------------------------------------------- wheels: EL9, Debian 12, newest

WHEEL_BUILDS: Dict[str, Tuple[str, str]] = {
    # label: (pyenv interpreter prefix, setuptools requirement)
    "el9-setuptools53": ("3.9", "setuptools==53.*"),
    "debian12-setuptools66": ("3.11", "setuptools==66.*"),
    "newest-setuptools": ("3.12", "setuptools"),
}


def _pyenv(prefix: str) -> Path:
    found = sorted(PYENV.glob(f"{prefix}.*/bin/python"))
    if not found:
        pytest.skip(f"no Python {prefix} under {PYENV}")
    return found[-1]


@pytest.mark.parametrize("label", sorted(WHEEL_BUILDS))
def test_offline_wheel_build_works(label: str, tmp_path: Path) -> None:
    """`pip wheel --no-build-isolation` with only that setuptools (and wheel) present, as a
    distribution builds it offline; the wheel installs and runs."""
    prefix, setuptools = WHEEL_BUILDS[label]
    venv = tmp_path / "venv"
    subprocess.run([str(_pyenv(prefix)), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    res = _run(pip + ["install", setuptools, "wheel"])
    if res.returncode != 0:
        pytest.skip(f"cannot install {setuptools}: {res.stderr.strip()[-300:]}")
    src = tmp_path / "src"  # a copy: the build writes egg-info and build/ into its tree
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "demo-out", ".*cache"))
    res = _run(pip + ["wheel", "--no-build-isolation", "--no-deps", "--no-index",
                      "-w", str(tmp_path / "dist"), str(src)])
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name == f"hpcpolicy-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        meta = whl.read(f"hpcpolicy-{__version__}.dist-info/METADATA").decode()
        entry = whl.read(f"hpcpolicy-{__version__}.dist-info/entry_points.txt").decode()
    assert "hpcpolicy/py.typed" in names and "hpcpolicy/cli/main.py" in names
    assert any(n.endswith(".dist-info/LICENSE") or n.endswith("licenses/LICENSE") for n in names)
    assert re.search(r"^hpcpolicy = hpcpolicy\.cli\.\w+:run$", entry, re.M)
    assert "Requires-Dist: ldap3" in meta and "Requires-Python: >=3.9" in meta
    assert not [n for n in names if n.startswith("tests/")]
    res = _run(pip + ["install", str(wheel)])
    assert res.returncode == 0, res.stderr
    res = _run([str(venv / "bin/hpcpolicy"), "--version"])
    assert res.returncode == 0 and res.stdout.strip() == f"hpcpolicy {__version__}", res.stderr



def test_user_facing_text_cites_no_internal_document(sdist: Path, tmp_path: Path) -> None:
    """README, docs, the example sites, packaging files and the generated man pages state
    behaviour in their own words: users cannot read the project's internal contract."""
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path)
    top = next(tmp_path.glob("hpcpolicy-*"))
    texts = [top / "README.md", *(top / "docs").glob("*.md"), *(top / "etc").rglob("*.toml"),
             *(top / "packaging/systemd").iterdir(), *(top / "packaging/pam.d").iterdir(),
             *(top / "packaging/generated/man").iterdir(), top / "packaging/rpm/hpcpolicy.spec",
             *(top / "packaging/debian").glob("control")]
    cited = [str(p.relative_to(top)) for p in texts if re.search(r"SPEC(\.md| §)", p.read_text())]
    assert cited == []
