"Loaders for every real layout, with deliberately bad files; the data-hygiene bars on the real metadata."
import json, logging, os, pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from m2vsl.audio import AudioConfig, AudioError
from m2vsl.vision import ImageConfig, ImageError
from m2vsl.data import (make_dataset, collate, DataError, reference_hygiene, hygiene_report, load_vggss_boxes,
                        class_key)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent/'shared'/'reference-metadata'
ACFG = AudioConfig(sample_rate=8000, n_fft=256, win_length=256, hop_length=80)   # small and fast
ICFG = ImageConfig(size=64)
CLASSES = ['dog barking', 'cat meowing', 'playing cello', 'playing violin', 'car engine']


# ---------------------------------------------------------------------------------------------------------------
# writers
def tone(f, secs=3., sr=16000, ch=1, amp=0.3):
    t = np.arange(int(secs*sr))/sr
    return np.stack([amp*np.sin(2*np.pi*f*t)]*ch, 1).astype('float32')

def wav(path, f=440., secs=3., sr=16000, ch=1, subtype='PCM_16', data=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(f, secs, sr, ch) if data is None else data, sr, subtype=subtype)

def img(path, size=(160, 120), mode='RGB', color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new('RGB', size, color)
    im.paste((20, 20, 220), (0, 0, size[0]//2, size[1]))      # left half blue, right half red
    (im if mode == 'RGB' else im.convert(mode)).save(path, **({'format': 'JPEG'} if path.suffix == '.jpg' and mode in ('RGB', 'L', 'CMYK') else {}))

def mask_png(path, size=(160, 120), box=(40, 30, 120, 90)):
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(size[::-1], np.uint8); m[box[1]:box[3], box[0]:box[2]] = 255
    Image.fromarray(m).save(path)

GOOD = {  # id: (description, audio writer kwargs, image writer kwargs)
    'gooooooooo1_000001': dict(audio=dict(f=440.), image=dict()),
    'stereo48000_000002': dict(audio=dict(f=600., sr=48000, ch=2), image=dict(mode='L')),            # stereo 48k, grayscale
    'eightbit8k0_000003': dict(audio=dict(f=300., sr=8000, subtype='PCM_U8'), image=dict(mode='CMYK')),  # 8-bit 8 kHz, CMYK
    'veryshort00_000004': dict(audio=dict(f=500., secs=0.25), image=dict(mode='RGBA')),              # 0.25 s → tiled, RGBA
    'hugeimage00_000005': dict(audio=dict(f=700., sr=22050), image=dict(size=(4000, 3000))),         # huge frame
    'palettepng0_000006': dict(audio=dict(f=800., ch=2), image=dict(mode='P')),                      # palette image
}
BAD = {  # id: expected message fragment
    'corruptwav0_000011': 'cannot decode audio',
    'truncwav000_000012': 'audio is truncated',
    'emptywav000_000013': 'audio file is empty (0 bytes)',
    'silentwav00_000014': 'audio is silent (all samples are zero)',
    'nanwav00000_000015': 'audio contains NaN',
    'corruptjpg0_000016': 'cannot decode image',
    'truncjpg000_000017': 'image is truncated',
    'tinyjpg0000_000018': 'smaller than the minimum side of 16 px',
    'emptyjpg000_000019': 'image file is empty (0 bytes)',
}
MISSING = 'missing0000_000020'


def write_media(R, ids_good=GOOD, ids_bad=BAD, stem=lambda i: i):
    for i, spec in ids_good.items():
        wav(R/'audio'/f'{i}.wav', **spec['audio'])
        img(R/'frames'/f'{i}.jpg' if spec['image'].get('mode') not in ('RGBA', 'P') else R/'frames'/f'{i}.jpg.png', **spec['image'])
        p = R/'frames'/f'{i}.jpg.png'
        if p.exists(): p.rename(R/'frames'/f'{i}.jpg')                 # a PNG with a .jpg name: PIL reads by content
    for i in ids_bad:
        wav(R/'audio'/f'{i}.wav'); img(R/'frames'/f'{i}.jpg')
    A, F = R/'audio', R/'frames'
    (A/'corruptwav0_000011.wav').write_bytes(b'RIFF\x10\x00\x00\x00WAVEjunkjunk' + bytes(range(256))*2)
    b = (A/'truncwav000_000012.wav').read_bytes(); (A/'truncwav000_000012.wav').write_bytes(b[:len(b)//3])
    (A/'emptywav000_000013.wav').write_bytes(b'')
    wav(A/'silentwav00_000014.wav', data=np.zeros(16000, 'float32'))
    d = tone(440.); d[100:200] = np.nan; wav(A/'nanwav00000_000015.wav', data=d, subtype='FLOAT')
    (F/'corruptjpg0_000016.jpg').write_bytes(b'<html>this is not a JPEG</html>' * 20)
    b = (F/'truncjpg000_000017.jpg').read_bytes(); (F/'truncjpg000_000017.jpg').write_bytes(b[:len(b)//2])
    img(F/'tinyjpg0000_000018.jpg', size=(8, 6))
    (F/'emptyjpg000_000019.jpg').write_bytes(b'')


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp('embedded')
    (base/'classes.txt').write_text('\n'.join(CLASSES) + '\n')
    # --- EZ-VSL / VGG-SS layout ---
    R = base/'vggsound'; (R/'metadata').mkdir(parents=True)
    write_media(R)
    good, bad = list(GOOD), list(BAD)
    (R/'metadata'/'test.csv').write_bytes(''.join(f'{i}\r\n' for i in good).encode())         # CRLF
    (R/'metadata'/'train.txt').write_text('\n'.join(good[:3]) + '\n')
    boxes = [{'file': i, 'class': CLASSES[k % 2], 'bbox': [[0., 0., .5, .5]]} for k, i in enumerate(good + bad + [MISSING])]
    boxes[1]['bbox'] = [[.5, .5, 1., 1.], [0., 0., .25, -2.8823037615171176e+16]]                 # a corrupt box
    (R/'metadata'/'vggss.json').write_text(json.dumps(boxes))
    rows = [f'{i[:11]},{int(i[12:])},"{CLASSES[2 + k % 3]}",train' for k, i in enumerate(good)]
    rows[0] = rows[0].replace(CLASSES[2], 'alligators, crocodiles hissing')   # not in classes.txt → unknown (-1)
    (R/'metadata'/'vggsound.csv').write_bytes(('\r\n'.join(rows) + '\r\n').encode())
    (R/'metadata'/'vggsound_duet_test.csv').write_text(f'{good[0]},dog_barking,{good[1]},cat_meowing\n')
    # --- VGGSound-Instruments layout ---
    I = base/'instruments'; (I/'metadata').mkdir(parents=True)
    for k in range(3):
        s = f'sample{k:04d}'
        wav(I/'audio'/f'{s}.wav', f=300. + 100*k); img(I/'frames'/f'{s}.jpg', size=(200, 100))
        m = np.zeros((100, 200), np.uint8); m[10:50, 20 + 40*k:60 + 40*k] = 1
        (I/'masks').mkdir(exist_ok=True)
        with open(I/'masks'/f'{s}.pkl', 'wb') as f: pickle.dump(m, f)
    wav(I/'audio'/'trainclip00_000000.wav'); img(I/'frames'/'trainclip00_000000.jpg')
    (I/'metadata'/'vgginstruments_train.txt').write_text('trainclip00_000000,playing_cello\n')
    (I/'metadata'/'vgginstruments_test.csv').write_bytes(b'sample0000,playing_cello\r\nsample0001,playing_violin\r\nsample0002,playing_cello\r\n')
    (I/'metadata'/'vgginstruments_multi_test.csv').write_bytes(b'sample0000,playing_cello,sample0001,playing_violin\r\n')
    # --- AVSBench-object layout ---
    A = base/'avsbench'
    S4 = A/'Single-source'/'s4_data'; (A/'Single-source').mkdir(parents=True)
    (A/'Single-source'/'s4_meta_data.csv').write_text('video_name,start_time,category,split\nvidtrain001,0,dog_barking,train\n'
                                                     'vidtest0001,0,cat_meowing,test\n')
    secs = np.concatenate([tone(200.*(k + 1), 1., 16000)[:, 0] for k in range(5)])     # second k: 200·(k+1) Hz
    for split, vid, cat in [('train', 'vidtrain001', 'dog_barking'), ('test', 'vidtest0001', 'cat_meowing')]:
        wav(S4/'audio_wav'/split/cat/f'{vid}.wav', data=secs)
        for k in range(1, 6):
            img(S4/'visual_frames'/split/cat/vid/f'{vid}_{k}.png', size=(224, 224))
            if split == 'test' or k == 1: mask_png(S4/'gt_masks'/split/cat/vid/f'{vid}_{k}.png', size=(224, 224))
    M = A/'Multi-sources'/'ms3_data'; (A/'Multi-sources').mkdir(parents=True)
    (A/'Multi-sources'/'ms3_meta_data.csv').write_text('video_name,split\nms3vid00001,test\n')
    wav(M/'audio_wav'/'test'/'ms3vid00001.wav', data=secs)
    for k in range(1, 6):
        img(M/'visual_frames'/'ms3vid00001'/f'ms3vid00001.mp4_{k}.png', size=(224, 224))
        mask_png(M/'gt_masks'/'test'/'ms3vid00001'/f'ms3vid00001_{k}.png', size=(224, 224))
    # --- WS-AVS flattened layout ---
    W = base/'wsavs'; (W/'metadata').mkdir(parents=True)
    wav(W/'audio'/'wsvid000001.wav', data=secs)
    for k in range(1, 6):
        img(W/'frames'/f'wsvid000001_{k}.jpg', size=(224, 224)); mask_png(W/'masks'/f'wsvid000001_{k}.png', size=(224, 224))
    (W/'metadata'/'avsbench_test.csv').write_bytes(b''.join(f'wsvid000001_{k},cat_meowing\r\n'.encode() for k in (3, 1)))
    (W/'metadata'/'avsbench_train.txt').write_text('wsvid000001_2,cat_meowing\n')
    return base


def check_contract(x, S=64, G=1, K=1, n=1):
    assert isinstance(x['id'], str)
    assert x['image'].shape == (3, S, n*S) and x['image'].dtype == torch.float32 and torch.isfinite(x['image']).all()
    assert x['audio'].shape == ACFG.shape and x['audio'].dtype == torch.float32 and torch.isfinite(x['audio']).all()
    assert x['labels'].shape == (len(CLASSES),) and x['labels'].dtype == torch.float32
    assert x['classes'].shape == (K,) and x['classes'].dtype == torch.int64
    assert x['gt'].shape == (G, S, n*S) and x['gt'].dtype == torch.float32
    assert 0 <= x['gt'].min() and x['gt'].max() <= 1 and isinstance(x['has_gt'], bool)


def peak_hz(spec):
    "Frequency of the loudest bin of a (1, F, T) spectrogram at ACFG's rate."
    return float(spec[0].mean(-1).argmax())*ACFG.sample_rate/ACFG.n_fft


# ---------------------------------------------------------------------------------------------------------------
def test_vggss_test_split(root):
    ds = make_dataset(root/'vggsound', 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG)
    assert ds.class_names == CLASSES and len(ds) == len(GOOD)
    items = [ds[i] for i in range(len(ds))]
    assert [x['id'] for x in items] == list(GOOD)
    freq = {i: s['audio'].get('f', 440.) for i, s in GOOD.items()}
    for k, x in enumerate(items):
        check_contract(x)
        assert x['has_gt'] and x['classes'].tolist() == [k % 2]                  # class from vggss.json
        assert x['labels'].tolist() == [float(j == k % 2) for j in range(len(CLASSES))]
        assert abs(peak_hz(x['audio']) - freq[x['id']]) <= ACFG.sample_rate/ACFG.n_fft   # its own audio, resampled
    assert items[0]['gt'][0, :32, :32].min() == 1 and items[0]['gt'].sum() == 32*32
    assert items[1]['gt'].sum() == 32*32 and items[1]['gt'][0, 32:, 32:].min() == 1   # corrupt box clipped to nothing
    # image content: the left half is blue, the right half red (squash resize keeps halves), in every colour mode
    for x in items[:1] + items[2:3] + items[4:]:
        assert x['image'][2, :, :28].mean() > x['image'][0, :, :28].mean() and x['image'][0, :, 36:].mean() > x['image'][2, :, 36:].mean()
    b = collate(items[:3]); assert b['image'].shape == (3, 3, 64, 64) and b['audio'].shape == (3, *ACFG.shape)
    dc = make_dataset(root/'vggsound', 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG, drop_corrupt_boxes=True)
    assert dc[1]['gt'].sum() == 32*32


def test_vggss_train_split_labels_from_vggsound_csv(root, caplog):
    with caplog.at_level(logging.WARNING, 'm2vsl.data'):
        ds = make_dataset(root/'vggsound', 'vggsound', 'train', audio_cfg=ACFG, image_cfg=ICFG)
    assert 'alligators, crocodiles hissing' in caplog.text                  # unknown class reported
    assert ds.train and len(ds) == 3
    xs = [ds[i] for i in range(3)]
    for x in xs: check_contract(x); assert not x['has_gt'] and x['gt'].abs().sum() == 0
    assert [x['classes'].tolist() for x in xs] == [[-1], [3], [4]]         # 'playing violin', 'car engine'
    assert xs[0]['labels'].sum() == 0 and xs[1]['labels'][3] == 1


def test_vggsound_duet(root):
    ds = make_dataset(root/'vggsound', 'vggsound', 'test', 'multi', audio_cfg=ACFG, image_cfg=ICFG)
    x = ds[0]; check_contract(x, G=2, K=2, n=2)
    assert x['id'] == 'gooooooooo1_000001+stereo48000_000002' and x['classes'].tolist() == [0, 1]
    assert x['labels'].tolist()[:2] == [1., 1.]
    assert x['gt'][0, :, 64:].sum() == 0 and x['gt'][1, :, :64].sum() == 0
    assert x['gt'][0, :32, :32].min() == 1 and x['gt'][1, 32:, 96:].min() == 1
    # the audio is the spectrogram of the summed waveforms: both tones are present
    prof = x['audio'][0].mean(-1); hz = ACFG.sample_rate/ACFG.n_fft
    for f in (440, 600): assert prof[round(f/hz)] > prof.median() + 0.3


@pytest.mark.parametrize('bad', list(BAD))
def test_each_bad_file_raises_naming_file_and_problem(root, tmp_path, bad):
    R = root/'vggsound'
    (tmp_path/'t.csv').write_text(f'gooooooooo1_000001\n{bad}\n')
    ds = make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG, list_file=str(tmp_path/'t.csv'))
    check_contract(ds[0])
    with pytest.raises((AudioError, ImageError)) as e: ds[1]
    assert bad in str(e.value) and BAD[bad] in str(e.value), str(e.value)


def test_missing_ids_counted_error_or_skip(root, tmp_path, caplog):
    (tmp_path/'t.csv').write_text(f'gooooooooo1_000001\n{MISSING}\n')
    with pytest.raises(DataError, match=f'1 of 2 ids in the list are missing on disk, e.g. {MISSING}'):
        make_dataset(root/'vggsound', 'vggsound', 'test', list_file=str(tmp_path/'t.csv'))
    with caplog.at_level(logging.WARNING, 'm2vsl.data'):
        ds = make_dataset(root/'vggsound', 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG,
                          list_file=str(tmp_path/'t.csv'), skip_missing=True)
    assert len(ds) == 1 and ds.missing == [MISSING] and 'are missing on disk' in caplog.text and 'skipping them' in caplog.text
    assert ds.skipped[0][0] == MISSING and 'missing on disk' in ds.skipped[0][1]


def test_skip_mode_counts_logs_and_never_substitutes(root, tmp_path, caplog):
    ids = list(GOOD) + list(BAD) + [MISSING]
    (tmp_path/'all.csv').write_text('\n'.join(ids) + '\n')
    with caplog.at_level(logging.WARNING, 'm2vsl.data'):
        ds = make_dataset(root/'vggsound', 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG,
                          list_file=str(tmp_path/'all.csv'), on_error='skip')
    assert len(ds) == len(GOOD) and [ds[i]['id'] for i in range(len(ds))] == list(GOOD)
    reasons = dict(ds.skipped)
    assert set(reasons) == set(BAD) | {MISSING} and len(ds.skipped) == len(BAD) + 1
    for i, frag in BAD.items():
        assert frag in reasons[i] and i in reasons[i]
        assert f'skipped {i}' in caplog.text
    rep = ds.skip_report()
    assert f'{len(BAD) + 1} samples skipped, {len(GOOD)} usable' in rep
    # a file that breaks after validation: None from __getitem__, counted, dropped by collate (no substitute)
    ds2 = make_dataset(root/'vggsound', 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG,
                       list_file=str(tmp_path/'all.csv'), on_error='skip', validate='quick')
    late = {i for i, _ in ds2.skipped}
    assert {'emptywav000_000013', 'emptyjpg000_000019', 'truncwav000_000012', MISSING} <= late
    out = [ds2[i] for i in range(len(ds2))]
    got = [x['id'] for x in out if x is not None]
    assert got == list(GOOD) and len(ds2.skipped) == len(BAD) + 1
    b = collate(out[:len(GOOD) + 2]); assert b['id'] == list(GOOD)[:len(b['id'])]


def test_silent_allowed_on_request(root, tmp_path):
    (tmp_path/'t.csv').write_text('silentwav00_000014\n')
    ds = make_dataset(root/'vggsound', 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG,
                      list_file=str(tmp_path/'t.csv'), allow_silent=True)
    x = ds[0]; check_contract(x)
    assert torch.allclose(x['audio'], torch.full_like(x['audio'], float(np.log(1e-7)/12)))


def test_workers(root):
    ds = make_dataset(root/'vggsound', 'vggsound', 'train', audio_cfg=ACFG, image_cfg=ICFG)
    dl = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    ids = [i for b in dl for i in b['id']]
    assert ids == [r.id for r in ds.records]


def test_instruments(root):
    I = root/'instruments'
    ds = make_dataset(I, 'instruments', 'test', audio_cfg=ACFG, image_cfg=ICFG)
    assert len(ds) == 3
    for k in range(3):
        x = ds[k]; check_contract(x)
        assert x['has_gt'] and x['classes'].tolist() == [[2, 3, 2][k]]
        # mask cols 20+40k..60+40k of 200, rows 10..50 of 100 → on the 64 grid
        g = x['gt'][0]; cols = g.sum(0).nonzero().flatten()
        assert abs(cols.min().item() - (20 + 40*k)*64/200) <= 1 and abs(cols.max().item() + 1 - (60 + 40*k)*64/200) <= 1
        assert set(g.unique().tolist()) == {0., 1.}
    m = make_dataset(I, 'instruments', 'test', 'multi', audio_cfg=ACFG, image_cfg=ICFG)[0]
    check_contract(m, G=2, K=2, n=2)
    assert m['id'] == 'sample0000+sample0001' and m['classes'].tolist() == [2, 3]
    assert m['gt'][0, :, 64:].sum() == 0 and m['gt'][1, :, :64].sum() == 0 and m['gt'][1].sum() > 0
    prof = m['audio'][0].mean(-1); hz = ACFG.sample_rate/ACFG.n_fft
    for f in (300, 400): assert prof[round(f/hz)] > prof.median() + 0.3
    t = make_dataset(I, 'instruments', 'train', audio_cfg=ACFG, image_cfg=ICFG)[0]
    check_contract(t); assert not t['has_gt'] and t['classes'].tolist() == [2]


def test_instruments_unsafe_pickle_rejected(root, tmp_path):
    import shutil
    I = tmp_path/'instruments'; shutil.copytree(root/'instruments', I)
    class Evil:
        def __reduce__(self): return (os.system, (f'touch {tmp_path}/pwned',))
    with open(I/'masks'/'sample0001.pkl', 'wb') as f: pickle.dump(Evil(), f)
    ds = make_dataset(I, 'instruments', 'test', audio_cfg=ACFG, image_cfg=ICFG)
    with pytest.raises(ImageError, match=r"sample0001.pkl: cannot load pickled numpy mask .*'posix.system' is not allowed"): ds[1]
    assert not (tmp_path/'pwned').exists()
    ds = make_dataset(I, 'instruments', 'test', audio_cfg=ACFG, image_cfg=ICFG, on_error='skip')
    assert [r.id for r in ds.records] == ['sample0000', 'sample0002'] and ds.skipped[0][0] == 'sample0001'


def test_avsbench_s4(root):
    acfg = AudioConfig(sample_rate=8000, seconds=1.0, n_fft=256, win_length=256, hop_length=80)
    ds = make_dataset(root/'avsbench', 'avsbench', 'test', 's4', audio_cfg=acfg, image_cfg=ICFG)
    assert [r.id for r in ds.records] == [f'vidtest0001_{k}' for k in range(1, 6)]
    hz = acfg.sample_rate/acfg.n_fft
    for k in range(1, 6):
        x = ds[k - 1]
        assert x['image'].shape == (3, 64, 64) and x['audio'].shape == acfg.shape and x['has_gt']
        assert x['classes'].tolist() == [1] and x['gt'][0, 10:24, 13:33].min() == 1 and x['gt'][0, :, 36:].sum() == 0 and x['gt'][0, :5].sum() == 0
        # frame k ↔ the 1 s window centred on second k − 0.5: the tone of second k (200·k Hz)
        assert abs(float(x['audio'][0].mean(-1).argmax())*hz - 200*k) <= hz
    tr = make_dataset(root/'avsbench', 'avsbench', 'train', 's4', audio_cfg=ACFG, image_cfg=ICFG)
    assert len(tr) == 5 and [tr[i]['has_gt'] for i in range(5)] == [True, False, False, False, False]
    # default 3 s window: frame 1 → clamped to [0, 3), frame 5 → [2, 5)
    d3 = make_dataset(root/'avsbench', 'avsbench', 'test', 's4', audio_cfg=ACFG, image_cfg=ICFG)
    assert not torch.equal(d3[0]['audio'], d3[4]['audio']) and torch.equal(d3[0]['audio'], d3[1]['audio'])


def test_avsbench_ms3_and_wsavs(root):
    ds = make_dataset(root/'avsbench', 'avsbench', 'test', 'ms3', audio_cfg=ACFG, image_cfg=ICFG)
    assert len(ds) == 5
    x = ds[2]; check_contract(x, K=2)
    assert x['id'] == 'ms3vid00001_3' and x['classes'].tolist() == [-1, -1] and x['labels'].sum() == 0 and x['has_gt']
    w = make_dataset(root/'wsavs', 'wsavs', 'test', audio_cfg=ACFG, image_cfg=ICFG)
    assert [r.id for r in w.records] == ['wsvid000001_3', 'wsvid000001_1']
    x = w[0]; check_contract(x); assert x['has_gt'] and x['classes'].tolist() == [1]
    assert w.records[0].sources[0].start_s == 2.5 - ACFG.seconds/2
    t = make_dataset(root/'wsavs', 'wsavs', 'train', audio_cfg=ACFG, image_cfg=ICFG)[0]
    check_contract(t); assert not t['has_gt']


def test_bad_config():
    with pytest.raises(DataError, match="unknown layout 'flickr'"): make_dataset('x', 'flickr')
    with pytest.raises(DataError, match="has tasks"): make_dataset('x', 'instruments', task='ms3')


def test_hygiene_on_layout(root, tmp_path):
    R = root/'vggsound'
    (tmp_path/'t.csv').write_text(f'gooooooooo1_000001\n{MISSING}\n')
    rep = hygiene_report({'test': R/'metadata'/'test.csv', 'extra': tmp_path/'t.csv', 'train': R/'metadata'/'train.txt'},
                         R/'metadata'/'vggss.json', 'test', ['train'], data_root=R)
    assert rep.rows == {'test': 6, 'extra': 2, 'train': 3}
    assert rep.box_items == len(GOOD) + len(BAD) + 1 and len(rep.corrupt_boxes) == 1
    assert rep.overlap['train'] == sorted(list(GOOD)[:3]) and rep.missing == {'test': [], 'extra': [MISSING], 'train': []}
    assert '1 corrupt boxes' in str(rep)


# ---------------------------------------------------------------------------------------------------------------
# the bars on the real public metadata
@pytest.mark.skipif(not SHARED.exists(), reason='shared/reference-metadata not present')
def test_reference_metadata_bars():
    rep = reference_hygiene(SHARED)
    assert rep.box_items == 5158 and len(rep.corrupt_boxes) == 12
    assert all(any(abs(v) > 1e15 for v in b) for _, b in rep.corrupt_boxes)
    assert len(rep.overlap['vggss_144k']) == 3709 and len(rep.overlap['vggss_10k']) == 238
    want = dict(vggss_test=5158, vgginstruments_train=33934, vgginstruments_test=446, vgginstruments_multi_test=446,
                vggsound_single_test=5158, vggsound_duet_test=5158, wsavs_train=17260, wsavs_val=3700, wsavs_test=3700,
                vggss_144k=144000, vggss_10k=10000)
    assert {k: rep.rows[k] for k in want} == want
    items, bad = load_vggss_boxes(SHARED/'EZ-VSL'/'vggss.json', drop_corrupt=True)
    assert len(items) == 5158 and len(bad) == 12 and sum(len(v['bbox']) for v in items.values()) == 5158 + 385 + 94*2 + 37*3 + 18*4 + 3*5 + 2*6 - 12
    assert len({class_key(v['class']) for v in items.values()}) == 221


# ---------------------------------------------------------------------------------------------------------------
# issue #16: bad lists and boxes are a clear error naming the file and line, or a counted, reported skip
def mini(R, ids, boxes=None, silent=(), antiphase=()):
    "A tiny EZ-VSL layout at R: 1 s tones and 40×30 frames for `ids`; vggss.json from `boxes` ({id: [[x1,y1,x2,y2], ...]})."
    (R/'metadata').mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(ids):
        if i in silent: wav(R/'audio'/f'{i}.wav', data=np.zeros(8000, 'float32'), sr=8000)
        elif i in antiphase:
            t = (tone(500., 1., 8000)[:, 0]*32767).astype(np.int16)                   # exact opposites in the file
            wav(R/'audio'/f'{i}.wav', data=np.stack([t, -t], 1), sr=8000)
        else: wav(R/'audio'/f'{i}.wav', f=300. + 50*k, secs=1., sr=8000)
        img(R/'frames'/f'{i}.jpg', size=(40, 30))
    boxes = {i: [[0., 0., .5, .5]] for i in ids} if boxes is None else boxes
    (R/'metadata'/'vggss.json').write_text(json.dumps([{'file': i, 'class': CLASSES[0], 'bbox': b} for i, b in boxes.items()]))
    return R

IDS = [f'clip{k:07d}_{k:06d}' for k in range(8)]


def test_duplicate_ids_error_naming_list_and_line_or_counted_skip(tmp_path, caplog):
    R = mini(tmp_path/'v', IDS[:3])
    (R/'metadata'/'test.csv').write_text(f'{IDS[0]}\n{IDS[1]}\n{IDS[0]}\n{IDS[2]}\n')
    with pytest.raises(DataError) as e: make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG)
    msg = str(e.value)
    assert 'test.csv' in msg and 'line 3' in msg and IDS[0] in msg and 'line 1' in msg and 'duplicate' in msg, msg
    with caplog.at_level(logging.WARNING, 'm2vsl.data'):
        ds = make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG, on_error='skip')
    assert [r.id for r in ds.records] == IDS[:3] and len(ds.skipped) == 1 and ds.skipped[0][0] == IDS[0]
    assert 'duplicate' in ds.skipped[0][1] and 'line 3' in ds.skipped[0][1] and 'duplicate' in caplog.text
    assert '1 samples skipped, 3 usable' in ds.skip_report()


def test_nan_box_error_names_file_and_id_or_counted_skip(tmp_path):
    R = mini(tmp_path/'v', IDS[:3], {IDS[0]: [[0., 0., .5, .5]], IDS[1]: [[0., 0., float('nan'), .5]], IDS[2]: [[0., 0., 1., 1.]]})
    (R/'metadata'/'test.csv').write_text('\n'.join(IDS[:3]) + '\n')
    with pytest.raises(DataError) as e: make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG)
    msg = str(e.value)
    assert 'vggss.json' in msg and IDS[1] in msg and 'non-finite' in msg and 'drop_corrupt_boxes' in msg, msg
    assert 'drop_corrupt=True' not in msg
    ds = make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG, on_error='skip')   # validate='full'
    assert [r.id for r in ds.records] == [IDS[0], IDS[2]] and [i for i, _ in ds.skipped] == [IDS[1]]
    assert 'non-finite' in ds.skipped[0][1] and '1 samples skipped' in ds.skip_report()
    # dropping corrupt boxes removes the clip's only box: no ground truth, counted
    ds = make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG, drop_corrupt_boxes=True)
    assert [ds[k]['has_gt'] for k in range(3)] == [True, False, True]
    assert [i for i, _ in ds.no_gt] == [IDS[1]] and 'drop' in ds.no_gt[0][1] and '1 clips without ground truth' in ds.skip_report()


def test_box_with_three_coordinates_names_file_and_id(tmp_path):
    R = mini(tmp_path/'v', IDS[:2], {IDS[0]: [[0., 0., .5, .5]], IDS[1]: [[0., 0., .5]]})
    (R/'metadata'/'test.csv').write_text('\n'.join(IDS[:2]) + '\n')
    with pytest.raises(DataError) as e: make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG)
    msg = str(e.value)
    assert 'vggss.json' in msg and IDS[1] in msg and '3 coordinates' in msg and 'reshape' not in msg, msg
    ds = make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG, on_error='skip')
    assert [r.id for r in ds.records] == [IDS[0]] and ds.skipped[0][0] == IDS[1]


