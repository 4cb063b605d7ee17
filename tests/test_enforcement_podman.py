"""Real rootless Podman (Debian's 4.3) with the rendered storage.conf and containers.conf.

Everything runs as root in a private mount namespace (the host's /etc, /srv and containers
state are covered, never changed): tmpfs over /srv, the rendered etc/containers bound over
/etc/containers, copies of passwd/group/subuid/subgid with a throwaway user bound over the
real ones. Root fills the site image store /srv/store from the loopback registry (an image
with files owned by uid 1000 and a 0700 directory, as real images have), opens its
metadata to users as `node doctor` says, and the throwaway user then runs the image from the
store with `--pull=never`, cannot remove it, and cannot write into the store.

The second test shows why read-only binds need `node doctor`: a filesystem mounted below a
read-only bind's source stays writable inside a rootless Podman container (Podman 4.3 refuses
`rro`), and doctor's check, reading the namespace's mountinfo, names it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from registry_fixtures import Registry, registry, skip_unless_able

from hpcpolicy.directory.model import Snapshot, User
from hpcpolicy.node.enforce_checks import readable_command
from hpcpolicy.policy.load import load_text
from hpcpolicy.render.tree import render_all

__all__ = ["registry"]

UID = 61234
STORE = "/srv/store"
PODMAN = "podman --runtime runc --cgroup-manager cgroupfs --events-backend file"

_NS = r"""
set -eu
W="$1"
mount -t tmpfs -o mode=0755 tmpfs /srv
for f in passwd group subuid subgid; do mount --bind "$W/etc/$f" /etc/$f; done
mount --bind "$W/etc/containers" /etc/containers
for d in /var/lib /var/cache; do
    if [ -d "$d/containers" ]; then mount -t tmpfs tmpfs "$d/containers"
    else mount -t tmpfs tmpfs "$d"; mkdir "$d/containers"; fi
done
if [ -d /run/containers ]; then mount -t tmpfs tmpfs /run/containers
else mount -t tmpfs tmpfs /run; fi
mkdir -p /srv/store /srv/users /srv/home /srv/xdg
chown UID:UID /srv/home /srv/xdg
chmod 700 /srv/xdg
chmod 1777 /srv/users
as_user() {
    HOME=/srv/home XDG_RUNTIME_DIR=/srv/xdg PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        setpriv --reuid UID --regid UID --clear-groups "$@"
}
""".replace("UID", str(UID))


# what `node doctor` tells an admin to run: root fills the store with 0700 directories
OPEN_STORE = readable_command(STORE, "overlay") + " && cd /"


def _fill(ref: str) -> str:
    """Root pulls into the store (its own storage, the store as graphroot)."""
    return (f"{PODMAN} --root {STORE} --runroot /srv/root-run pull --tls-verify=false {ref} "
            ">/dev/null")


def _image(base: Path) -> Path:
    """busybox with files owned by 1000:1000 and a 0700 directory (umoci as root keeps owners)."""
    rootfs = base / "rootfs"
    for d in ("bin", "etc", "home/app", "secret"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for name in ("sh", "cat", "ls", "id", "touch", "echo"):
        (rootfs / "bin" / name).symlink_to("busybox")
    (rootfs / "etc" / "hpcpolicy-test").write_text("from the site store\n")
    (rootfs / "home" / "app" / "data").write_text("app data\n")
    (rootfs / "secret" / "key").write_text("s\n")
    for rel in ("home/app", "home/app/data", "secret", "secret/key"):
        os.chown(rootfs / rel, 1000, 1000)
    (rootfs / "secret").chmod(0o700)
    oci = base / "oci"
    for step in (["umoci", "init", "--layout", str(oci)],
                 ["umoci", "new", "--image", f"{oci}:1.0"],
                 ["umoci", "insert", "--image", f"{oci}:1.0", str(rootfs), "/"],
                 ["umoci", "config", "--image", f"{oci}:1.0", "--config.cmd", "/bin/sh",
                  "--config.env", "PATH=/bin", "--architecture", "amd64", "--os", "linux"]):
        subprocess.run(step, check=True, capture_output=True, timeout=60)
    extra = base / "extra"
    (extra / "etc").mkdir(parents=True)
    (extra / "etc" / "version").write_text("2\n")
    for step in (["umoci", "tag", "--image", f"{oci}:1.0", "2.0"],
                 ["umoci", "insert", "--image", f"{oci}:2.0", str(extra), "/"]):
        subprocess.run(step, check=True, capture_output=True, timeout=60)
    return oci


def _site(registry: Registry, extra: str = "") -> str:
    return f"""schema = 1
