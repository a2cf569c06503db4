"""`m2vsl localize --video` end to end against the model alone (issue 22): a generated clip (default 30 s, 640×360,
25 frames/s, a moving disc over a textured background, a tone in an AAC track) through `m2vsl.cli.localize_video`
(decode, resize, spectrograms, model, overlays, H.264 encode, audio copy, JSON), and the same model's batched
frames/s on in-memory tensors at the same batch, image size, audio front end and precision (model + fused map, as
`bench_inference.py`'s model+map rows). The ratio end-to-end ÷ model-only says how much of the model's speed the video
path keeps. Random weights: speed does not depend on them. Prints and writes one JSON record.

    python bench/bench_video.py --out bench/out/video.json
    python bench/bench_video.py --seconds 5 --runs 1        # a quick look
"""
import argparse, json, os, statistics, tempfile, time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

import m2vsl.methods as methods
from m2vsl.audio import AudioConfig
from m2vsl.vision import ImageConfig
from m2vsl.inference import Localizer
from m2vsl.runtime import autocast
from bench_inference import AUDIO, gflop, timeit
from bench_train import cpu_name


def write_clip(path:Path, seconds:float=30.0, width:int=640, height:int=360, fps:int=25, sr:int=44100, seed:int=0):
    "An H.264 + AAC clip: a disc moving over a fixed texture, a 440 Hz tone with a slow tremolo."
    import av
    rng = np.random.default_rng(seed)
    bg = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    n = int(round(seconds*fps))
    with av.open(str(path), 'w') as c:
        v = c.add_stream('libx264', rate=fps); v.width, v.height, v.pix_fmt = width, height, 'yuv420p'
        a = c.add_stream('aac', rate=sr); a.layout = 'mono'
        for k in range(n):
            cx, cy = width*(0.2 + 0.6*k/max(n - 1, 1)), height*(0.5 + 0.25*np.sin(k/fps))
            im = bg.copy(); im[(xx - cx)**2 + (yy - cy)**2 < (height/8)**2] = (230, 40, 40)
            f = av.VideoFrame.from_ndarray(im, format='rgb24'); f.pts = k; f.time_base = Fraction(1, fps)
            for p in v.encode(f): c.mux(p)
        for p in v.encode(None): c.mux(p)
        t = np.arange(int(sr*seconds))/sr
        wav = (0.3*np.sin(2*np.pi*440*t)*(0.6 + 0.4*np.sin(2*np.pi*0.5*t))).astype(np.float32)
        step = 1024
        for i in range(0, len(wav), step):
            fr = av.AudioFrame.from_ndarray(wav[None, i:i + step], format='fltp', layout='mono'); fr.sample_rate = sr; fr.pts = i
            for p in a.encode(fr): c.mux(p)
        for p in a.encode(None): c.mux(p)
    return n


def make_localizer(size:int=224, audio:str='cpu', dim:int=512, mmt_dim:int=128, num_classes:int=10, amp:str='auto', device='cpu'):
    "A `Localizer` of a randomly initialised M2VSL (the CPU profile's widths by default) at `size` px."
    model, method, _ = methods.build('m2vsl', num_classes=num_classes, dim=dim, mmt_dim=mmt_dim or None)
    return Localizer(model, method, AudioConfig(**AUDIO[audio]), ImageConfig(size=size), device=device, amp=amp)


def model_fps(loc:Localizer, batch:int, runs:int, warmup:int=2)->tuple:
    "The model's batched frames/s (model + fused map on random in-memory tensors, the Localizer's precision), the batches' times, its GFLOP per frame."
    S, dev, cfg = loc.image_cfg.size, loc.device, loc.model.cfg
    S = S if isinstance(S, int) else S[0]
    g = torch.Generator().manual_seed(0)
    b = {'image': torch.randn(batch, 3, S, S, generator=g).to(dev), 'audio': torch.randn(batch, *loc.audio_cfg.shape, generator=g).to(dev)}
    def step():
        with torch.no_grad(), autocast(loc.amp, dev): return loc.method.single_map(loc.net(b), (S, S), cfg)   # what predict runs
    one = {k: v[:1] for k, v in b.items()}
    with torch.no_grad(), autocast(loc.amp, dev): gf = gflop(lambda: loc.method.single_map(loc.net(one), (S, S), cfg))
    med, ts = timeit(step, dev, warmup, runs)
    return batch/med, ts, gf


def main(argv=None):
    from m2vsl.cli import localize_video
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seconds', type=float, default=30.0)
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=360)
    p.add_argument('--fps', type=int, default=25)
    p.add_argument('--size', type=int, default=224, help="the model's input size (px)")
    p.add_argument('--audio', default='cpu', choices=sorted(AUDIO), help="audio front end (cpu: 65x76, paper: 257x300)")
    p.add_argument('--batch', type=int, default=16, help="frames per batch (`m2vsl localize --batch-size`'s default)")
    p.add_argument('--amp', default='auto')
    p.add_argument('--dim', type=int, default=512)
    p.add_argument('--mmt-dim', type=int, default=128, help="MMT width (the CPU profile's 128; 0: dim, the paper's)")
    p.add_argument('--num-classes', type=int, default=10)
    p.add_argument('--runs', type=int, default=2, help='end-to-end runs (the model-only figure: 4× as many batches)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', default=None)
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    loc = make_localizer(a.size, a.audio, a.dim, a.mmt_dim, a.num_classes, amp=a.amp, device=a.device)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t = time.perf_counter(); n = write_clip(d/'clip.mp4', a.seconds, a.width, a.height, a.fps); gen_s = time.perf_counter() - t
        localize_video(loc, d/'clip.mp4', d/'warm.mp4', batch_size=a.batch, progress=False)    # warm-up (kernels, allocator)
        fps_model, ts_model, gf = model_fps(loc, a.batch, 4*a.runs)
        e2e = []
        for _ in range(a.runs):
            t = time.perf_counter(); r = localize_video(loc, d/'clip.mp4', d/'out.mp4', batch_size=a.batch, progress=False)
            e2e.append(r['n_frames']/(time.perf_counter() - t))
        fps_model2, ts_model2, _ = model_fps(loc, a.batch, 4*a.runs, warmup=1)   # again after: a drifting machine shows
    fps_e2e = statistics.median(e2e)
    rec = dict(bench='localize_video', clip=dict(seconds=a.seconds, width=a.width, height=a.height, fps=a.fps, frames=n, generate_s=round(gen_s, 1)),
               size=a.size, audio_frontend=a.audio, audio=list(loc.audio_cfg.shape), batch=a.batch, amp=loc.amp,
               model=dict(dim=loc.model.cfg.dim, mmt_dim=loc.model.cfg.mmt_dim, num_classes=loc.model.cfg.num_classes),
               gflop_per_frame=round(gf, 3), e2e_fps=round(fps_e2e, 2), e2e_fps_all=[round(x, 2) for x in e2e],
               model_fps=round(a.batch/statistics.median(ts_model + ts_model2), 2),
               model_fps_before_after=[round(fps_model, 2), round(fps_model2, 2)],
               device=str(loc.device), cpu=cpu_name(), cpus=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
               protocol=f'median of {a.runs} end-to-end runs after a warm-up run; model-only: median of {8*a.runs} batches, half before and half after')
    rec['e2e_over_model'] = round(rec['e2e_fps']/rec['model_fps'], 3)
    js = json.dumps(rec, indent=1)
    print(js)
    if a.out: Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(js + '\n')


if __name__ == '__main__':
    main()
