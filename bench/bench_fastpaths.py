"""Do the fast defaults change the results? (issue 9). Trains M2VSL with the default profile (params.yaml: `amp: auto`,
i.e. bf16 autocast where the CPU has native bf16, channels_last, MMT width `model.mmt_dim`) and once more with each fast
path switched off, on the same data and seed, then scores every run with the package's `evaluate()` on the
single-source and S4 test sets. (On a CPU without native bf16 the default already is fp32, so the `fp32` variant
repeats it.)

    python bench/bench_fastpaths.py --out bench/out/fastpaths.json          # 5 trainings: about 15 min on 2 cores

Variants (each one switch away from the default):
  default      the profile as it is
  fp32         train.amp=none (and evaluated in fp32)
  mmt_dim=D    model.mmt_dim=null: the paper's 512-wide transformer
The tolerance stated in README/bench.md is the spread that one training run already has (see `--seeds`); a
difference inside it is "no change we can measure"; outside it is reported as a change.
"""
import argparse, json, os, platform, shutil, tempfile, time
from pathlib import Path

import torch

from m2vsl.config import load_params, train_config
from m2vsl.pipeline import dataset
from m2vsl.train import train
from m2vsl.evaluate import evaluate
from m2vsl.checkpoint import model_from_checkpoint

VARIANTS = {'default': [], 'fp32': ['amp=none'], 'mmt_dim=D': ['model.mmt_dim=null']}
SETS = {'single': ('single', dict(iou_thresholds=(0.3, 0.5))), 'seg': ('seg', dict(fscore_batch=20))}
KEYS = {'single': ['iou@0.5', 'iou@0.3', 'mean_ciou', 'auc', 'pixel_ap'], 'seg': ['miou', 'fscore']}


def run(p, name, overrides, seed, root):
    cfg = train_config(p, 'm2vsl', str(root/f'{name}-s{seed}'), [*overrides, f'seed={seed}', 'progress=false'])
    t = time.time(); train(cfg); train_s = time.time() - t
    model, _, mcfg = model_from_checkpoint(root/f'{name}-s{seed}'/'checkpoints'/'best.pt')
    out = dict(variant=name, seed=seed, overrides=overrides, train_s=round(train_s, 1), amp=cfg.amp)
    for key, (task, kw) in SETS.items():
        r = evaluate(model, dataset(p, key), task, batch_size=50, amp=cfg.amp, evaluator_kw=kw, progress=False)
        out[key] = {k: float(r['metrics'][k]) for k in KEYS[key]}
    print(json.dumps(out), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--params', default='params.yaml')
    ap.add_argument('--variants', nargs='+', default=list(VARIANTS))
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='seeds of the default (its run-to-run spread)')
    ap.add_argument('--out', default=None)
    a = ap.parse_args(argv)
    p = load_params(a.params)
    root = Path(tempfile.mkdtemp(prefix='m2vsl-fastpaths-'))
    rows = []
    try:
        for name in a.variants:
            for seed in (a.seeds if name == 'default' else a.seeds[:1]):
                rows.append(run(p, name, VARIANTS[name], seed, root))
    finally: shutil.rmtree(root, ignore_errors=True)
    defaults = [r for r in rows if r['variant'] == 'default']
    spread = {f'{s}/{k}': max(r[s][k] for r in defaults) - min(r[s][k] for r in defaults)
              for s in SETS for k in KEYS[s]} if len(defaults) > 1 else {}
    ref = defaults[0]
    diffs = {r['variant']: {f'{s}/{k}': r[s][k] - ref[s][k] for s in SETS for k in KEYS[s]}
             for r in rows if r['variant'] != 'default'}
    rec = dict(bench='fastpaths', profile=p.get('profile'), rows=rows, seed_spread=spread, diff_to_default_seed0=diffs,
               machine=dict(platform=platform.platform(), cpus=os.cpu_count(), torch=torch.__version__,
                                                                             threads=torch.get_num_threads()))
    js = json.dumps(rec, indent=1)
    print(js)
    if a.out: Path(a.out).write_text(js + '\n')


if __name__ == '__main__':
    main()
