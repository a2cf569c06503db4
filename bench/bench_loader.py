"""Loader throughput: clips/s with 0, 1 and 2 DataLoader workers (decode + resample + spectrogram + image transforms).

    python bench/bench_loader.py                                   # 224 px, default AudioConfig (22,050 Hz, 257×300)
    python bench/bench_loader.py --size 128 --sample-rate 11025 --n-fft 256 --win-length 256
    python bench/bench_loader.py --root data/embedded/vggsound --split train   # an existing EZ-VSL-layout folder

Without --root it writes N synthetic clips shaped like prepared VGGSound data (640×360 JPEG frames, 10 s mono
22,050 Hz 16-bit wavs) to a temporary folder. Prints one JSON object.
"""
import argparse, json, os, resource, statistics, tempfile, time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from m2vsl.audio import AudioConfig
from m2vsl.vision import ImageConfig
from m2vsl.data import make_dataset, collate
from bench_train import cpu_name


def write_clips(root:Path, n:int, seed:int=0):
    rng = np.random.default_rng(seed)
    (root/'frames').mkdir(parents=True); (root/'audio').mkdir(); (root/'metadata').mkdir()
    ids = [f"bench{k:06d}_{k:06d}" for k in range(n)]
    base = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    for k, i in enumerate(ids):
        Image.fromarray(np.roll(base, 7*k, 1)).save(root/'frames'/f"{i}.jpg", quality=90)
        sf.write(root/'audio'/f"{i}.wav", (0.1*rng.standard_normal(22050*10)).astype('float32'), 22050, subtype='PCM_16')
    (root/'metadata'/'train.txt').write_text('\n'.join(ids) + '\n')
    return ids


def measure(ds, workers:int, batch:int, epochs:int=2)->float:
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False, num_workers=workers, collate_fn=collate,
                                     persistent_workers=workers > 0)
    for _ in dl: break                                 # warm-up: worker start, resampler construction
    t, n = time.perf_counter(), 0
    for _ in range(epochs):
        for b in dl: n += len(b['id'])
    return n/(time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--sample-rate', type=int, default=22050)
    ap.add_argument('--n-fft', type=int, default=512)
    ap.add_argument('--win-length', type=int, default=512)
    ap.add_argument('--hop-length', type=int, default=AudioConfig.hop_length)
    ap.add_argument('--n', type=int, default=96, help='synthetic clips')
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--runs', type=int, default=3, help='timed passes per worker count (median, min, max)')
    ap.add_argument('--out', default=None, help='write the JSON record here too')
    ap.add_argument('--root', default=None)
    ap.add_argument('--split', default='train', help="'train' (random crop + flip) or 'test' (squash)")
    ap.add_argument('--limit', type=int, default=0, help='use only the first N clips of --root (0: all)')
    a = ap.parse_args()
    acfg = AudioConfig(sample_rate=a.sample_rate, n_fft=a.n_fft, win_length=a.win_length, hop_length=a.hop_length)
    icfg = ImageConfig(size=a.size)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.root) if a.root else Path(tmp)/'vggsound'
        if not a.root: write_clips(root, a.n)
        ds = make_dataset(root, 'vggsound', a.split, audio_cfg=acfg, image_cfg=icfg)
        if a.limit: ds = torch.utils.data.Subset(ds, range(min(a.limit, len(ds))))
        x = ds[0]
        res = {'root': str(a.root) if a.root else None, 'image_size': a.size, 'audio_cfg': vars(acfg), 'audio_shape': list(x['audio'].shape),
               'image_shape': list(x['image'].shape), 'clips': len(ds), 'batch': a.batch, 'split': a.split,
               'cpus': os.cpu_count(), 'load_avg_1m': round(os.getloadavg()[0], 2), 'torch_threads_main': torch.get_num_threads(), 'machine': cpu_name(),
               'runs': a.runs}
        runs = {str(w): [measure(ds, w, a.batch) for _ in range(a.runs)] for w in a.workers}
        res['clips_per_s'] = {w: round(statistics.median(v), 1) for w, v in runs.items()}
        res['clips_per_s_range'] = {w: [round(min(v), 1), round(max(v), 1)] for w, v in runs.items()}
        res['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024
    print(json.dumps(res))
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__': main()
