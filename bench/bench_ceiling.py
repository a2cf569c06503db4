"""The machine's ceiling (issue 22): its CPU model name, its native precisions and the speed of a compute-bound square
matrix multiply at each (GFLOP/s, a multiply-add counted as 2, best of `--runs` after a warm-up, at the faster of two
sizes, torch threads = the machine's cores). Every other record's speed is set against the best of these in the report (`bench/report.py`):
a model's GFLOP/s ÷ this GFLOP/s says how near the kernels run to what the machine can do, on any machine.

Native precisions: fp32 always; on a CPU, bf16 when oneDNN runs it natively (AVX512-BF16 or AMX,
`m2vsl.runtime.native_bf16`; elsewhere bf16 is emulated and slower than fp32, so it is no ceiling); on CUDA, bf16
when the GPU supports it and fp16 (tf32 is left off: fp32 is fp32).

    python bench/bench_ceiling.py --out bench/out/ceiling.json
    python bench/bench_ceiling.py --device cuda
"""
import argparse, json, os, platform, re, statistics, time
from pathlib import Path

import torch

from m2vsl.runtime import native_bf16
from bench_train import cpu_name

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def cores()->int:
    "The CPU cores this process may use (its affinity mask where the OS has one)."
    try: return len(os.sched_getaffinity(0))
    except AttributeError: return os.cpu_count() or 1


def native_precisions(dev:torch.device)->list:
    "The precisions `dev` computes natively, fp32 first."
    if dev.type == 'cuda': return ['fp32'] + (['bf16'] if torch.cuda.is_bf16_supported() else []) + ['fp16']
    return ['fp32'] + (['bf16'] if native_bf16(dev) else [])


def operands(dev:torch.device, precision:str, n:int)->tuple:
    "The two n×n matrices every timed matmul multiplies (seeded), at `precision` on `dev`."
    g = torch.Generator(device=dev).manual_seed(0)
    return tuple(torch.randn(n, n, generator=g, device=dev).to(DTYPES[precision]) for _ in range(2))


def gemm(dev:torch.device, precision:str, n:int, runs:int=5, warmup:int=2)->dict:
    "GFLOP/s of an n×n×n matrix multiply at `precision` on `dev`: best and median of `runs`."
    x, y = operands(dev, precision, n)
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    for _ in range(warmup): x @ y
    sync(); ts = []
    for _ in range(runs):
        t = time.perf_counter(); x @ y; sync(); ts.append(time.perf_counter() - t)
    flop = 2*n**3
    return dict(n=n, runs=runs, gflops_best=round(flop/min(ts)/1e9, 1), gflops_median=round(flop/statistics.median(ts)/1e9, 1))


def machine_class(dev:torch.device, name:str, precisions:list)->str:
    "A short folder name for the machine's class, e.g. `amd-epyc-avx2` or `intel-xeon-avx512-bf16` (a suggestion for BENCH_OUT)."
    if dev.type == 'cuda':
        return re.sub(r'[^a-z0-9]+', '-', torch.cuda.get_device_name(dev).lower()).strip('-')
    words = [w for w in re.sub(r'\(r\)|\(tm\)|cpu|processor|@.*', ' ', name.lower()).split() if w.isalpha()][:2]
    cap = torch.backends.cpu.get_cpu_capability().lower()
    return '-'.join(words + [cap] + (['bf16'] if 'bf16' in precisions else []))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cpu', help="'cpu' (default) or 'cuda'")
    p.add_argument('--n', type=int, nargs='+', default=None, help='matrix sides tried, the fastest kept (default: 2048 4096 on a CPU, 4096 8192 on CUDA)')
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--threads', type=int, default=0, help="torch CPU threads (0: the machine's cores)")
    p.add_argument('--out', default=None)
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads or cores())
    torch.backends.cuda.matmul.allow_tf32 = False
    sides = a.n or ([4096, 8192] if dev.type == 'cuda' else [2048, 4096])
    precs = native_precisions(dev)
    tried = {pr: [gemm(dev, pr, n, a.runs) for n in sides] for pr in precs}
    ceiling = {pr: max(v, key=lambda r: r['gflops_best']) for pr, v in tried.items()}
    best = max(precs, key=lambda pr: ceiling[pr]['gflops_best'])
    name = cpu_name()
    rec = dict(bench='ceiling', device=str(dev), cpu=name, gpu=torch.cuda.get_device_name(dev) if dev.type == 'cuda' else None,
               cores=cores(), torch_threads=torch.get_num_threads(), torch=torch.__version__, platform=platform.platform(),
               cpu_capability=torch.backends.cpu.get_cpu_capability(), native_precisions=precs, gemm=ceiling, gemm_tried=tried,
               best_precision=best, best_gflops=ceiling[best]['gflops_best'], machine_class=machine_class(dev, name, precs),
               protocol=f"n×n×n matmul for n in {sides}, the fastest n kept; best of {a.runs} after 2 warm-up runs, {torch.get_num_threads()} threads")
    js = json.dumps(rec, indent=1)
    print(js)
    if a.out: Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(js + '\n')


if __name__ == '__main__':
    main()