def test_inverted_box_is_no_ground_truth_counted(tmp_path, caplog):
    R = mini(tmp_path/'v', IDS[:2], {IDS[0]: [[0., 0., .5, .5]], IDS[1]: [[.8, .1, .2, .9]]})   # x1 > x2
    (R/'metadata'/'test.csv').write_text('\n'.join(IDS[:2]) + '\n')
    with caplog.at_level(logging.WARNING, 'm2vsl.data'):
        ds = make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG)
    x = ds[1]
    assert x['has_gt'] is False and x['gt'].sum() == 0 and ds[0]['has_gt'] is True
    assert [i for i, _ in ds.no_gt] == [IDS[1]] and 'cover no pixel' in ds.no_gt[0][1]
    assert 'has_gt=False' in caplog.text and IDS[1] in caplog.text


def test_list_with_bom_and_latin1_list(tmp_path):
    R = mini(tmp_path/'v', IDS[:2])
    (R/'metadata'/'test.csv').write_bytes(('\ufeff' + '\r\n'.join(IDS[:2]) + '\r\n').encode('utf-8'))
    ds = make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG, on_error='skip')
    assert [r.id for r in ds.records] == IDS[:2] and ds.skipped == []
    (R/'metadata'/'test.csv').write_bytes(f'{IDS[0]}\n{IDS[1]},caf\u00e9\n'.encode('latin-1'))
    with pytest.raises(DataError) as e: make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG)
    msg = str(e.value)
    assert 'test.csv' in msg and 'line 2' in msg and 'UTF-8' in msg, msg


