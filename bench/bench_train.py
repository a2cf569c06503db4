"""Training-step cost of every method side by side (issue 9): seconds per step and samples/s at equal batch and
resolution, forward + loss + backward + Adam step on in-memory tensors (the data loader is `bench_loader.py`).

Two sizes: the default CPU profile's (96 px, 65x76 spectrogram, `profiles/cpu.yaml`'s model settings) and the
paper's (224 px, 257x300). Within one size every model is built first and the timed steps are interleaved
(method 1, method 2, ..., method 1, ...), so a slow patch of the machine hits all of them alike; each figure is the
median of `--runs` steps after `--warmup` steps, with min and max. Extra rows switch one fast path at a time for
M2VSL and EZ-VSL: the other precision (fp32 where the default `amp: auto` resolves to bf16; bf16 rows only on CPUs
with native bf16, since elsewhere autocast runs convolutions on slow reference kernels), channels_last off,
torch.compile on (its compile time is reported). A reference row, `ezvsl naive`, is EZ-VSL's training step written
as its authors' code runs it (`NaiveEZVSL`: torchvision ResNet18s, fp32, no channels_last, Adam, their max-MIL loss),
the yardstick our rows are set against. Each row also carries the GFLOP of its step (forward + backward, counted
once by torch's FlopCounterMode on a warm-up step; not for torch.compile rows), which the report sets against the
machine's ceiling (`bench_ceiling.py`).
Prints and writes one JSON record.

    python bench/bench_train.py --out bench/out/train.json                 # everything (about 15 min on 2 cores)
    python bench/bench_train.py --sizes 96 --methods m2vsl ezvsl --no-extras   # the headline ratio only
"""
import argparse, json, os, platform, resource, statistics, sys, time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import m2vsl.methods as methods
from m2vsl.config import load_params, model_fields
from m2vsl.runtime import autocast, native_bf16, resolve_amp

ROOT = Path(__file__).resolve().parents[1]
SIZES = {   # image px -> (spectrogram F, T, profile whose model settings apply)
    96: (65, 76, 'cpu'),
    224: (257, 300, 'paper'),
}
CPU = torch.device('cpu')
DEFAULT_AMP = resolve_amp('auto', CPU)   # the profiles' amp: auto on this machine
NAIVE = 'ezvsl naive'   # the reference row's label
ALL = ['ezvsl', 'm2vsl', 'mmc_only', 'mmt_only', 'neither', 'attention10k', 'ots', 'lvs', 'cam']


def cpu_name()->str:
    "The CPU's model name (/proc/cpuinfo on Linux), else what `platform` knows."
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()


def profile_model(name:str)->dict:
    "The `model:` overrides of a profile (applied to every method whose config has the field, as the pipeline does)."
    return dict(load_params(ROOT/'profiles'/f'{name}.yaml').get('model') or {})   # the package's one params reader


def build(method:str, model_kw:dict, num_classes:int, channels_last:bool=True):
    "The method's model with the profile's settings its config has (the pipeline's rule: `pipeline.model_fields`)."
    kw = model_fields(method, {**model_kw, 'num_classes': num_classes, 'channels_last': channels_last, 'pretrained': False})
    return methods.build(method, **kw)


class Runner:
    "One model, its optimizer and a fixed batch; `step()` is one training step."
    def __init__(self, label, method, model_kw, num_classes, batch, amp=DEFAULT_AMP, channels_last=True, compile=False):
        self.label, self.method, self.amp = label, method, amp
        self.model, self.meth, self.cfg = build(method, model_kw, num_classes, channels_last)
        self.model.train()
        self.opt = torch.optim.Adam(self.model.parameters(), 1e-4)
        self.batch, self.compile_s = batch, None
        self.fwd = self.model
        if compile:
            self.fwd = torch.compile(self.model)
            t = time.perf_counter(); self.step(); self.compile_s = time.perf_counter() - t
        self.times = []

    def step(self):
        with autocast(self.amp, torch.device('cpu')):
            out = self.fwd(self.batch)
            loss, _ = self.meth.loss(out, self.batch, self.cfg)
        self.opt.zero_grad(set_to_none=True); loss.backward(); self.opt.step()

    def count_flops(self):
        "One step under FlopCounterMode (it counts as a warm-up step): `self.gflop`, forward + backward + loss."
        if self.compile_s is not None: self.step(); self.gflop = None; return
        with FlopCounterMode(display=False) as fc: self.step()
        self.gflop = fc.get_total_flops()/1e9

    def timed(self):
        t = time.perf_counter(); self.step(); self.times.append(time.perf_counter() - t)


