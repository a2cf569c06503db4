"""Inference bars (issue 8): from_pretrained/localize plumbing, the `m2vsl localize` CLI (image, video, folder), bad
input (clear message, non-zero exit, nothing written), a trained checkpoint's peaks in the boxes, the explorer notebook."""
import json, os, subprocess, sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import m2vsl.methods as methods
from m2vsl.inference import save_pretrained, from_pretrained, overlay, blend
from m2vsl.runtime import resolve_amp
from m2vsl.synth import make_clip, make_classes
from m2vsl.config import TrainConfig

REPO = Path(__file__).parent.parent
FPS, SECONDS, SIDE, SR = 10, 2.0, 96, 16000


def cli(*args, timeout=300):
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    return subprocess.run([sys.executable, '-m', 'm2vsl.cli', 'localize', '--no-progress', *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def write_video(path, frames, audio=None, sr=SR, fps=FPS, acodec='aac'):
    "frames (N, H, W, 3) uint8; audio (samples,) float in [-1, 1] or None (no audio track)."
    with av.open(str(path), 'w') as c:
        v = c.add_stream('libx264', rate=fps); v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], 'yuv420p'
        a = c.add_stream(acodec, rate=sr) if audio is not None else None
        if a is not None: a.layout = 'mono'
        fmt = 's16' if acodec.startswith('pcm_s16') else 'fltp'
        for i, f in enumerate(frames):
            fr = av.VideoFrame.from_ndarray(f, format='rgb24'); fr.pts = i
            for p in v.encode(fr): c.mux(p)
        for p in v.encode(None): c.mux(p)
        if a is not None:
            n = a.codec_context.frame_size or 1024
            x = np.asarray(audio, np.float32)
            for i in range(0, len(x), n):
                xi = x[None, i:i+n].copy() if fmt == 'fltp' else np.round(x[None, i:i+n]*32767).astype(np.int16)
                fr = av.AudioFrame.from_ndarray(xi, format=fmt, layout='mono'); fr.sample_rate = sr
                fr.pts = i
                for p in a.encode(fr): c.mux(p)
            for p in a.encode(None): c.mux(p)


def probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format='rgb24') for f in c.decode(v)]
        auds = [(s.codec_context.name, s.codec_context.sample_rate) for s in c.streams.audio]
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0)) if auds else 0
    return frames, auds, samples


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp('inference')
    # an untrained tiny model with a 1 s window (shorter than the 2 s clip, so the window visibly slides)
    cfg = TrainConfig(method='m2vsl', model=dict(num_classes=10, dim=32, mmt_heads=4), image=dict(size=64),
                      audio=dict(sample_rate=8000, seconds=1.0, n_fft=128, win_length=128, hop_length=240))
    torch.manual_seed(0)
    save_pretrained(methods.METHODS['m2vsl_model'].model_cls(cfg.model), cfg, d/'weights',
                    class_names=[c.name for c in make_classes(10)])
    clip = make_clip(0, 'video', 0, (3,), make_classes(10), n_frames=int(FPS*SECONDS), size=SIDE, seconds=SECONDS, sr=SR)
    write_video(d/'clip.mp4', clip['frames'], clip['audio'])
    write_video(d/'mute.mp4', clip['frames'], None)
    write_video(d/'pcm.mkv', clip['frames'], clip['audio'], acodec='pcm_s16le')
    write_video(d/'silent.mp4', clip['frames'], np.zeros(int(SR*SECONDS), np.float32))
    (d/'broken.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' + os.urandom(2000))
    Image.fromarray(clip['frames'][0]).save(d/'frame.jpg')
    sf.write(d/'frame.wav', clip['audio'], SR)
    return d, clip


def leftovers(folder, stem):
    return sorted(p.name for p in Path(folder).iterdir() if stem in p.name)


