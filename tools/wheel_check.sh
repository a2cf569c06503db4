#!/usr/bin/env bash
# Builds a wheel and imports every module of it from a fresh venv (catches a wheel missing subpackages).
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m pip wheel -q --no-deps --no-build-isolation -w "$tmp/dist" . >/dev/null
# the fresh venv sees the project's pinned deps (torch & co.) but not the project itself
python3 -m venv --system-site-packages "$tmp/venv" 2>/dev/null || python -m venv "$tmp/venv"
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$site" > "$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/m2vsl-deps.pth"
"$tmp/venv/bin/python" -m pip install -q --no-deps --disable-pip-version-check "$tmp"/dist/*.whl
cd "$tmp"
M2VSL_TMP="$tmp" "$tmp/venv/bin/python" - <<'PY'
import importlib, pkgutil, m2vsl, os
assert os.path.realpath(m2vsl.__file__).startswith(os.path.realpath(os.environ['M2VSL_TMP'])), f"m2vsl imported from {m2vsl.__file__}, not from the wheel"
mods = [m.name for m in pkgutil.walk_packages(m2vsl.__path__, 'm2vsl.')]
for m in mods: importlib.import_module(m)
print(f"wheel check: imported m2vsl {m2vsl.__version__} and {len(mods)} modules from {os.path.dirname(m2vsl.__file__)}")
PY