class NaiveEZVSL(nn.Module):
    "EZ-VSL as its authors' `model.py` writes it (torchvision ResNet18s, 1-channel audio conv1, max-pooled audio, max-MIL loss)."
    def __init__(self, tau:float=0.03, dim:int=512):
        super().__init__()
        self.tau = tau
        self.imgnet = torchvision.models.resnet18(weights=None)   # theirs starts from ImageNet weights: the same cost
        self.imgnet.avgpool, self.imgnet.fc = nn.Identity(), nn.Identity()
        self.img_proj = nn.Conv2d(512, dim, kernel_size=(1, 1))
        self.audnet = torchvision.models.resnet18(weights=None)
        self.audnet.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        self.audnet.avgpool, self.audnet.fc = nn.AdaptiveMaxPool2d((1, 1)), nn.Identity()
        self.aud_proj = nn.Linear(512, dim)

    def max_xmil_loss(self, img, aud):
        B = img.shape[0]
        Slogits = torch.einsum('nchw,mc->nmhw', img, aud)/self.tau
        logits = Slogits.flatten(-2, -1).max(dim=-1)[0]
        labels = torch.arange(B).long().to(img.device)
        return F.cross_entropy(logits, labels) + F.cross_entropy(logits.permute(1, 0), labels), Slogits

    def forward(self, image, audio):
        s = -(-image.shape[-1]//32)                        # theirs: unflatten(1, (512, 7, 7)), i.e. 224 px only
        img = F.normalize(self.img_proj(self.imgnet(image).unflatten(1, (512, s, s))), dim=1)
        aud = F.normalize(self.aud_proj(self.audnet(audio)), dim=1)
        loss, logits = self.max_xmil_loss(img, aud)
        with torch.no_grad():
            B = img.shape[0]
            Savg = logits[torch.arange(B), torch.arange(B)]
        return loss, Savg


class NaiveRunner(Runner):
    "The authors' training step: fp32, no channels_last, Adam (their optimizer), `loss.backward()`."
    def __init__(self, label, batch, **_):
        self.label, self.method, self.amp, self.cfg, self.compile_s = label, 'ezvsl', 'none', None, None
        self.model = NaiveEZVSL().train()
        self.opt = torch.optim.Adam(self.model.parameters(), 1e-4)
        self.batch, self.times = batch, []

    def step(self):
        loss, _ = self.model(self.batch['image'], self.batch['audio'])
        self.opt.zero_grad(set_to_none=True); loss.backward(); self.opt.step()


def make_batch(B:int, size:int, F:int, T:int, C:int, seed:int=0)->dict:
    g = torch.Generator().manual_seed(seed)
    return dict(image=torch.randn(B, 3, size, size, generator=g), audio=torch.randn(B, 1, F, T, generator=g),
                labels=(torch.rand(B, C, generator=g) < 2/C).float())


def run_size(size:int, a)->list:
    F, T, prof = SIZES[size]
    model_kw = profile_model(prof)
    C = a.num_classes
    batch = make_batch(a.batch, size, F, T, C)
    names = a.methods if size != 224 or not a.methods_224 else [m for m in a.methods if m in a.methods_224]
    specs = [dict(label=m, method=m) for m in names]
    if 'ezvsl' in names and not a.no_naive: specs.insert(1, dict(label=NAIVE, method='ezvsl', naive=True))
    if not a.no_extras:
        for m in ('m2vsl', 'ezvsl'):
            if m not in names: continue
            if DEFAULT_AMP == 'bf16': specs.append(dict(label=f'{m} fp32', method=m, amp='none'))
            specs.append(dict(label=f'{m} channels_last off', method=m, channels_last=False))
            if a.compile and size in a.compile_sizes:
                specs.append(dict(label=f'{m} torch.compile', method=m, compile=True))
        if 'm2vsl' in names and size == 224 and a.classes_221:
            specs.append(dict(label='m2vsl 221 classes', method='m2vsl', num_classes=221))
        if 'm2vsl' in names and model_kw.get('mmt_dim'):
            specs.append(dict(label='m2vsl mmt_dim=D', method='m2vsl', model_kw={**model_kw, 'mmt_dim': None}))
    runners = []
    for s in specs:
        nc = s.pop('num_classes', C)
        b = batch if nc == C else make_batch(a.batch, size, F, T, nc)
        kw = s.pop('model_kw', model_kw)
        print(f'[{size} px] building {s["label"]}', file=sys.stderr, flush=True)
        runners.append((NaiveRunner if s.pop('naive', False) else Runner)(model_kw=kw, num_classes=nc, batch=b, **s))
    for r in runners: r.count_flops()
    for _ in range(a.warmup - 1):
        for r in runners: r.step()
    for i in range(a.runs):
        for r in runners: r.timed()
        print(f'[{size} px] round {i + 1}/{a.runs}', file=sys.stderr, flush=True)
    rows = []
    base = {r.label: statistics.median(r.times) for r in runners}
    for r in runners:
        med = statistics.median(r.times)
        ref = 'ezvsl' if not r.label.startswith('m2vsl ') and not r.label.startswith('ezvsl ') else r.label.split()[0]
        row = dict(size=size, spectrogram=f'{F}x{T}', batch=a.batch, label=r.label, method=r.method, amp=r.amp,
                   step_s_median=med, step_s_min=min(r.times), step_s_max=max(r.times), samples_per_s=a.batch/med,
                   ratio_to_ezvsl=med/base['ezvsl'] if 'ezvsl' in base else None,
                   compile_s=r.compile_s, runs=len(r.times), gflop_per_step=r.gflop,
                   model_config={k: v for k, v in r.cfg.to_dict().items()} if hasattr(r.cfg, 'to_dict') else None)
        if r.label.endswith((' fp32', ' channels_last off', ' torch.compile')) and r.label.split()[0] in base:
            row['speed_vs_default'] = base[r.label.split()[0]]/med   # >1: this variant is faster than the default
        if NAIVE in base and r.label != NAIVE: row['naive_ezvsl_step_over_this'] = base[NAIVE]/med   # >1: faster than the authors' step
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[96, 224])
    p.add_argument('--methods', nargs='+', default=ALL)
    p.add_argument('--methods-224', nargs='+', default=None, help='only these of --methods at 224 px (a slow CPU)')
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--num-classes', type=int, default=10, help='class tokens (the embedded benchmark has 10)')
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    p.add_argument('--no-extras', action='store_true', help='skip the fp32 / channels_last / compile / width rows')
    p.add_argument('--no-naive', action='store_true', help="skip the reference row (EZ-VSL as its authors' code trains)")
    p.add_argument('--compile', action=argparse.BooleanOptionalAction, default=True)
    p.add_argument('--compile-sizes', type=int, nargs='+', default=[96], help='sizes that get the torch.compile rows')
    p.add_argument('--classes-221', action=argparse.BooleanOptionalAction, default=True,
                   help='also time M2VSL with VGGSound\'s 221 class tokens at 224 px')
    p.add_argument('--out', default=None)
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if 'ezvsl' in a.methods: a.methods = ['ezvsl'] + [m for m in a.methods if m != 'ezvsl']
    if a.methods_224 and 'ezvsl' in a.methods and 'ezvsl' not in a.methods_224: a.methods_224 = ['ezvsl', *a.methods_224]
    t0 = time.time()
    rows = [r for s in a.sizes for r in run_size(s, a)]
    rec = dict(bench='train_step', rows=rows, machine=dict(
        platform=platform.platform(), processor=cpu_name(), cpus=os.cpu_count(),
        torch=torch.__version__, threads=torch.get_num_threads(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
        native_bf16=native_bf16(CPU), default_amp=DEFAULT_AMP),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024, wall_s=time.time() - t0,
        protocol=f'median of {a.runs} interleaved steps after {a.warmup} warm-up steps; random in-memory batch')
    js = json.dumps(rec, indent=1)
    print(js)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(js + '\n')


if __name__ == '__main__':
    main()
