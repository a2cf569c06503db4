"Raw-video preparation: a real video (PyAV, frames + 440 Hz tone) → the EZ-VSL layout via the command line."
import subprocess, sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from m2vsl.prepare import prepare_clip, PrepareError


def make_video(path, secs=4., fps=10, sr=44100, audio=True, f0=440.):
    "A 160x120 video whose brightness ramps with time, with a stereo sine tone."
    with av.open(str(path), 'w') as c:
        v = c.add_stream('mpeg4', rate=fps); v.width, v.height, v.pix_fmt = 160, 120, 'yuv420p'
        if audio: a = c.add_stream('aac', rate=sr); a.layout = 'stereo'
        n = int(secs*fps)
        for i in range(n):
            img = np.zeros((120, 160, 3), np.uint8); img[..., 1] = int(250*i/(n-1))
            for p in v.encode(av.VideoFrame.from_ndarray(img, format='rgb24')): c.mux(p)
        for p in v.encode(): c.mux(p)
        if audio:
            t = np.arange(int(secs*sr))/sr; x = (0.5*np.sin(2*np.pi*f0*t)).astype(np.float32)
            for k in range(0, len(x), 1024):
                fr = av.AudioFrame.from_ndarray(np.stack([x[k:k+1024]]*2), format='fltp', layout='stereo'); fr.sample_rate = sr
                for p in a.encode(fr): c.mux(p)
            for p in a.encode(): c.mux(p)


def peak_hz(w, sr):
    spec = np.abs(np.fft.rfft(w*np.hanning(len(w))))
    return np.fft.rfftfreq(len(w), 1/sr)[spec.argmax()], spec


def run(*args):
    return subprocess.run([sys.executable, '-m', 'm2vsl.prepare', *map(str, args), '--no-progress'],
                          capture_output=True, text=True, timeout=300)


def test_prepare_command(tmp_path):
    vids = tmp_path/'videos'; vids.mkdir()
    make_video(vids/'Ab3dE_fGh1K_000030.mp4')
    make_video(vids/'toneless_000000.mp4', audio=False)
    (vids/'broken_000000.mp4').write_bytes(b'\x00not a video' * 50)
    out = tmp_path/'out'
    r = run('--videos', vids, '--out', out, '--workers', 2)
    assert r.returncode == 1, r.stdout + r.stderr                      # two bad videos → failure status
    assert 'prepared 1, already done 0, failed 2' in r.stdout
    assert 'toneless_000000.mp4: no audio stream' in r.stderr
    assert 'broken_000000.mp4: cannot open video' in r.stderr
    fails = (out/'prepare_failures.txt').read_text()
    assert 'toneless_000000' in fails and 'broken_000000' in fails

    # the frame: the middle one (brightness ramp 0→250 over 4 s → ≈125 at 2 s)
    img = Image.open(out/'frames'/'Ab3dE_fGh1K_000030.jpg')
    assert img.size == (160, 120) and img.mode == 'RGB'
    g = np.asarray(img)[..., 1].mean()
    assert 100 < g < 150, g
    # the wav: mono, 22,050 Hz, 16-bit, ~4 s, 440 Hz tone
    info = sf.info(out/'audio'/'Ab3dE_fGh1K_000030.wav')
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, 'PCM_16')
    assert abs(info.duration - 4.0) < 0.1, info.duration
    w, sr = sf.read(out/'audio'/'Ab3dE_fGh1K_000030.wav')
    f, spec = peak_hz(w[sr//2:-sr//2], sr)
    assert abs(f - 440) < 3, f
    band = spec[(np.fft.rfftfreq(len(w[sr//2:-sr//2]), 1/sr) > 600)]
    assert band.max() < 0.05*spec.max()                               # nothing else of note
    assert 0.3 < np.abs(w).max() < 0.6                                # amplitude kept (stereo averaged)
    assert not list(out.rglob('.*tmp*'))                              # no temp files left

    # resumable: a second run skips the finished id
    r = run('--videos', vids, '--out', out, '--workers', 1)
    assert 'prepared 0, already done 1, failed 2' in r.stdout, r.stdout


def test_prepare_csv_and_time(tmp_path):
    clips = tmp_path/'clips'; clips.mkdir()
    make_video(clips/'AAAAAAAAAAA.mp4', secs=6.)                       # a full video, cut here at start=2 for 3 s
    make_video(clips/'BBBBBBBBBBB_000000.mp4', secs=2.)                # an already cut clip
    csvp = tmp_path/'vggsound.csv'
    csvp.write_text('AAAAAAAAAAA,2,playing cello,train\nBBBBBBBBBBB,0,dog barking,test\nCCCCCCCCCCC,5,cat,test\n')
    out = tmp_path/'out'
    from m2vsl.prepare import jobs_from_csv, prepare
    jobs, missing = jobs_from_csv(csvp, clips, seconds=3.)
    assert missing == ['CCCCCCCCCCC_000005'] and {j[1] for j in jobs} == {'AAAAAAAAAAA_000002', 'BBBBBBBBBBB_000000'}
    res = prepare(jobs, out, time=0.5, workers=1, progress=False)
    assert res == {'done': 2, 'skipped': 0, 'failed': []}
    assert abs(sf.info(out/'audio'/'AAAAAAAAAAA_000002.wav').duration - 3.0) < 0.05
    g = np.asarray(Image.open(out/'frames'/'AAAAAAAAAAA_000002.jpg'))[..., 1].mean()
    assert abs(g - 250*2.5/6) < 15, g                                  # frame at offset 2 + time 0.5 s
    r = run('--csv', csvp, '--clips', clips, '--out', out)
    assert r.returncode == 1 and 'CCCCCCCCCCC_000005: no downloaded clip' in r.stderr


def test_prepare_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.mp4: video file not found'): prepare_clip(tmp_path/'nope.mp4', tmp_path)
    make_video(tmp_path/'mute.mp4', secs=1., audio=False)
    with pytest.raises(PrepareError, match='mute.mp4: no audio stream'): prepare_clip(tmp_path/'mute.mp4', tmp_path/'o')