def test_roundtrip_and_localize(work):
    d, clip = work
    loc = from_pretrained(d/'weights', amp='none')    # fp32: the equalities below are exact up to float rounding
    r = loc.localize(d/'frame.jpg', d/'frame.wav')
    assert r.map.shape == (SIDE, SIDE) and r.size == (SIDE, SIDE)
    assert set(r.scales) == {'mmc', 1, 2, 3, 4} and r.scores.shape == (10,)
    assert r.top[0]['name'] == make_classes(10)[r.top[0]['index']].name
    # (waveform, sr) input gives the same map as the file; batched == single
    r2 = loc.localize(np.asarray(Image.open(d/'frame.jpg')), (clip['audio'], SR))
    np.testing.assert_allclose(r2.map, r.map, atol=1e-4)
    rb = loc.localize_batch([d/'frame.jpg']*3, [d/'frame.wav']*3, batch_size=2)
    for x in rb: np.testing.assert_allclose(x.map, r.map, atol=1e-4)
    # the default precision ('auto': bf16 autocast where the CPU has native bf16, else fp32) gives nearly the same map
    fast = from_pretrained(d/'weights')
    assert fast.amp == resolve_amp('auto', 'cpu')
    rf = fast.localize(d/'frame.jpg', d/'frame.wav')
    print(f"amp={fast.amp}: max |map - fp32 map| = {np.abs(rf.map - r.map).max():.3f}")
    assert np.abs(rf.map - r.map).max() < 0.1
    # the weights file is safetensors (no pickle): loading never calls torch.load
    import torch.serialization
    orig = torch.load
    torch.load = lambda *a, **k: (_ for _ in ()).throw(AssertionError('torch.load called'))
    try: from_pretrained(d/'weights')
    finally: torch.load = orig
    assert overlay(d/'frame.jpg', r.map).size == (SIDE, SIDE)


def test_video_mode(work, tmp_path):
    d, clip = work
    out = tmp_path/'out.mp4'
    p = cli('--checkpoint', d/'weights', '--video', d/'clip.mp4', '--out', out, '--classes', '--batch-size', 8)
    assert p.returncode == 0, p.stderr
    frames, auds, samples = probe(out)
    n = int(FPS*SECONDS)
    assert len(frames) == n and frames[0].shape == (SIDE, SIDE, 3)
    assert auds == [('aac', SR)], auds
    assert abs(samples - SR*SECONDS) < 0.05*SR*SECONDS, samples   # the original audio, whole
    # the overlay changed the frames: they are not the input frames
    assert np.abs(frames[5].astype(int) - clip['frames'][5].astype(int)).mean() > 5
    j = json.loads(out.with_suffix('.json').read_text())
    assert j['n_frames'] == n and len(j['frames']) == n and j['fps'] == FPS and j['audio_copied']
    starts = [f['window_start'] for f in j['frames']]
    # 1 s window centred on each frame, clamped inside the clip (2 s; AAC pads to whole 1024-sample frames)
    assert abs(j['audio_seconds'] - SECONDS) < 0.1
    assert starts[0] == 0.0 and starts[10] == pytest.approx(0.5, abs=0.02) and starts[-1] == pytest.approx(j['audio_seconds'] - 1.0, abs=1e-3)
    assert all(a <= b for a, b in zip(starts, starts[1:]))
    for f in j['frames']:
        x, y = f['peak']; assert 0 <= x < SIDE and 0 <= y < SIDE
        assert len(f['top']) == 3 and f['top'][0]['score'] >= f['top'][-1]['score']
        assert len(f['class_peaks']) == 3
    assert leftovers(tmp_path, '.tmp') == []


