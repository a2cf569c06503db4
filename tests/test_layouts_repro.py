"""The example profiles of the published layouts (profiles/examples/) through `dvc repro`, on miniature copies of the
real data sets.

Each miniature is laid out as its benchmark's public release (EZ-VSL/VGG-SS with separate train and test folders and
a metadata folder; AVGN VGGSound-Instruments with its test masks folder; AVSBench-object S4 and MS3) and holds the real
annotation and split files of ../shared/reference-metadata/ (copied whole: the real ids, classes, boxes, CRLF endings),
with a handful of the listed clips on disk as generated media (small jpg/png frames, wav audio, png/pkl masks). What
is not public is generated in its published format: AVSBench's meta csvs (S4 from WS-AVS's real S4 ids and categories,
MS3 with made-up ids), the Instruments test masks, and VGGSound's label csv (the real classes of vggss.json's clips).

Each example profile is made tiny (64 px, 8 kHz audio, 1 epoch, batch 4, M2VSL only, ImageNet weights replaced by a
fake file in a temporary torch hub cache) and run with `dvc repro evaluate@m2vsl` (its train step, then one evaluation
per task of the profile) in the scratch copy of the repository that tests/test_pipeline.py uses."""
import json, os, pickle, shutil
from pathlib import Path
import numpy as np
import pytest, yaml

from test_pipeline import REPO, run, scratch   # noqa: F401 (scratch: the fixture, a git-initialised copy of the repository)
from test_data import wav, img, mask_png
from test_model_weights import _fake_imagenet

META = REPO.parent/'shared'/'reference-metadata'
pytestmark = pytest.mark.skipif(not META.is_dir(), reason=f"{META} (the real annotation files) is not here")


def rows(path):
    return [l.split(',') for l in path.read_text().splitlines() if l.strip()]

def media(frame, audio, secs=4.0, size=(96, 72), f=440.):
    "A frame (jpg/png by its suffix) and a 16 kHz wav of `secs` seconds."
    img(frame, size=size)
    wav(audio, f=f, secs=secs)


def build_vggss(root, n_train=10, n_test=5):
    "EZ-VSL's layout: vggss/{train,test}/{frames,audio} and vggss/metadata with EZ-VSL's real lists and boxes."
    m = root/'vggss'/'metadata'; m.mkdir(parents=True)
    for f in ('vggss_144k.txt', 'vggss_10k.txt', 'vggss_test.csv', 'vggss.json'): shutil.copy(META/'EZ-VSL'/f, m/f)
    boxes = {b['file']: b for b in json.loads((m/'vggss.json').read_text())}
    # VGGSound's label csv (ytid,start,label,split) for the clips of vggss.json, their real classes
    (m/'vggsound.csv').write_text(''.join(f"{i[:-7]},{int(i[-6:])},{b['class']},test\n" for i, b in boxes.items()))
    train = [i for i in (m/'vggss_144k.txt').read_text().split() if i in boxes][:n_train]   # ids with a known class
    test = [i for i in (m/'vggss_test.csv').read_text().split() if i not in train]
    test = test[:n_test - 1] + ['Db6Hjt0x28k_000056']    # one of the 12 clips with a corrupt (-2.9e16) box
    for i in train: media(root/'vggss'/'train'/'frames'/f'{i}.jpg', root/'vggss'/'train'/'audio'/f'{i}.wav')
    for i in test: media(root/'vggss'/'test'/'frames'/f'{i}.jpg', root/'vggss'/'test'/'audio'/f'{i}.wav')
    return {'train': train, 'single': test}

