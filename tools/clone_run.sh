#!/usr/bin/env bash
# A profile run in a fresh clone of the committed tree, its results copied back to reports/<name>/. Two callers:
#   make second-set   tools/clone_run.sh second_set --material clipart
#       the default profile, unchanged but for its material, on the SECOND embedded set (kit `clipart`: Open Clip Art
#       instruments, Fluid R3 sampled instrument sounds, MATE photographs; nothing shared with the default kit
#       `stamps`): checks that what learns on the first set is not tuned to it (~25 min on 2 cores).
#   make fp32         tools/clone_run.sh fp32 --amp none
#       the default profile in fp32 (`train.amp: none`), as a CPU without native bf16 runs it whatever the machine
#       (on such a CPU `amp: auto` is fp32 already): the time it takes there and whether its learning check holds.
#   make full         tools/clone_run.sh full --profile profiles/full.yaml
#       the `full` profile: every baseline, Figure 4's batch sizes, a second seed. It runs on this tree's data, and the
#       clone shares this tree's DVC cache, so the stages it has in common with this tree's last `make reproduce`
#       (same code, data and parameters: the pretraining, the default profile's methods) are restored from the cache
#       by `dvc repro`, not run again.
# The clone runs the real pipeline (`make reproduce`), so a profile goes through exactly the code, stages and settings
# of the committed tree. What comes back: the learning check, the tables and the figures.
#   CLONE_DIR   where the clone lives (default build/<name>; removed first, kept afterwards for inspection)
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
name=${1:?usage: tools/clone_run.sh NAME [--profile FILE] [--material KIT] [--amp AMP]}; shift
profile=params.yaml; material=; amp=
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=$2; shift 2;;
    --material) material=$2; shift 2;;
    --amp) amp=$2; shift 2;;
    *) echo "clone_run: unknown option $1" >&2; exit 2;;
  esac
done
dir=${CLONE_DIR:-build/$name}
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "clone_run: the clone takes the committed tree; commit (or stash) your changes first:" >&2
  git status --short --untracked-files=no >&2
  exit 1
fi
rm -rf "$dir"
git clone -q --no-hardlinks "$here" "$dir"
commit=$(git -C "$dir" rev-parse --short HEAD)                      # what the clone runs
ln -s "$here/.venv" "$dir/.venv"                                  # the same environment
mkdir -p "$dir/data"
[ -d data/material ] && ln -s "$here/data/material" "$dir/data/material"   # the kits' .debs already fetched here
cp "$profile" "$dir/params.yaml"
# the profile's params, but for the material and where the generated set goes, and the precision
root=$("$here/.venv/bin/python" - "$dir/params.yaml" "$material" "$amp" <<'PY'
import sys, yaml
from m2vsl.config import load_params   # the package's one reader of params files (checks the file too)
path, material, amp = sys.argv[1:]
p = load_params(path)
if amp: p['train']['amp'] = amp      # every stage's precision (the pretraining and evaluation read train.amp)
if material:
    if 'generate' not in p: sys.exit(f"{path}: the profile has no `generate:` section; another material needs a generated benchmark")
    p['generate']['material'] = material
    p['data']['root'] = f'data/second_{material}'
if amp or material: yaml.safe_dump(p, open(path, 'w'), sort_keys=False)
print(p['data']['root'])
PY
)
if [ -z "$material" ] && [ -d "$root" ]; then
  # same data as this tree: copy it (the clone checks it against data.dvc) and share this tree's DVC cache
  mkdir -p "$dir/$(dirname "$root")" && cp -r --reflink=auto "$root" "$dir/$root"
  # the outputs the committed dvc.lock records, from the shared cache: `dvc repro` then skips the stages they belong to
  # when nothing they depend on differs (a stage whose outputs are missing would run again)
  ( cd "$dir" && .venv/bin/dvc cache dir --local "$here/.dvc/cache" && { .venv/bin/dvc checkout -q || true; } )
fi
t0=$(date +%s)
( cd "$dir" && bash tools/reproduce.sh )
wall=$(( $(date +%s) - t0 ))
out=reports/$name
rm -rf "$out"; mkdir -p "$out/figures"
cp "$dir/reports/tables/"*.md "$dir/reports/tables/"*.csv "$out/"
cp "$dir/reports/figures/"*.png "$out/figures/"
cp "$dir/metrics/learning.json" "$out/learning.json"
{ echo "# Profile run \`$name\`"; echo
  echo "The profile \`$profile\` of commit \`$commit\`${material:+, unchanged but for \`generate.material: $material\` and \`data.root: $root\`}${amp:+, unchanged but for \`train.amp: $amp\`},"
  echo "run through \`make reproduce\` in a fresh clone by \`tools/clone_run.sh\` ($(date -u +%F)). Tables: \`table1.md\` … \`table4.md\`,"
  echo "\`seeds.md\`; figures: \`figures/\`. \`make reproduce\` there took $wall s of wall time (data generation and \`dvc repro\`;"
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || echo unknown), $(nproc) cores)."; echo
  cat "$out/learning.md"; } > "$out/README.md"
echo "clone_run: results in $out/ (learning check: $out/README.md)"