def test_video_pcm_audio_reencoded(work, tmp_path):
    "PCM audio cannot go into MP4 as is: it is re-encoded as AAC, whole."
    d, clip = work
    out = tmp_path/'pcm.mp4'
    p = cli('--checkpoint', d/'weights', '--video', d/'pcm.mkv', '--out', out)
    assert p.returncode == 0, p.stderr
    frames, auds, samples = probe(out)
    assert len(frames) == int(FPS*SECONDS) and auds == [('aac', SR)]
    assert abs(samples - SR*SECONDS) < 0.05*SR*SECONDS, samples
    assert json.loads(out.with_suffix('.json').read_text())['audio_copied'] is False
    # the re-encoded audio is the original: correlation with the clip's waveform
    with av.open(str(out)) as c:
        rs = av.AudioResampler(format='fltp', layout='mono')
        y = np.concatenate([r.to_ndarray()[0] for f in c.decode(audio=0) for r in rs.resample(f)])
    x = clip['audio'][:len(y)]
    best = max(np.corrcoef(x[:len(x)-k], y[k:len(x)])[0, 1] for k in range(0, 3000, 1))
    assert best > 0.9, best


def reference_overlay(im, m, alpha, cmap='jet'):
    "The overlay's definition as first written: matplotlib's float64 colours, blended in float, rounded."
    import matplotlib
    col = matplotlib.colormaps[cmap](np.clip(m, 0, 1))[..., :3]*255
    return np.clip((1 - alpha)*im.astype(np.float32) + alpha*col, 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize('alpha,cmap', [(0.5, 'jet'), (0.35, 'jet'), (1.0, 'jet'), (0.6, 'viridis'), (1.5, 'jet')])
def test_fast_overlay_matches_its_definition(alpha, cmap):
    "Issue 22: the lookup-table blend (video and image paths) is the matplotlib float blend, within one level of 255."
    rng = np.random.default_rng(1)
    im = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 1, 7, 7), (90, 160), mode='bilinear', align_corners=True)[0, 0].numpy()
    for m in (smooth, rng.random((90, 160), dtype=np.float32), np.zeros((90, 160), np.float32), np.ones((90, 160), np.float32)):
        ref = reference_overlay(im, m, alpha, cmap)
        for got in (blend(im, m, alpha, cmap), np.asarray(overlay(im, m, alpha, cmap)), np.asarray(overlay(Image.fromarray(im), m, alpha, cmap))):
            d = np.abs(got.astype(int) - ref)
            assert got.dtype == np.uint8 and got.shape == im.shape and d.max() <= 1, (alpha, cmap, d.max())
    # a float image in [0, 1] and a map at another size (resized to the image) as before
    imf, small = im/255.0, smooth[::3, ::3].copy()
    from m2vsl.inference import _resize
    d = np.abs(np.asarray(overlay(imf, small, alpha, cmap)).astype(int) - reference_overlay(imf*255, _resize(torch.from_numpy(small), (90, 160)), alpha, cmap))
    assert d.max() <= 1, d.max()


