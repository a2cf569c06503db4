"""Inference speed of M2VSL (issue 8): frames per second of model + fused map, at 224 px (the paper's front ends:
22,050 Hz, 3 s, 257x300 spectrograms) and at 96 px (the CPU profile's 11,025 Hz, 65x76), batch 1 and batched,
fp32 and bf16 autocast, channels_last as the model config has it, BatchNorms folded as `Localizer` runs the model (--no-fold-bn: as built); median of several timed runs after warm-up.
Side by side with every model row, a square matrix multiply at the machine's best native precision (the ceiling's,
`bench_ceiling.py`) is timed between every two timed batches: the row's share of the ceiling is the median over runs of
(model GFLOP/s ÷ GEMM GFLOP/s) of each pair, so a shared machine that slows down for a while slows both alike.
Also end to end (`Localizer.localize_batch` from in-memory image arrays and waveforms: transforms, audio front end,
model, maps resized to the original 320x240 frame). Prints JSON.

    python bench/bench_inference.py                       # CPU, the CPU profile's model (dim 512, mmt_dim 128, 10 classes)
    python bench/bench_inference.py --num-classes 221 --mmt-dim 0   # the paper's width with VGGSound's classes
    python bench/bench_inference.py --device cuda --batches 1 32 --runs 20
"""
import argparse, inspect, json, os, resource, statistics, time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import m2vsl.methods as methods
from m2vsl.audio import AudioConfig
from m2vsl.vision import ImageConfig
from m2vsl.inference import Localizer
from m2vsl.runtime import autocast, native_bf16, resolve_amp
from bench_train import cpu_name

AUDIO = {   # audio front ends: the paper's (257x300) and the CPU profile's (65x76)
    'paper': dict(sample_rate=22050, seconds=3.0, n_fft=512, win_length=512, hop_length=221),
    'cpu': dict(sample_rate=11025, seconds=3.0, n_fft=128, win_length=128, hop_length=441),
}


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()


def timeit(fn, dev, warmup, runs):
    for _ in range(warmup): fn()
    sync(dev); ts = []
    for _ in range(runs):
        t = time.perf_counter(); fn(); sync(dev); ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts


def gflop(fn)->float:
    "GFLOP (multiply-adds count 2) of one call, counted by torch's FlopCounterMode (convolutions, matmuls, attention)."
    with FlopCounterMode(display=False) as fc: fn()
    return fc.get_total_flops()/1e9


def side_by_side(fn, gemm_fn, dev, warmup, runs)->tuple:
    "Times of `fn` and of `gemm_fn` in alternation (model, GEMM, model, GEMM, ...) after `warmup` rounds of both."
    for _ in range(warmup): fn(); gemm_fn()
    sync(dev); tm, tg = [], []
    for _ in range(runs):
        t = time.perf_counter(); fn(); sync(dev); tm.append(time.perf_counter() - t)
        t = time.perf_counter(); gemm_fn(); sync(dev); tg.append(time.perf_counter() - t)
    return tm, tg


def ceiling_gemm(dev, ceiling:str|None)->tuple:
    "(precision, n, a function running one n×n×n matmul): the ceiling record's best precision and size, else this device's best native precision at n 2048 (CPU) / 4096 (CUDA)."
    from bench_ceiling import native_precisions, operands
    rec = json.loads(Path(ceiling).read_text()) if ceiling and Path(ceiling).exists() else None
    prec = rec['best_precision'] if rec else native_precisions(dev)[-1]
    n = rec['gemm'][prec]['n'] if rec else (4096 if dev.type == 'cuda' else 2048)
    x, y = operands(dev, prec, n)
    return prec, n, lambda: x @ y