[site]
name = "store"
deploy_root = "/srv/hpcpolicy"
runtimes = ["podman"]
[images]
default = "deny"
[[images.rule]]
scope = "{registry.host}/enforce"
action = "allow"
[runtime.storage]
rootless_storage_path = "/srv/users/$UID"
additional_image_stores = ["{STORE}"]
mount_program = "/usr/bin/fuse-overlayfs"
{extra}
"""


def _node_etc(base: Path, site: str) -> Dict[str, bytes]:
    """The rendered tree's etc/containers plus passwd/group/subuid/subgid with the user."""
    policy = load_text(site, "site.toml", str(base))
    user = User("enforce-test", UID, UID, "files")
    tree = render_all(policy, Snapshot(users={user.name: user}), [])["default"]
    etc = base / "etc"
    (etc / "containers").mkdir(parents=True)
    for rel, data in tree.items():
        if rel.startswith("etc/containers/"):
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    shutil.copy("/etc/passwd", etc / "passwd")
    shutil.copy("/etc/group", etc / "group")
    with open(etc / "passwd", "a") as handle:
        handle.write(f"enforce-test:x:{UID}:{UID}::/srv/home:/bin/sh\n")
    with open(etc / "group", "a") as handle:
        handle.write(f"enforce-test:x:{UID}:\n")
    for name in ("subuid", "subgid"):
        (etc / name).write_text(f"{UID}:1400000:65536\n")
    for f in ("passwd", "group", "subuid", "subgid"):
        (etc / f).chmod(0o644)
    return tree


def _run(base: Path, body: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    script = _NS + body
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(base)], capture_output=True, text=True, timeout=timeout, check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})


def _able() -> None:
    skip_unless_able(("podman", "runc", "fuse-overlayfs", "setpriv", "newuidmap"))
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static missing")
    if not os.path.isdir("/srv"):
        pytest.skip("no /srv to cover with a tmpfs")