def test_video_odd_size_lossless_input(work, tmp_path):
    """An odd-sized input (FFV1 in Matroska, 4:4:4, PCM audio): the overlay video has each of its frames, at its size less
    the odd pixel (H.264 4:2:0), with the audio, and it is the overlay of the decoded frame (not a blank or shifted one)."""
    d, clip = work
    frames = np.stack([np.asarray(Image.fromarray(f).resize((65, 47))) for f in clip['frames']])
    src = tmp_path/'odd.mkv'
    with av.open(str(src), 'w') as c:
        v = c.add_stream('ffv1', rate=FPS); v.width, v.height, v.pix_fmt = 65, 47, 'yuv444p'
        a = c.add_stream('pcm_s16le', rate=SR); a.layout = 'mono'
        for i, f in enumerate(frames):
            fr = av.VideoFrame.from_ndarray(f, format='rgb24'); fr.pts = i
            for p in v.encode(fr): c.mux(p)
        for p in v.encode(None): c.mux(p)
        x = np.round(clip['audio']*32767).astype(np.int16)
        for i in range(0, len(x), 1024):
            fr = av.AudioFrame.from_ndarray(x[None, i:i+1024].copy(), format='s16', layout='mono'); fr.sample_rate = SR; fr.pts = i
            for p in a.encode(fr): c.mux(p)
        for p in a.encode(None): c.mux(p)
    out = tmp_path/'odd.mp4'
    p = cli('--checkpoint', d/'weights', '--video', src, '--out', out, '--alpha', '0')
    assert p.returncode == 0, p.stderr
    got, auds, samples = probe(out)
    assert len(got) == len(frames) and got[0].shape == (46, 64, 3) and auds == [('aac', SR)]
    assert abs(samples - SR*SECONDS) < 0.05*SR*SECONDS, samples
    # alpha 0: the overlay is the frame itself, so the output is the input less the odd pixel, up to 4:2:0 and H.264 at crf 18
    rt = [av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:46, :64]), format='rgb24').reformat(format='yuv420p').to_ndarray(format='rgb24')
          for f in frames]                                        # the 4:2:0 round trip alone (sharp colour edges lose a lot)
    err = np.mean([np.abs(g.astype(int) - r).mean() for g, r in zip(got, rt)])
    shifted = np.mean([np.abs(g[:, 1:].astype(int) - r[:, :-1]).mean() for g, r in zip(got, rt)])
    assert err < 3 and err < shifted/2, (err, shifted)


def test_image_and_folder_modes(work, tmp_path):
    d, _ = work
    p = cli('--checkpoint', d/'weights', '--image', d/'frame.jpg', '--audio', d/'frame.wav', '--out', tmp_path/'o.png', '--classes')
    assert p.returncode == 0, p.stderr
    assert Image.open(tmp_path/'o.png').format == 'PNG' and Image.open(tmp_path/'o.png').size == (SIDE, SIDE)
    assert len(list(tmp_path.glob('o.class-*.png'))) == 3
    r = json.loads(p.stdout.strip().splitlines()[-1]); assert len(r['peak']) == 2 and len(r['top']) == 3
    f = tmp_path/'pairs'; f.mkdir()
    for s in ('a', 'b'): (f/f'{s}.jpg').write_bytes((d/'frame.jpg').read_bytes()); (f/f'{s}.wav').write_bytes((d/'frame.wav').read_bytes())
    p = cli('--checkpoint', d/'weights', '--folder', f, '--out', tmp_path/'res')
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in (tmp_path/'res').iterdir()) == ['a.png', 'b.png', 'results.json']



def test_outputs_at_input_resolution(work, tmp_path, capsys):
    "Issue 23: overlays, class maps and the overlay video at the input's own size (only the model's input is a reduced\n    decode), written with the mode a plain open(..., 'w') gives under the umask."
    from m2vsl.cli import main
    d, clip = work
    # a 640×360 JPEG: the 64 px model's input is decoded at 1/4 scale (160×90); what is written is not
    Image.fromarray(clip['frames'][0]).resize((640, 360)).save(tmp_path/'wide.jpg')
    frames = np.stack([np.asarray(Image.fromarray(f).resize((160, 90))) for f in clip['frames']])
    write_video(tmp_path/'wide.mp4', frames, clip['audio'])
    run = lambda *a: main(['localize', '--checkpoint', str(d/'weights'), '--no-progress', *map(str, a)])
    old = os.umask(0o022)
    try:
        assert run('--image', tmp_path/'wide.jpg', '--audio', d/'frame.wav', '--out', tmp_path/'o'/'o.png', '--classes') == 0
        assert run('--video', tmp_path/'wide.mp4', '--out', tmp_path/'v'/'v.mp4', '--classes') == 0
    finally: os.umask(old)
    r = json.loads(capsys.readouterr().out.splitlines()[0])
    outs = sorted((tmp_path/'o').iterdir())
    assert [p.name for p in outs if not p.name.startswith('o.class-')] == ['o.png'] and len(outs) == 4
    assert {p.name: Image.open(p).size for p in outs} == {p.name: (640, 360) for p in outs}
    assert 0 <= r['peak'][0] < 640 and 0 <= r['peak'][1] < 360
    got, _, _ = probe(tmp_path/'v'/'v.mp4')
    j = json.loads((tmp_path/'v'/'v.json').read_text())
    assert got[0].shape == (90, 160, 3) and (j['width'], j['height']) == (160, 90)
    assert all(f['size'] == [90, 160] and 0 <= f['peak'][0] < 160 and 0 <= f['peak'][1] < 90 for f in j['frames'])
    for p in outs + [tmp_path/'v'/'v.mp4', tmp_path/'v'/'v.json']:
        assert p.stat().st_mode & 0o777 == 0o644, (p.name, oct(p.stat().st_mode & 0o777))
    with pytest.raises(SystemExit): main(['localize', '--help'])
    assert "at the input image's own resolution" in ' '.join(capsys.readouterr().out.split())

