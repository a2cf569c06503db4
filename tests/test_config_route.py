"""Issue 17: one route from a params file to a `TrainConfig`. Every `data.train` field (list_file, metadata_dir,
mask_dir, ...) reaches the training data, and `m2vsl train --params`, `python -m m2vsl.train --params` (the torchrun
route), the pipeline stage's relaunch and `pipeline.train_config` give equal configs."""
import json, shutil, subprocess, sys
from pathlib import Path

import pytest
import yaml

from m2vsl.pipeline import train_config
from m2vsl.config import TrainConfig, load_config
from m2vsl.train import train
from m2vsl.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    "A tiny data root, a metadata folder of its own with a list of 3 of the 6 training ids, and a params file naming them."
    from m2vsl.synth import generate
    t = tmp_path_factory.mktemp('route')
    root = generate(t/'data', size='tiny', workers=1, vgg_train=6, vgg_test=2, inst_train=2, inst_test=2, inst_duets=1,
                    s4_train=1, s4_val=1, s4_test=1, ms3_test=1)
    meta, masks = t/'meta', t/'masks'
    shutil.copytree(root/'vggsound'/'metadata', meta); masks.mkdir()
    ids = [l.split(',')[0].strip() for l in (meta/'train.txt').read_text().splitlines() if l.strip()]
    assert len(ids) == 6
    listed = ids[1:4]
    (meta/'mine.txt').write_text('\n'.join(listed) + '\n')
    p = yaml.safe_load((REPO/'profiles'/'tiny.yaml').read_text())
    p['data']['root'] = str(root)
    p['data']['train'] = dict(p['data']['train'], list_file='mine.txt', metadata_dir=str(meta), mask_dir=str(masks))
    p['model'] = {k: v for k, v in p['model'].items() if k != 'pretrained'}     # no pretraining run here
    p['train'].update(epochs=1, batch_size=2, val_fraction=0.34, dvclive=False)
    f = t/'params.yaml'
    f.write_text(yaml.safe_dump(p, sort_keys=False))
    return f, listed, meta, masks, t


def test_data_fields_reach_training(setup, capsys):
    f, listed, meta, masks, t = setup
    cfg = train_config(f, 'ezvsl', str(t/'run'))
    assert (cfg.data.list_file, cfg.data.metadata_dir, cfg.data.mask_dir) == ('mine.txt', str(meta), str(masks))
    res = train(cfg)
    split = json.loads((t/'run'/'split.json').read_text())
    assert sorted(split['train_ids'] + split['val_ids']) == sorted(listed), split   # exactly the listed ids
    assert res['config']['data']['list_file'] == 'mine.txt'


def test_every_route_gives_the_same_config(setup, capsys):
    f, _, _, _, t = setup
    ref = train_config(f, 'ezvsl', 'runs/ezvsl', ['batch_size=4'])
    # m2vsl train --params
    capsys.readouterr()
    assert cli_main(['train', '--params', str(f), '--method', 'ezvsl', '--print-config', 'batch_size=4']) == 0
    assert TrainConfig.from_dict(yaml.safe_load(capsys.readouterr().out)) == ref
    # python -m m2vsl.train --params (as torchrun -m m2vsl.train runs it)
    assert load_config(f, 'train', ['method=ezvsl', 'batch_size=4']) == ref
    r = subprocess.run([sys.executable, '-m', 'm2vsl.train', '--params', str(f), '--print-config', 'method=ezvsl',
                        'batch_size=4'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert TrainConfig.from_dict(yaml.safe_load(r.stdout)) == ref
    # the train stage's relaunch under torchrun: the resolved config written as a train: section and read back
    g = t/'launched.yaml'
    g.write_text(yaml.safe_dump({'train': ref.to_dict()}, sort_keys=False))
    assert load_config(g, 'train') == ref
    # what the old route dropped: the front ends and model of the params file
    p = yaml.safe_load(f.read_text())
    assert (ref.image.size, ref.audio.sample_rate, ref.model.dim) == (p['image']['size'], p['audio']['sample_rate'], p['model']['dim'])