def build_instruments(root, n_train=10, n_duets=3):
    "AVGN's layout: vgginstruments/{train,test}/{frames,audio}, test_gt/<sample>.pkl and AVGN's real lists."
    R = root/'vgginstruments'; m = R/'metadata'; m.mkdir(parents=True)
    for f in ('vgginstruments_train.txt', 'vgginstruments_test.csv', 'vgginstruments_multi_test.csv'): shutil.copy(META/'AVGN'/f, m/f)
    tr = rows(m/'vgginstruments_train.txt')
    train = [r[0] for r in tr[::len(tr)//n_train][:n_train]]
    duets = rows(m/'vgginstruments_multi_test.csv')[:n_duets]
    test = sorted({d[0] for d in duets} | {d[2] for d in duets})
    for i in train: media(R/'train'/'frames'/f'{i}.jpg', R/'train'/'audio'/f'{i}.wav')
    for k, i in enumerate(test):
        media(R/'test'/'frames'/f'{i}.jpg', R/'test'/'audio'/f'{i}.wav', f=300. + 100*k)
        mask = np.zeros((72, 96), np.uint8); mask[10 + k:50, 20:70 - k] = 1
        (R/'test_gt').mkdir(exist_ok=True)
        (R/'test_gt'/f'{i}.pkl').write_bytes(pickle.dumps(mask))
    return {'train': train, 'single_inst': test, 'multi': [f"{d[0]}+{d[2]}" for d in duets]}

def build_avsbench(root, n_train=3, n_test=2):
    "AVSBench-object's layout (avsbench_data/): S4 with WS-AVS's real S4 ids and categories, MS3 with made-up ids."
    R = root/'avsbench'
    s4 = {sp: list(dict.fromkeys((r[0].rsplit('_', 1)[0], r[1]) for r in rows(META/'WSAVS'/f)))
          for sp, f in (('train', 'avsbench_train.txt'), ('val', 'avsbench_val.csv'), ('test', 'avsbench_test.csv'))}
    s4 = {'train': s4['train'][:n_train], 'val': s4['val'][:1], 'test': s4['test'][:n_test]}
    S = R/'Single-source'; S.mkdir(parents=True)
    (S/'s4_meta_data.csv').write_text('video_name,start_time,category,split\n' +
                                      ''.join(f"{v},0,{c},{sp}\n" for sp, vs in s4.items() for v, c in vs))
    d = S/'s4_data'
    for sp, vs in s4.items():
        for v, c in vs:
            wav(d/'audio_wav'/sp/c/f'{v}.wav', secs=5.0)
            for k in range(1, 6):
                img(d/'visual_frames'/sp/c/v/f'{v}_{k}.png', size=(72, 72))
                if sp != 'train' or k == 1: mask_png(d/'gt_masks'/sp/c/v/f'{v}_{k}.png', size=(72, 72), box=(10, 12, 50, 60))
    ms3 = {'train': ['ms3miniAAAA_0'], 'test': [f'ms3miniTST{k}_0' for k in range(n_test)]}
    M = R/'Multi-sources'; M.mkdir()
    (M/'ms3_meta_data.csv').write_text('video_name,split\n' + ''.join(f"{v},{sp}\n" for sp, vs in ms3.items() for v in vs))
    d = M/'ms3_data'
    for sp, vs in ms3.items():
        for v in vs:
            wav(d/'audio_wav'/sp/f'{v}.wav', secs=5.0)
            for k in range(1, 6):
                img(d/'visual_frames'/v/f'{v}.mp4_{k}.png', size=(72, 72))
                mask_png(d/'gt_masks'/sp/v/f'{v}_{k}.png', size=(72, 72), box=(30, 8, 70, 40))
    frames = lambda vs: [f"{v}_{k}" for v in vs for k in range(1, 6)]
    return {'train': frames(v for v, _ in s4['train']), 'seg': frames(v for v, _ in s4['test']), 'seg_multi': frames(ms3['test'])}


def tiny(p):
    "An example profile made tiny: small front ends and model, one epoch, M2VSL only; every list's absent clips skipped."
    for e in p['data'].values():
        if isinstance(e, dict): e['skip_missing'] = True   # the miniature holds a handful of each real list's clips
    p.update(audio={'sample_rate': 8000, 'seconds': 3.0, 'n_fft': 128, 'win_length': 128, 'hop_length': 240},
             image={'size': 64}, methods=['m2vsl'], batch_study={'method': 'm2vsl', 'batch_sizes': []})
    p['model'].update(dim=32, mmt_heads=4)                 # pretrained: true stays (the fake ImageNet file)
    p['train'].update(epochs=1, batch_size=4, val_fraction=0.2, num_workers=0, amp='none')
    p['evaluate'].update(batch_size=8, num_workers=0, keep_maps=2)
    return p


@pytest.mark.slow
@pytest.mark.parametrize('name', ['vggss', 'instruments', 'avsbench'])
def test_example_profile_repro_on_miniature_layout(scratch, name, tmp_path, monkeypatch):
    "`dvc repro evaluate@m2vsl` with the example profile on its layout's miniature: trained, every task scored on its clips."
    monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    _fake_imagenet(tmp_path/'torch'/'hub'/'checkpoints')   # `pretrained: true` offline
    root = scratch/'data'/'real'
    if not (root/{'vggss': 'vggss', 'instruments': 'vgginstruments', 'avsbench': 'avsbench'}[name]).exists():
        root.mkdir(parents=True, exist_ok=True)
        built = {'vggss': build_vggss, 'instruments': build_instruments, 'avsbench': build_avsbench}[name](root)
        (scratch/f'built_{name}.json').write_text(json.dumps(built))
    built = json.loads((scratch/f'built_{name}.json').read_text())
    p = tiny(yaml.safe_load((REPO/'profiles'/'examples'/f'{name}.yaml').read_text()))
    (scratch/'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    r = run('dvc repro evaluate@m2vsl', scratch)
    assert 'Running stage \'train@m2vsl\'' in r.stdout and 'Running stage \'evaluate@m2vsl\'' in r.stdout, r.stdout[-3000:]
    assert 'epoch 1/1' in r.stdout + r.stderr, r.stderr[-3000:]   # the train stage's progress line (papermill logs it)
    # the training read the clips on disk of the real training list (the rest counted as missing), through the profile
    split = json.loads((scratch/'runs'/'m2vsl'/'split.json').read_text())
    used = sorted(split['train_ids'] + split['val_ids'])
    assert used == sorted(built['train']), (used, built['train'])
    # one evaluation per task of the profile, on exactly the miniature's test clips (ids from the real lists)
    m = json.loads((scratch/'metrics'/'m2vsl.json').read_text())
    assert set(p['evaluate']['sets']) <= set(m), m
    for t in p['evaluate']['sets']:
        scored = [l.split(',')[0] for l in (scratch/'results'/'m2vsl'/f'{t}.csv').read_text().splitlines()[1:]]
        assert sorted(scored) == sorted(built[t]), (t, scored, built[t])
        assert m[t] and all(np.isfinite(v) for v in m[t].values()), (t, m[t])
    lock = yaml.safe_load((scratch/'dvc.lock').read_text())['stages']
    assert lock['train@m2vsl']['params']['params.yaml']['data.train'] == p['data']['train']   # dvc.lock records the data entry