@pytest.mark.parametrize('case,needle', [
    ('mute', 'mute.mp4: video has no audio track'),
    ('silent', 'audio is silent'),
    ('broken', 'broken.mp4: cannot'),
    ('missing', 'missing.mp4: video file not found'),
    ('image_only', 'frame.jpg: image given without audio'),
    ('lonely', 'lonely.png: image without audio'),
    ('bad_ckpt', 'nope.pt: no such weights folder or checkpoint'),
])
def test_bad_input(work, tmp_path, case, needle):
    d, _ = work
    w = d/'weights'
    if case in ('mute', 'silent', 'broken', 'missing'):
        out = tmp_path/'out.mp4'; args = ['--checkpoint', w, '--video', d/f'{case}.mp4', '--out', out]
    elif case == 'image_only':
        out = tmp_path/'out.png'; args = ['--checkpoint', w, '--image', d/'frame.jpg', '--out', out]
    elif case == 'lonely':
        (tmp_path/'in').mkdir(); (tmp_path/'in'/'lonely.png').write_bytes((d/'frame.jpg').read_bytes())
        out = tmp_path/'res'; args = ['--checkpoint', w, '--folder', tmp_path/'in', '--out', out]
    else:
        out = tmp_path/'out.png'; args = ['--checkpoint', d/'nope.pt', '--image', d/'frame.jpg', '--audio', d/'frame.wav', '--out', out]
    p = cli(*args)
    assert p.returncode != 0
    assert needle in p.stderr, p.stderr
    assert 'Traceback' not in p.stderr
    assert not out.exists() and not out.with_suffix('.json').exists()
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith('.')] == []   # no temp files left


@pytest.mark.slow
def test_trained_peaks_inside_boxes(tmp_path):
    "Image mode with the pipeline's checkpoint: the overlay's peak lies in the sounding object's box for most test clips."
    ck = os.environ.get('M2VSL_CHECKPOINT', '')
    if not ck or not Path(ck).exists():
        pytest.skip(f"set M2VSL_CHECKPOINT to a checkpoint trained on the embedded benchmark "
                    f"(e.g. runs/m2vsl/checkpoints/best.pt); got {ck!r}")
    root = Path(os.environ.get('M2VSL_DATA', REPO/'data/embedded'))/'vggsound'
    if not (root/'metadata/vggss.json').exists(): pytest.skip(f"no embedded benchmark test boxes at {root}/metadata/vggss.json")
    boxes = {r['file']: r['bbox'] for r in json.loads((root/'metadata/vggss.json').read_text())}
    ids = sorted(boxes)[:40]
    f = tmp_path/'pairs'; f.mkdir()
    for i in ids:
        (f/f'{i}.jpg').symlink_to((root/'frames'/f'{i}.jpg').resolve()); (f/f'{i}.wav').symlink_to((root/'audio'/f'{i}.wav').resolve())
    p = cli('--checkpoint', ck, '--folder', f, '--out', tmp_path/'out', timeout=900)
    assert p.returncode == 0, p.stderr
    rows = json.loads((tmp_path/'out'/'results.json').read_text())
    assert len(rows) == len(ids) and all((tmp_path/'out'/f'{i}.png').exists() for i in ids)
    hits = 0
    for r in rows:
        (x, y), (H, W) = r['peak'], r['size']
        hits += any(x1*W <= x + .5 <= x2*W and y1*H <= y + .5 <= y2*H for x1, y1, x2, y2 in boxes[Path(r['image']).stem])
    print(f"peak inside the sounding object's box for {hits}/{len(rows)} test clips ({ck})")
    assert hits/len(rows) > 0.5, f"peak inside the box for {hits}/{len(rows)} clips"


