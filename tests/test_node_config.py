"""`/etc/hpcpolicy/node.toml`: the node's settings, read by node sync and node doctor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from node_fixtures import Deploy, deploy, node_root

from hpcpolicy.errors import InvalidInput, UsageError
from hpcpolicy.node import config

__all__ = ["deploy", "node_root"]  # fixtures, imported for pytest


def write_config(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_all_keys_read(tmp_path: Path) -> None:
    path = write_config(tmp_path / "node.toml", 'deploy_root = "/shared/hpcpolicy"\n'
                        'deploy_owner = "nobody"\nallowed_signers = "/etc/hpcpolicy/a"\n'
                        'channel = "canary"\nclass = "gpu"\n')
    cfg = config.load(str(path))
    assert (cfg.deploy_root, cfg.allowed_signers, cfg.channel, cfg.node_class) == (
        "/shared/hpcpolicy", "/etc/hpcpolicy/a", "canary", "gpu")
    assert cfg.owner_uid() == 65534 and cfg.trusted_uids() == {0, 65534}
    assert cfg.override(deploy_owner="123").owner_uid() == 123  # the command line wins


def test_unknown_and_bad_keys_all_named(tmp_path: Path) -> None:
    path = write_config(tmp_path / "node.toml", 'deploy_root = "relative"\nowner = "x"\n'
                        'channel = "Bad Name"\ndeploy_owner = true\n')
    with pytest.raises(InvalidInput) as err:
        config.load(str(path))
    text = str(err.value)
    for key in ("owner: unknown key", "deploy_root: must be an absolute path",
                "channel: must be", "deploy_owner: must be a user name or a uid"):
        assert f"{path}: {key}" in text
    assert err.value.exit_code == 2


def test_unknown_user_named_with_file_and_key(tmp_path: Path) -> None:
    path = write_config(tmp_path / "node.toml", 'deploy_owner = "no-such-user-here"\n')
    with pytest.raises(UsageError, match=f"{path}: deploy_owner: no user 'no-such-user-here'"):
        config.load(str(path))


def test_writable_or_foreign_config_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path / "node.toml", 'deploy_root = "/x"\n', mode=0o666)
    with pytest.raises(InvalidInput, match="writable by group or other"):
        config.load(str(path))
    os.chmod(path, 0o644)
    os.chown(path, 65534, 65534)
    with pytest.raises(InvalidInput, match="owned by uid 65534, not root"):
        config.load(str(path))


def test_missing_default_is_empty_missing_explicit_is_an_error(tmp_path: Path) -> None:
    assert config.load() == config.NodeConfig()  # conftest points the default nowhere
    with pytest.raises(InvalidInput, match="cannot read"):
        config.load(str(tmp_path / "absent.toml"))
    os.mkfifo(tmp_path / "fifo.toml")
    with pytest.raises(InvalidInput, match="not a regular file"):
        config.load(str(tmp_path / "fifo.toml"))


def test_sync_reads_node_toml_and_options_win(cli: Any, tmp_path: Path, deploy: Deploy,
                                              node_root: Path) -> None:
    name = deploy.publish()
    path = write_config(tmp_path / "node.toml", f'deploy_root = "{deploy.root}"\n')
    res = cli("node", "sync", "--config", path, "--root", node_root, "--format", "json")
    doc = json.loads(res.out)
    assert res.rc == 0 and doc["generation"] == name, doc
    # --from wins over the file's deploy_root
    write_config(path, 'deploy_root = "/nonexistent/hpcpolicy"\n')
    res = cli("node", "sync", "--config", path, "--from", deploy.root, "--root", node_root)
    assert res.rc == 0, res.err
    res = cli("node", "sync", "--config", path, "--root", node_root)
    assert res.rc == 1 and "/nonexistent/hpcpolicy" in res.err


def test_sync_without_any_deploy_root_is_usage_error(cli: Any, node_root: Path) -> None:
    res = cli("node", "sync", "--root", node_root, "--format", "json")
    doc = json.loads(res.out)
    assert res.rc == 2 and "give --from DEPLOY_ROOT or set deploy_root" in doc["msg"]
    assert doc["generation"] is None and doc["changes"] == []


def test_symlinked_config_judged_where_it_lives(tmp_path: Path) -> None:
    """A root-owned file in a directory a user owns can be replaced by that user."""
    home = tmp_path / "home"
    home.mkdir()
    target = write_config(home / "node.toml", 'deploy_root = "/x"\n')
    os.chown(home, 65534, 65534)
    link = tmp_path / "node.toml"
    link.symlink_to(target)
    with pytest.raises(InvalidInput, match=f"its directory {home} is owned by uid 65534"):
        config.load(str(link))


def _console(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script as the timer runs it, with the modules it imported (-X importtime)."""
    console = str(Path(sys.executable).parent / "hpcpolicy")
    if not os.path.exists(console):
        pytest.skip("no console script next to this interpreter")
    return subprocess.run([sys.executable, "-X", "importtime", console, *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_idle_sync_reuses_the_checked_node_toml_until_it_changes(
        tmp_path: Path, deploy: Deploy, node_root: Path) -> None:
    """A full sync records node.toml's checked content with its identity; idle runs reuse it
    (no TOML parser imported) while the file is unchanged, and any change is read again."""
    deploy.publish()
    path = write_config(tmp_path / "node.toml", f'deploy_root = "{deploy.root}"\n')
    argv = ("node", "sync", "--config", str(path), "--root", str(node_root), "--format", "json")
    first = _console(*argv)
    assert first.returncode == 0 and json.loads(first.stdout)["changed"] is True, first.stderr
    state = json.loads((node_root / "var/lib/hpcpolicy/installed.json").read_text())
    assert state["node_toml"]["doc"] == {"deploy_root": str(deploy.root)}

    idle = _console(*argv)
    imported = {line.rsplit("|", 1)[-1].strip() for line in idle.stderr.splitlines()}
    assert idle.returncode == 0 and "nothing to do" in json.loads(idle.stdout)["msg"]
    assert "hpcpolicy.node.idle" in imported and not {"tomllib", "tomli"} & imported

    # the same bytes written again (new ctime): read again and recorded, then reused
    path.write_text(path.read_text())
    for parsed in (True, False):
        again = _console(*argv)
        imported = {line.rsplit("|", 1)[-1].strip() for line in again.stderr.splitlines()}
        assert again.returncode == 0 and "nothing to do" in json.loads(again.stdout)["msg"]
        assert bool({"tomllib", "tomli"} & imported) is parsed

    # a changed setting takes effect at once: a channel nobody published
    path.write_text(f'deploy_root = "{deploy.root}"\nchannel = "canary"\n')
    changed = _console(*argv)
    assert changed.returncode == 1 and "channels/canary" in json.loads(changed.stdout)["msg"]

    # a broken file is refused even though the state holds an earlier, good content
    path.write_text("deploy_root = [\n")
    broken = _console(*argv)
    assert broken.returncode == 2 and str(path) in json.loads(broken.stdout)["msg"]
    assert "not valid TOML" in json.loads(broken.stdout)["msg"]