def test_antiphase_stereo_says_the_downmix_cancelled(tmp_path):
    R = mini(tmp_path/'v', IDS[:2], antiphase={IDS[1]}, silent=())
    (R/'metadata'/'test.csv').write_text('\n'.join(IDS[:2]) + '\n')
    ds = make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG)
    with pytest.raises(AudioError) as e: ds[1]
    msg = str(e.value)
    assert IDS[1] in msg and 'cancel' in msg and 'all samples are zero' not in msg, msg


def test_skips_in_workers_are_counted(tmp_path, caplog):
    R = mini(tmp_path/'v', IDS, silent={IDS[5]})      # silence passes 'quick' validation, fails at load
    (R/'metadata'/'test.csv').write_text('\n'.join(IDS) + '\n')
    ds = make_dataset(R, 'vggsound', 'test', audio_cfg=ACFG, image_cfg=ICFG, on_error='skip', validate='quick')
    assert len(ds) == 8 and ds.skipped == []
    dl = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    got = [i for b in dl if b is not None for i in b['id']]
    assert got == IDS[:5] + IDS[6:]
    assert [i for i, _ in ds.skipped] == [IDS[5]] and 'silent' in ds.skipped[0][1]
    assert '1 samples skipped, 7 usable' in ds.skip_report()
    for b in dl: pass                                  # a second epoch counts it once
    assert len(ds.skipped) == 1