@pytest.mark.slow
def test_trained_checkpoint_roundtrip(tmp_path):
    "A tiny trained checkpoint (.pt) and its safetensors release give the same maps; the CLI takes the .pt."
    from m2vsl.synth import generate
    from m2vsl.train import train
    root = generate(tmp_path/'data', size='tiny', workers=1)
    cfg = TrainConfig(method='m2vsl', model=dict(num_classes=10, dim=32, mmt_heads=4), image=dict(size=64),
                      audio=dict(sample_rate=8000, n_fft=128, win_length=128, hop_length=240),
                      data=dict(root=str(root/'vggsound'), split='train'), epochs=1, batch_size=8, progress=False,
                      dvclive=False, run_dir=str(tmp_path/'run'))
    train(cfg)
    ck = tmp_path/'run/checkpoints/best.pt'
    a = from_pretrained(ck)
    assert a.class_names == [l.strip() for l in (root/'classes.txt').read_text().splitlines() if l.strip()]
    save_pretrained(a.model, cfg, tmp_path/'rel')
    b = from_pretrained(tmp_path/'rel')
    assert b.class_names == a.class_names
    test_id = (root/'vggsound/metadata/test.csv').read_text().split()[0].split(',')[0]
    im, au = root/'vggsound/frames'/f'{test_id}.jpg', root/'vggsound/audio'/f'{test_id}.wav'
    np.testing.assert_allclose(a.localize(im, au).map, b.localize(im, au).map, atol=1e-5)
    p = cli('--checkpoint', ck, '--image', im, '--audio', au, '--out', tmp_path/'o.png')
    assert p.returncode == 0 and (tmp_path/'o.png').exists(), p.stderr
    # the video mode with this trained checkpoint: frame count, size, the audio stream and the JSON
    clip = make_clip(1, 'video', 0, (2,), make_classes(10), n_frames=int(FPS*SECONDS), size=SIDE, seconds=SECONDS, sr=SR)
    write_video(tmp_path/'v.mp4', clip['frames'], clip['audio'])
    p = cli('--checkpoint', ck, '--video', tmp_path/'v.mp4', '--out', tmp_path/'v_out.mp4')
    assert p.returncode == 0, p.stderr
    frames, auds, samples = probe(tmp_path/'v_out.mp4')
    assert len(frames) == int(FPS*SECONDS) and frames[0].shape == (SIDE, SIDE, 3) and auds == [('aac', SR)], auds
    j = json.loads((tmp_path/'v_out.json').read_text())
    assert j['n_frames'] == len(frames) == len(j['frames'])


@pytest.mark.slow
def test_explorer_notebook_runs_headless(tmp_path):
    pytest.importorskip('papermill')
    out = tmp_path/'explorer.ipynb'
    p = subprocess.run([sys.executable, '-m', 'papermill', '--language', 'python', '-k', 'python3',
                        str(REPO/'nbs/72_explorer.ipynb'), str(out), '--cwd', str(tmp_path)],
                       capture_output=True, text=True, timeout=900, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    nb = json.loads(out.read_text())
    outs = [o for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])]
    assert sum('image/png' in o.get('data', {}) for o in outs) >= 2, "the explorer must render static figures"