def gemm_gflops(dev, n:int=2048, runs:int=5)->dict:
    "The machine's fp32 matrix-multiply speed (`bench_ceiling.gemm`; the ceiling at every native precision is `bench_ceiling.py`'s record)."
    from bench_ceiling import gemm
    return gemm(dev, 'fp32', n, runs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--configs', nargs='+', default=['224:paper', '224:cpu', '96:cpu'],
                   help='image px:audio front end (paper = 257x300 spectrogram, cpu = the CPU profile\'s 65x76)')
    p.add_argument('--batches', type=int, nargs='+', default=[1, 32])
    p.add_argument('--amps', nargs='+', default=None,
                   help="autocast modes to time (default: none, plus bf16 where the device has it natively; emulated "
                        "bf16 runs convolutions on slow reference kernels)")
    p.add_argument('--dim', type=int, default=512)
    p.add_argument('--num-classes', type=int, default=10, help='class tokens (the embedded benchmark: 10; VGGSound: 221)')
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: torch default)')
    p.add_argument('--no-e2e', action='store_true', help='skip the end-to-end localize_batch rows')
    p.add_argument('--mmt-dim', type=int, default=128, help="MMT width (the CPU profile's 128; 0: D, the paper's)")
    p.add_argument('--no-fold-bn', action='store_true', help="time the model as built, without folding its BatchNorms (Localizer(fold_bn=False))")
    p.add_argument('--ceiling', default=None, help="the machine's ceiling record (bench_ceiling.py's JSON; default: ceiling.json beside --out): "
                   "its best precision and matrix size are timed side by side with every model row")
    p.add_argument('--out', default=None, help='write the JSON record here too')
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if a.amps is None: a.amps = ['none'] + (['bf16'] if native_bf16(dev) else [])
    model, method, mcfg = methods.build('m2vsl', num_classes=a.num_classes, dim=a.dim, mmt_dim=a.mmt_dim or None)
    model = model.to(dev).eval()
    gemm = gemm_gflops(dev)
    print(json.dumps(dict(fp32_gemm=gemm)), flush=True)
    ceiling = a.ceiling or (str(Path(a.out).parent/'ceiling.json') if a.out else None)
    gprec, gn, gemm_fn = ceiling_gemm(dev, ceiling)
    gemm_gflop = 2*gn**3/1e9
    rows = []
    for conf in a.configs:
        S, aname = int(conf.split(':')[0]), conf.split(':')[1]
        acfg = AudioConfig(**AUDIO[aname])
        loc = Localizer(model, method, acfg, ImageConfig(size=S), device=dev, fold_bn=not a.no_fold_bn)
        net = loc.net                                            # what `Localizer.predict` runs (its default: BatchNorms folded)
        one = {'image': torch.randn(1, 3, S, S).to(dev), 'audio': torch.randn(1, *acfg.shape).to(dev)}
        with torch.no_grad(): gf = gflop(lambda: method.single_map(net(one), (S, S), mcfg))   # per frame
        for B in a.batches:
            g = torch.Generator().manual_seed(0)
            batch = {'image': torch.randn(B, 3, S, S, generator=g).to(dev), 'audio': torch.randn(B, *acfg.shape, generator=g).to(dev)}
            for amp in a.amps:
                def step():
                    with torch.no_grad(), autocast(amp, dev):
                        out = net(batch)
                        return method.single_map(out, (S, S), mcfg)
                ts, tg = side_by_side(step, gemm_fn, dev, a.warmup, a.runs)
                med = statistics.median(ts)
                share = statistics.median((gf*B/t)/(gemm_gflop/u) for t, u in zip(ts, tg))   # each pair's model ÷ GEMM GFLOP/s
                rows.append(dict(kind='model+map', size=S, audio_frontend=aname, audio=list(acfg.shape), batch=B, amp=amp, channels_last=mcfg.channels_last,
                                 gflop_per_frame=round(gf, 3), gflops=round(gf*B/med, 1), fps=round(B/med, 2), ms_per_batch=round(1e3*med, 2), ms_min=round(1e3*min(ts), 2),
                                 ms_max=round(1e3*max(ts), 2), runs=a.runs,
                                 gemm_side_by_side=dict(precision=gprec, n=gn, gflops_median=round(gemm_gflop/statistics.median(tg), 1),
                                                        gflops_best=round(gemm_gflop/min(tg), 1)),
                                 over_gemm_side_by_side=round(share, 3)))
                print(json.dumps(rows[-1]), flush=True)
                if not a.no_e2e:
                    rng = np.random.default_rng(0)
                    ims = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(B)]
                    auds = [(rng.uniform(-.5, .5, int(acfg.sample_rate*4)).astype(np.float32), acfg.sample_rate) for _ in range(B)]
                    loc.amp = amp
                    med, ts = timeit(lambda: loc.localize_batch(ims, auds, batch_size=B, class_maps=False), dev, 1, max(2, a.runs//2))
                    rows.append(dict(kind='localize_batch e2e (320x240 frames)', size=S, audio_frontend=aname, audio=list(acfg.shape), batch=B, amp=amp,
                                     channels_last=mcfg.channels_last, fps=round(B/med, 2), ms_per_batch=round(1e3*med, 2),
                                     ms_min=round(1e3*min(ts), 2), ms_max=round(1e3*max(ts), 2), runs=max(2, a.runs//2)))
                    print(json.dumps(rows[-1]), flush=True)
    info = dict(device=str(dev), gpu=torch.cuda.get_device_name(dev) if dev.type == 'cuda' else None,
                cpu=cpu_name(), fp32_gemm=gemm, torch_threads=torch.get_num_threads(), cpus=os.cpu_count(),
                torch=torch.__version__, model=dict(dim=a.dim, num_classes=a.num_classes, mmt_dim=mcfg.mmt_dim,
                                                    channels_last=mcfg.channels_last, fold_bn=not a.no_fold_bn),
                warmup=a.warmup, default_amp=inspect.signature(Localizer).parameters['amp'].default,
                default_amp_resolved=resolve_amp(inspect.signature(Localizer).parameters['amp'].default, dev),
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)
    rec = json.dumps({'bench': 'inference', **info, 'results': rows}, indent=1)
    print(rec)
    if a.out: Path(a.out).write_text(rec + '\n')


if __name__ == '__main__':
    main()
