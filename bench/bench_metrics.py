"""Time the single-source metrics on a VGG-SS-sized test set: 5,158 random 224×224 maps.

Every metric of `SingleSourceEvaluator` is computed (cIoU with EZ-VSL's median rule, IoU@0.3/0.5, mean cIoU, AUC,
SLAVC's confidence / precision / AP / F1, per-image and pooled pixel AP). Maps and GTs come from a fixed pool built
before timing, so the figure is the evaluator's cost, not the random generator's. One warm-up pass over a few batches,
then the median of `--runs` full passes. Prints a JSON record and writes it to `--out` when given.

    python bench/bench_metrics.py --runs 3 --out reports/bench_metrics.json
"""
import argparse, json, os, platform, statistics, sys, time
from pathlib import Path

import numpy as np
import torch

from m2vsl.metrics import SingleSourceEvaluator, gt_from_boxes


def pool(n:int, size:int, seed:int):
    "n raw float32 maps (smooth blobs plus noise, like upsampled similarity maps) and n VGG-SS-style box GTs."
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.normal(size=(n, 1, 7, 7)).astype(np.float32))
    maps = torch.nn.functional.interpolate(low, size=(size, size), mode='bilinear', align_corners=True)[:, 0].numpy()
    maps += 0.05*rng.normal(size=maps.shape).astype(np.float32)
    gts = []
    for _ in range(n):
        k = rng.choice([1, 1, 1, 2, 3])
        xy = rng.random((k, 2))*0.7; wh = 0.1 + rng.random((k, 2))*0.5
        gts.append(gt_from_boxes(np.concatenate([xy, np.minimum(xy + wh, 1)], 1)[:, [0, 1, 2, 3]], size=(size, size)))
    return maps, np.stack(gts), rng.integers(0, 3, n)


def run_once(maps, gts, nbox, n_total:int, batch:int)->tuple[float,dict]:
    ev = SingleSourceEvaluator(iou_thresholds=(0.3, 0.5))
    t0 = time.perf_counter()
    done, j = 0, 0
    while done < n_total:
        b = min(batch, n_total - done)
        idx = (np.arange(b) + j) % len(maps)
        ev.update(maps[idx], gts[idx], n_boxes=nbox[idx])
        done += b; j += b
    res = ev.compute()
    return time.perf_counter() - t0, res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=5158, help='maps to evaluate (VGG-SS test set: 5,158)')
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--batch', type=int, default=64, help='maps per update() call')
    ap.add_argument('--pool', type=int, default=256, help='distinct maps generated before timing')
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', type=Path, default=None, help='write the JSON record here too')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    maps, gts, nbox = pool(a.pool, a.size, a.seed)
    run_once(maps, gts, nbox, min(2*a.batch, a.n), a.batch)          # warm-up
    times, res = [], None
    for _ in range(a.runs):
        t, res = run_once(maps, gts, nbox, a.n, a.batch); times.append(t)
    rec = dict(benchmark='single_source_metrics', n_maps=a.n, map_size=[a.size, a.size], batch=a.batch,
               runs=a.runs, seconds_median=statistics.median(times), seconds_all=times,
               maps_per_second=a.n/statistics.median(times), bar_seconds=30.0,
               passes_bar=statistics.median(times) < 30.0, metrics=sorted(k for k in res),
               host=dict(python=platform.python_version(), numpy=np.__version__, torch=torch.__version__,
                         cpus=os.cpu_count(), threads=a.threads, machine=platform.machine()))
    txt = json.dumps(rec, indent=2)
    print(txt)
    if a.out: a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(txt + '\n')
    return rec


if __name__ == '__main__':
    sys.exit(0 if main()['passes_bar'] else 1)
