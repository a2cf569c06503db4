#!/usr/bin/env bash
# `make second-set`: the default profile, unchanged but for its material, on the SECOND embedded set (kit `clipart`:
# Open Clip Art instruments, Fluid R3 sampled instrument sounds, MATE photographs; no picture, photograph or sound
# shared with the default kit `stamps`). It checks that what learns on the first set is not tuned to it.
#
# It runs the real pipeline (`make reproduce`) in a fresh local clone of the committed tree, so the second set goes
# through exactly the code, stages and settings of the first, and copies the clone's learning check and tables to
# reports/second_set/. Takes about as long as `make reproduce` plus the data generation (~25 min on 2 cores).
#   SECOND_SET_DIR   where the clone lives (default build/second-set; removed first, kept afterwards for inspection)
#   SECOND_SET_MATERIAL   the kit (default clipart)
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
dir=${SECOND_SET_DIR:-build/second-set}
material=${SECOND_SET_MATERIAL:-clipart}
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "second-set: the clone takes the committed tree; commit (or stash) your changes first:" >&2
  git status --short --untracked-files=no >&2
  exit 1
fi
rm -rf "$dir"
git clone -q --no-hardlinks "$here" "$dir"
commit=$(git -C "$dir" rev-parse --short HEAD)                      # what the clone runs
ln -s "$here/.venv" "$dir/.venv"                                  # the same environment
mkdir -p "$dir/data"
[ -d data/material ] && ln -s "$here/data/material" "$dir/data/material"   # the kits' .debs already fetched here
# the default params, but for the material and where the generated set goes
"$here/.venv/bin/python" - "$dir/params.yaml" "$material" <<'PY'
import sys, yaml
from m2vsl.config import load_params   # the package's one reader of params files (checks the file too)
path, material = sys.argv[1:]
p = load_params(path)
if 'generate' not in p: sys.exit(f"{path}: the profile has no `generate:` section; the second set needs a generated benchmark")
p['generate']['material'] = material
p['data']['root'] = f'data/second_{material}'
yaml.safe_dump(p, open(path, 'w'), sort_keys=False)
PY
( cd "$dir" && bash tools/reproduce.sh )
out=reports/second_set
mkdir -p "$out"
cp "$dir/reports/tables/"*.md "$dir/reports/tables/"*.csv "$out/"
cp "$dir/metrics/learning.json" "$out/learning.json"
{ echo "# The second embedded set (kit \`$material\`)"; echo
  echo "The default profile of commit \`$commit\`, unchanged but for \`generate.material: $material\`"
  echo "and \`data.root: data/second_$material\`, run through \`make reproduce\` by \`make second-set\` ($(date -u +%F))."; echo
  cat "$out/learning.md"; } > "$out/README.md"
echo "second-set: results in $out/ (learning check: $out/README.md)"
