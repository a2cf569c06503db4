#!/usr/bin/env bash
# `make reproduce`: (1) the data set the pipeline consumes, (2) `dvc repro`. Run from anywhere; needs `make setup`.
#
# The embedded benchmark is versioned by data.dvc, which holds the hash of data/embedded as generated from the
# `generate:` section of params.yaml. There is no DVC remote: a fresh clone regenerates the data deterministically
# from its seed, and `dvc status data.dvc` then confirms the bytes match the committed hash.
# Real data: point `data.root` in params.yaml at a folder in the real layouts (README: "Real data").
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 PYTHONUNBUFFERED=1
start=$(date +%s)
# params.yaml through the package's one reader (a bad value stops here, naming the file, the key and the value)
params=$(python -c "from m2vsl.pipeline import load_params; p = load_params('params.yaml'); g = p.get('generate')
print(p['data']['root']); print('' if not g else ' '.join(f'--{k} {v}' for k, v in g.items()))")
root=$(sed -n 1p <<<"$params")
# profiles with a `generate:` section run on a generated benchmark (written to data.root; idempotent)
gen=$(sed -n 2p <<<"$params")
if [ -n "$gen" ]; then python -m m2vsl.synth --out "$root" $gen; fi
if [ "$root" = "data/embedded" ]; then
  if [ "${M2VSL_SKIP_DATA_CHECK:-0}" != 1 ]; then
    # the hash DVC computes for the folder against the one data.dvc records (not `dvc status`: on a fresh clone
    # without a DVC cache it reports "not in cache" whether or not the bytes match)
    if ! python tools/data_hash.py data.dvc; then
      echo "data/embedded does not match the hash committed in data.dvc." >&2
      echo "If you changed the 'generate:' parameters on purpose, record the new data with: dvc commit -f data.dvc" >&2
      echo "Otherwise this platform generated different bytes; please report it (set M2VSL_SKIP_DATA_CHECK=1 to go on)." >&2
      exit 1
    fi
    echo "data/embedded matches data.dvc"
  fi
fi
dvc repro "$@"
echo "make reproduce: wall time $(( $(date +%s) - start )) s"
