"""The collection as a product: documentation that matches the code, a buildable Galaxy
artifact, the shared helpers, and the systemd units that run `node sync` without Ansible.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ansible_collections.hpcpolicy.site.plugins.module_utils import hpcpolicy_common as common
from tests.ansible_fixtures import PLAIN_PATH, SYSTEM_PYTHON, VENV_CLI, ansible_playbook
from tests.conftest import REPO

COLLECTION = REPO / "ansible_collections" / "hpcpolicy" / "site"
MODULES = ("hpcpolicy_apply", "hpcpolicy_node_sync", "hpcpolicy_node_doctor")
UNITS = REPO / "packaging" / "systemd"
INSTALLED_CLI = "/usr/bin/hpcpolicy"  # where the deb and RPM packages put it


def tool(name: str) -> str:
    path = shutil.which(name, path=PLAIN_PATH)
    if path is None:
        pytest.skip(f"{name} not installed")
    return path


def ansible_env(tmp: Path) -> Dict[str, str]:
    return {"PATH": PLAIN_PATH, "HOME": str(tmp), "ANSIBLE_HOME": str(tmp),
            "ANSIBLE_COLLECTIONS_PATH": str(REPO), "ANSIBLE_NOCOLOR": "1", "LC_ALL": "C.UTF-8"}


def argument_spec(module: str) -> Dict[str, Any]:
    """ARGUMENT_SPEC read from the source: the module imports Ansible, which this venv lacks."""
    tree = ast.parse((COLLECTION / "plugins" / "modules" / f"{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "ARGUMENT_SPEC":
            assert node.value is not None
            return dict(ast.literal_eval(node.value))
    raise AssertionError(f"{module}: no ARGUMENT_SPEC")


def yaml_load(text: str) -> Any:
    """Parse YAML with the system Python's PyYAML (Ansible's own dependency)."""
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
        input=text, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    ansible_playbook()
    home = tmp_path_factory.mktemp("ansible-doc")
    proc = subprocess.run(
        [tool("ansible-doc"), "--json", "-t", "module", *(f"hpcpolicy.site.{m}" for m in MODULES)],
        env=ansible_env(home), cwd=home, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return {name.rsplit(".", 1)[1]: value for name, value in json.loads(proc.stdout).items()}


@pytest.mark.parametrize("module", MODULES)
def test_documented_options_are_the_argument_spec(docs: Dict[str, Any], module: str) -> None:
    spec, options = argument_spec(module), docs[module]["doc"]["options"]
    assert set(options) == set(spec)
    for name, want in spec.items():
        doc = options[name]
        assert doc["type"] == want["type"], name
        assert doc.get("required", False) == want.get("required", False), name
        assert doc.get("default") == want.get("default"), name
        assert doc.get("aliases", []) == want.get("aliases", []), name
        assert doc["description"], name


@pytest.mark.parametrize("module", MODULES)
def test_examples_use_only_documented_options(docs: Dict[str, Any], module: str) -> None:
    spec = argument_spec(module)
    names = set(spec) | {a for opt in spec.values() for a in opt.get("aliases", [])}
    tasks: List[Dict[str, Any]] = yaml_load(docs[module]["examples"])
    assert tasks
    for task in tasks:
        args = task[f"hpcpolicy.site.{module}"] or {}
        assert set(args) <= names, task["name"]
        assert all(spec[n].get("required") is not True or n in args
                   or set(spec[n].get("aliases", [])) & set(args) for n in spec), task["name"]
    returned = yaml_load(docs[module]["return"]) if isinstance(docs[module]["return"], str) \
        else docs[module]["return"]
    assert "msg" in returned


def test_check_and_diff_support_are_documented_truthfully(docs: Dict[str, Any]) -> None:
    for module in ("hpcpolicy_apply", "hpcpolicy_node_sync"):
        attrs = docs[module]["doc"]["attributes"]
        assert attrs["check_mode"]["support"] == attrs["diff_mode"]["support"] == "full"
    assert docs["hpcpolicy_node_doctor"]["doc"]["attributes"]["diff_mode"]["support"] == "none"


def test_collection_builds_offline(tmp_path: Path) -> None:
    galaxy = tool("ansible-galaxy")
    ansible_playbook()
    proc = subprocess.run([galaxy, "collection", "build", str(COLLECTION), "--output-path",
                           str(tmp_path), "--force"], env=ansible_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    artifact = tmp_path / "hpcpolicy-site-0.1.0.tar.gz"
    with tarfile.open(artifact) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    for module in MODULES:
        assert f"plugins/modules/{module}.py" in names
    assert "plugins/module_utils/hpcpolicy_common.py" in names
    assert "meta/runtime.yml" in names
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["license"]) == ("hpcpolicy", "site",
                                                                 ["BSD-3-Clause"])


# ansible-test sanity checks that need no venv of their own (the others download pinned
# requirements from PyPI through a bootstrap host that is unreachable offline)
OFFLINE_SANITY = ("compile", "future-import-boilerplate", "metaclass-boilerplate", "shebang",
                  "no-assert", "no-smart-quotes", "use-argspec-type-path", "line-endings",
                  "empty-init", "symlinks", "ignores")


def test_offline_ansible_test_sanity(tmp_path: Path) -> None:
    """Run on a copy: ansible-test writes tests/output inside the collection it checks."""
    ansible_test = tool("ansible-test")
    copy = tmp_path / "ansible_collections" / "hpcpolicy" / "site"
    shutil.copytree(COLLECTION, copy, ignore=shutil.ignore_patterns("output", "__pycache__"))
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    version = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True,
                             check=True).stdout.strip()
    argv = [ansible_test, "sanity", "--python", version]  # the Python ansible-test runs on
    for name in OFFLINE_SANITY:
        argv += ["--test", name]
    proc = subprocess.run(argv, cwd=copy, env=ansible_env(tmp_path), capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("Running sanity test") == len(OFFLINE_SANITY), proc.stdout


# ---------------------------------------------------------------- shared helpers, in-process


def test_one_line_joins_every_problem() -> None:
    assert common.one_line("a: x\n\n  b: y  \n") == "a: x; b: y"
    assert common.one_line("") == ""


def test_ansible_diff_shape_and_summaries() -> None:
    entries: List[Dict[str, Any]] = [
        {"path": "etc/subuid", "before": "", "after": "1001:524288:65536\n"},
        {"path": "etc/big", "before": "(10 bytes, 1 lines, sha256 aa)",
         "after": "(20 bytes, 2 lines, sha256 bb)", "summarised": True, "changed_lines": 3},
    ]
    out = common.ansible_diff(entries, lambda p: "/node/" + p)
    assert out[0] == {"before_header": "/node/etc/subuid", "after_header": "/node/etc/subuid",
                      "before": "", "after": "1001:524288:65536\n"}
    assert out[1]["before"] == "(10 bytes, 1 lines, sha256 aa)\n"
    assert out[1]["after"].endswith("sha256 bb)\n")


def test_cli_flags_and_json_parsing() -> None:
    assert common.cli_flags([("--a", None), ("--b", False), ("--c", True), ("--d", 1.5)]) == \
        ["--c", "--d", "1.5"]
    assert common._last_json('noise\n{"changed": true}\n') == {"changed": True}
    assert common._last_json("[1]\n") is None
    assert common._last_json("not json") is None
    assert common._last_json("") is None


class FakeModule:
    """Only what run_cli and finish touch; the real AnsibleModule is exercised by the playbooks."""

    _diff = True

    def __init__(self, rc: int, out: str, err: str = "") -> None:
        self.reply = (rc, out, err)
        self.warnings: List[str] = []
        self.exited: Dict[str, Any] = {}

    def run_command(self, argv: List[str], check_rc: bool = False) -> Any:
        return self.reply

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def fail_json(self, **kw: Any) -> None:
        self.exited = dict(kw, failed=True)

    def exit_json(self, **kw: Any) -> None:
        self.exited = self.exited or kw


def test_cli_without_json_is_a_clean_failure() -> None:
    module = FakeModule(1, "", "Traceback ...\nImportError: no module named ldap3\n")
    payload = common.run_cli(module, ["/opt/hpcpolicy/bin/hpcpolicy", "apply"])
    assert payload["failed"] is True and payload["changes"] == []
    assert payload["msg"].startswith("/opt/hpcpolicy/bin/hpcpolicy printed no JSON object (exit 1)")


def test_cli_nonzero_exit_is_a_failure_whatever_its_json_says() -> None:
    module = FakeModule(1, '{"changed": false, "failed": false, "msg": "half done"}\n')
    assert common.run_cli(module, ["hpcpolicy"])["failed"] is True


def test_cli_warnings_and_diff_reach_ansible() -> None:
    out = json.dumps({"changed": True, "failed": False, "msg": "ok", "changes": [],
                      "diff": [{"path": "etc/x", "before": "", "after": "y\n"}]})
    module = FakeModule(0, out + "\n", "hpcpolicy: WARNING: generation 3 fails verification\n")
    common.finish(module, common.run_cli(module, ["hpcpolicy"]), header_of=lambda p: p)
    assert module.warnings == ["generation 3 fails verification"]
    assert module.exited["diff"][0]["after_header"] == "etc/x"
    assert "failed" not in module.exited


def test_library_failures_go_through_the_cli_funnel(tmp_path: Path) -> None:
    """An OS error is the path and the reason (as the CLI says it), not an internal error;
    a library error keeps its JSON fields; a bug alone carries the traceback."""
    from hpcpolicy.errors import RuntimeFailure, failure_of

    missing = tmp_path / "nosuch" / "site.toml"

    def read_missing() -> Dict[str, Any]:
        missing.read_bytes()
        return {}

    payload = common.run_library(FakeModule(0, ""), read_missing)
    assert payload["failed"] is True and payload["changes"] == []
    assert payload["msg"] == f"{missing}: No such file or directory" == failure_of(
        FileNotFoundError(2, "No such file or directory", str(missing))).msg
    assert "exception" not in payload

    err = RuntimeFailure("sync failed")
    err.details = {"generation": "000007-0badc0de"}

    def fail() -> Dict[str, Any]:
        raise err

    payload = common.run_library(FakeModule(0, ""), fail)
    assert payload["generation"] == "000007-0badc0de" and payload["msg"] == "sync failed"

    def bug() -> Dict[str, Any]:
        return {}["missing"]  # type: ignore[no-any-return]

    payload = common.run_library(FakeModule(0, ""), bug)
    assert payload["msg"] == "internal error: KeyError: 'missing'"
    assert "Traceback" in payload["exception"]


# ---------------------------------------------------------------- systemd units


def unit_lines(name: str) -> List[str]:
    return [line.strip() for line in (UNITS / name).read_text().splitlines()]


def test_units_run_node_sync_from_the_deploy_root() -> None:
    service, timer = unit_lines("hpcpolicy-sync.service"), unit_lines("hpcpolicy-sync.timer")
    assert f"ExecStart={INSTALLED_CLI} node sync --format json" in service  # reads node.toml
    assert "Type=oneshot" in service
    assert "RequiresMountsFor=/shared/hpcpolicy" in service
    assert "ProtectSystem=strict" in service and "ReadWritePaths=/etc" in service
    assert not any(line.startswith("ProtectKernelTunables=") for line in service), \
        "sysctl -p must be able to write /proc/sys"
    assert any(line.startswith("RandomizedDelaySec=") for line in timer)
    assert "WantedBy=timers.target" in timer


def test_units_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` (it needs ExecStart to exist: point it at this venv's CLI)."""
    analyze = tool("systemd-analyze")
    for name in ("hpcpolicy-sync.service", "hpcpolicy-sync.timer"):
        text = (UNITS / name).read_text().replace(INSTALLED_CLI, VENV_CLI)
        (tmp_path / name).write_text(text)
    proc = subprocess.run([analyze, "verify", "hpcpolicy-sync.service", "hpcpolicy-sync.timer"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", "hpcpolicy-sync.service"],
        cwd=tmp_path, capture_output=True, text=True, check=False)
    if "Overall exposure level" not in security.stdout:
        pytest.skip(f"systemd-analyze security --offline unsupported: {security.stderr.strip()}")
    level = security.stdout.split("Overall exposure level for")[1]
    exposure = float(level.split(":")[1].split()[0])
    assert exposure <= 4.0, security.stdout  # measured 3.4 "OK" with systemd 252