@pytest.fixture
def image_ref(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    _able()
    oci = _image(tmp_path_factory.mktemp("store-image"))
    for tag in ("1.0", "2.0"):
        res = registry.skopeo(registry.open_etc, "copy", "--dest-tls-verify=false",
                              f"oci:{oci}:{tag}", f"docker://{registry.ref('enforce/tool', tag)}")
        assert res.returncode == 0, res.stderr
    return registry.ref("enforce/tool")


def test_rootless_podman_runs_from_the_read_only_site_store(
        registry: Registry, image_ref: str, tmp_path: Path) -> None:
    tree = _node_etc(tmp_path, _site(registry))
    assert b"CONTAINERS_STORAGE_CONF" in tree["etc/containers/containers.conf"]
    doctor = (f"{sys.executable} -c 'import json, sys; from hpcpolicy.node.enforce_checks "
              "import check_image_stores as c; "
              f"print(json.dumps(c(\"/\", {{\"image_stores\": [\"{STORE}\"]}})))'")
    body = f"""
{_fill(image_ref)}
printf "%s\\n" "DOCTOR-BEFORE $({doctor})"
{OPEN_STORE}
printf "%s\\n" "DOCTOR-AFTER $({doctor})"
FORMAT='{{{{.Repository}}}}:{{{{.Tag}}}} {{{{.ReadOnly}}}}'
echo "IMAGES $(as_user {PODMAN} images --format "$FORMAT")"
as_user {PODMAN} run --rm --pull=never --network none {image_ref} sh -c \\
    'cat /etc/hpcpolicy-test; id -u; cat /home/app/data;
     echo changed > /etc/hpcpolicy-test && echo COPY-UP-OK'
as_user {PODMAN} rmi {image_ref} 2>&1 && echo RMI-ALLOWED || echo RMI-REFUSED
as_user touch {STORE}/planted 2>/dev/null && echo STORE-WRITABLE || echo STORE-READ-ONLY
as_user touch {STORE}/overlay-images/planted 2>/dev/null && echo META-WRITABLE \\
    || echo META-READ-ONLY
echo "STORE-FILE $(cat {STORE}/overlay/*/diff/etc/hpcpolicy-test)"
echo "USER-STORAGE $(ls /srv/users)"
{_fill(image_ref.replace(":1.0", ":2.0"))}
printf "%s\\n" "DOCTOR-NEW-PULL $({doctor})"
{OPEN_STORE}
printf "%s\\n" "DOCTOR-REOPENED $({doctor})"
as_user {PODMAN} run --rm --pull=never --network none {image_ref.replace(":1.0", ":2.0")} \\
    cat /etc/version
"""
    res = _run(tmp_path, body)
    out = res.stdout
    assert res.returncode == 0, res.stdout + res.stderr
    before = json.loads(out.split("DOCTOR-BEFORE ", 1)[1].splitlines()[0])
    after = json.loads(out.split("DOCTOR-AFTER ", 1)[1].splitlines()[0])
    assert before[0][1] == "FAIL" and "users cannot read" in before[0][2]  # root's 0700 dirs
    assert after[0][1] == "OK", after
    assert f"IMAGES {image_ref} true" in out  # the user sees it, read-only, without a pull
    assert "from the site store\n0\napp data\nCOPY-UP-OK" in out
    assert "RMI-REFUSED" in out and "read-only image" in out
    assert "STORE-READ-ONLY" in out and "META-READ-ONLY" in out
    assert "STORE-FILE from the site store" in out  # the container's write stayed its own
    assert f"USER-STORAGE {UID}" in out  # rootless_storage_path expanded $UID
    # a later pull by root adds 0700 directories again: doctor names them until reopened
    new = json.loads(out.split("DOCTOR-NEW-PULL ", 1)[1].splitlines()[0])
    reopened = json.loads(out.split("DOCTOR-REOPENED ", 1)[1].splitlines()[0])
    assert new[0][1] == "FAIL" and "overlay-images/" in new[0][2]
    assert reopened[0][1] == "OK", reopened
    assert out.rstrip().endswith("2")


def test_submount_below_a_readonly_bind_is_writable_and_doctor_names_it(
        registry: Registry, image_ref: str, tmp_path: Path) -> None:
    bind = '[[bind]]\nsource = "/srv/data"\nreadonly = true\nruntimes = ["podman"]\n'
    site = _site(registry).replace("[images]", bind + "[images]")
    tree = _node_etc(tmp_path, site)
    assert b'"/srv/data:/srv/data:ro"' in tree["etc/containers/containers.conf"]
    needs = ('{"readonly_binds": [{"source": "/srv/data", "target": "/srv/data", '
             '"runtimes": ["podman"]}]}')
    doctor = (f"{sys.executable} -c 'import json; from hpcpolicy.node.enforce_checks import "
              f"check_readonly_binds as c; print(json.dumps(c(\"/\", {needs})))'")
    body = f"""
{_fill(image_ref)}
{OPEN_STORE}
mkdir -p /srv/data/sub && chmod 1777 /srv/data
printf "%s\\n" "DOCTOR-FLAT $({doctor})"
mount -t tmpfs -o mode=1777 tmpfs /srv/data/sub
printf "%s\\n" "DOCTOR-SUB $({doctor})"
as_user {PODMAN} run --rm --pull=never --network none {image_ref} sh -c \\
    'touch /srv/data/top 2>/dev/null && echo TOP-WRITABLE || echo TOP-READ-ONLY;
     touch /srv/data/sub/planted && echo SUB-WRITABLE || echo SUB-READ-ONLY'
ls /srv/data/sub
"""
    res = _run(tmp_path, body)
    out = res.stdout
    assert res.returncode == 0, res.stdout + res.stderr
    flat = json.loads(out.split("DOCTOR-FLAT ", 1)[1].splitlines()[0])
    sub = json.loads(out.split("DOCTOR-SUB ", 1)[1].splitlines()[0])
    assert flat[0][1] == "OK"
    assert sub[0][0] == "readonly-bind /srv/data (podman)" and sub[0][1] == "FAIL"
    assert "/srv/data/sub" in sub[0][2]
    # what doctor warns about, for real: `ro` holds on the top mount only
    assert "TOP-READ-ONLY" in out
    assert "SUB-WRITABLE" in out and "planted" in out.splitlines()[-1]
