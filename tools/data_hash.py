"""Does a DVC-tracked output on disk hash to what its .dvc file records? Exit 0 if so, 1 if not (both printed).

    python tools/data_hash.py data.dvc

Uses DVC's own hashing (`Output.get_hash`), so it works on a fresh clone with an empty DVC cache, where
`dvc status` can only say "not in cache".
"""
import sys
from dvc.repo import Repo

def main(dvcfile:str='data.dvc')->int:
    bad = 0
    for out in Repo('.').stage.collect(dvcfile)[0].outs:
        want, got = out.hash_info.value, out.get_hash().value
        print(f"{out}: {'matches' if got == want else 'DIFFERS from'} {dvcfile} ({got} vs recorded {want})")
        bad += got != want
    return int(bad > 0)

if __name__ == '__main__': sys.exit(main(*sys.argv[1:]))
