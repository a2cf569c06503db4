#!/usr/bin/env bash
# Install truth: builds the wheel and installs it WITH its declared dependencies (settings.ini `requirements`) alone into
# a fresh venv that sees nothing of .venv (no --system-site-packages, no .pth), then imports every module and runs one
# `m2vsl localize` on a generated clip with a tiny freshly built weights folder.
#
# Where the packages come from: pip's own configuration here (pip.conf / PIP_* variables: find-links and the local
# indexes, plus the index pip uses by default), the same pip `make setup` installs requirements.lock with; nothing else.
# requirements.lock is passed as constraints (-c): it pins the versions the resolver picks and adds no package, so a
# module imported at runtime but missing from `requirements` still fails the import step.
#
# Cost: torch with its CUDA wheels makes the venv about as big as .venv (~6 GB) and takes minutes to install the first
# time. The venv is therefore kept in $M2VSL_WHEEL_VENVS (default ~/.cache/m2vsl-wheel-check), one per hash of the
# requirements and the lock: a new venv whenever either changes, so a package dropped from `requirements` is never
# left over from an older install. M2VSL_WHEEL_FRESH=1 always builds a new one (and removes it afterwards).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
tmp=$(mktemp -d)
venvs=${M2VSL_WHEEL_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/m2vsl-wheel-check}
key=$( { grep -E '^(requirements|min_python) *=' settings.ini; cat requirements.lock; } | sha256sum | cut -c1-16)
venv="$venvs/$key"
if [ "${M2VSL_WHEEL_FRESH:-0}" = 1 ]; then venv="$tmp/venv"; fi
trap 'rm -rf "$tmp"' EXIT
python -m pip wheel -q --no-deps --no-build-isolation -w "$tmp/dist" . >/dev/null
whl=$(ls "$tmp"/dist/m2vsl-*.whl)
if [ ! -f "$venv/.complete" ]; then                     # (a venv cannot be moved: its scripts name its python)
  rm -rf "$venv"; mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"                               # no --system-site-packages: only what the wheel declares
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c requirements.lock "$whl"
  touch "$venv/.complete"
else
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$whl"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c requirements.lock "$whl"   # declared deps present
fi
"$venv/bin/python" -m pip check
cd "$tmp"
M2VSL_TMP="$tmp" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$venv/bin/python" - <<'PY'
import importlib, os, pkgutil, subprocess, sys, sysconfig
from pathlib import Path
import m2vsl
assert os.path.realpath(m2vsl.__file__).startswith(os.path.realpath(sysconfig.get_paths()['purelib'])), \
    f"m2vsl imported from {m2vsl.__file__}, not from the wheel's venv"
mods = [m.name for m in pkgutil.walk_packages(m2vsl.__path__, 'm2vsl.')]
for m in mods: importlib.import_module(m)
print(f"wheel check: imported m2vsl {m2vsl.__version__} and {len(mods)} modules from {os.path.dirname(m2vsl.__file__)}")
# one generated clip (the embedded benchmark's generator) and a tiny model's weights folder
from m2vsl.synth import generate
from m2vsl.train import TrainConfig
from m2vsl.inference import save_pretrained
t = Path(os.environ['M2VSL_TMP'])
root = generate(t/'data', size='tiny', workers=1, vgg_train=1, vgg_test=1, inst_train=0, inst_test=0, inst_duets=0,
                s4_train=0, s4_val=0, s4_test=0, ms3_test=0)
clip = sorted((root/'vggsound'/'frames').glob('*.jpg'))[0].stem
cfg = TrainConfig(method='m2vsl', model=dict(num_classes=3, dim=32, mmt_heads=4), image=dict(size=32), dvclive=False,
                  audio=dict(sample_rate=8000, n_fft=128, win_length=128, hop_length=240))
save_pretrained(m2vsl.create_model('m2vsl', num_classes=3, dim=32, mmt_heads=4), cfg, t/'w', class_names=['a', 'b', 'c'])
exe = Path(sys.executable).with_name('m2vsl')
r = subprocess.run([str(exe), 'localize', '--no-progress', '--checkpoint', str(t/'w'), '--image', str(root/'vggsound'/'frames'/f'{clip}.jpg'),
                    '--audio', str(root/'vggsound'/'audio'/f'{clip}.wav'), '--out', str(t/'overlay.png')], capture_output=True, text=True)
assert r.returncode == 0 and (t/'overlay.png').stat().st_size > 0, r.stdout + r.stderr
print(f"wheel check: {exe.name} localize on generated clip {clip}: {r.stdout.strip()}")
PY
