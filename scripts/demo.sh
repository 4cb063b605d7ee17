#!/usr/bin/env bash
# Set up .venv and run the main job on the bundled demo site (etc/demo): validate, publish a
# generation into ./demo-out/shared, show it, install it into a node tree ./demo-out/node, and
# explain one audit decision. No LDAP, no root. Safe to run again: the second apply publishes
# nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh 2>&1 | grep -v -e "^ *!!" -e "^ *\*" -e "^ *$" -e Warning -e corresp -e "^ *Please" -e "^ *By 20" -e "^ *See http" -e "name as your" -e "with strategy" >&2 || true
hp=.venv/bin/hpcpolicy
out="$PWD/demo-out"
mkdir -p "$out"
chmod 0755 "$out"
# The publisher refuses a deploy root owned by anyone but root or [site] deploy_owner: the demo
# runs as you, so it publishes from a copy of the site naming you the deploy owner.
.venv/bin/python - "$out/site.toml" "$(id -un)" "$PWD/etc/demo" <<'PY'
import sys, tomli_w
try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib
with open("etc/demo/site.toml", "rb") as f:
    site = tomllib.load(f)
site["site"]["deploy_owner"] = sys.argv[2]
for key in ("passwd", "group"):
    site["directory"]["files"][key] = sys.argv[3] + "/" + site["directory"]["files"][key]
with open(sys.argv[1], "wb") as f:
    tomli_w.dump(site, f)
PY
set -x
"$hp" validate "$out/site.toml"
# --init: the first apply creates the deploy root; later ones refuse a missing one (an unmounted share)
"$hp" apply "$out/site.toml" --deploy-root "$out/shared" --init --diff
"$hp" apply "$out/site.toml" --deploy-root "$out/shared"
"$hp" status --deploy-root "$out/shared"
"$hp" subid list --deploy-root "$out/shared"
# what a node does (into a private root here; on a node --root is /). A node trusts a deploy root
# owned by root or by the deploy owner it is told about (node.toml or --deploy-owner).
mkdir -p "$out/node"
"$hp" node sync --from "$out/shared" --root "$out/node" --deploy-owner "$(id -un)" --no-reload
"$hp" audit "$out/site.toml" --user alice --image registry.example.org/bio/blast:2.14 --explain
set +x
echo
echo "Published generation: $out/shared/current/ ; installed node tree: $out/node/etc"
find "$out/shared/current/" -type f | sort
