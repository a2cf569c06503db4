#!/usr/bin/env bash
# Fails when notebooks and package disagree: exporting nbs/ or cleaning them must change nothing.
set -euo pipefail
snap() { find m2vsl nbs -type f \( -name '*.py' -o -name '*.ipynb' \) -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 md5sum; }
before=$(snap)
nbdev_export
nbdev_clean
after=$(snap)
if [ "$before" != "$after" ]; then
  echo "SYNC CHECK FAILED: nbdev_export/nbdev_clean changed these files:" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  echo "Edit the notebooks in nbs/, then run 'make export clean-nbs' and commit both." >&2
  exit 1
fi
echo "sync check: notebooks and package agree"
