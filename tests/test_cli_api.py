"""Issue 17: one `m2vsl` command (subcommands, --help, --version, check-data) and the top-level API of `m2vsl`."""
import contextlib, io, logging, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

import m2vsl
from m2vsl.cli import main

SUBCOMMANDS = ['train', 'evaluate', 'localize', 'prepare', 'synth', 'check-data']


def run_main(argv):
    "(exit status, stdout, stderr) of `m2vsl <argv>` run in this process."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: rc = main(argv)
        except SystemExit as e: rc = e.code
    return rc, out.getvalue(), err.getvalue()


def test_help_lists_every_subcommand():
    r = subprocess.run([sys.executable, '-m', 'm2vsl.cli', '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for s in SUBCOMMANDS: assert s in r.stdout, (s, r.stdout)


@pytest.mark.parametrize('sub', SUBCOMMANDS)
def test_each_subcommand_help(sub):
    rc, out, err = run_main([sub, '--help'])
    assert rc == 0, err
    assert out.startswith(f"usage: m2vsl {sub}"), out
    assert '--no_progress' not in out and not any(o.startswith('--') and '_' in o for o in out.split()), out  # one flag style


def test_version():
    rc, out, _ = run_main(['--version'])
    assert rc == 0 and out.strip() == f"m2vsl {m2vsl.__version__}", out


def test_train_print_config_without_params():
    rc, out, err = run_main(['train', '--method', 'ezvsl', '--print-config', 'epochs=2', 'model.dim=32'])
    assert rc == 0, err
    import yaml
    d = yaml.safe_load(out)
    assert (d['method'], d['epochs'], d['model']['dim'], d['run_dir']) == ('ezvsl', 2, 32, 'runs/ezvsl')


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    from m2vsl.synth import generate
    return generate(tmp_path_factory.mktemp('cd')/'data', size='tiny', workers=1, vgg_train=4, vgg_test=3, inst_train=2,
                    inst_test=2, inst_duets=1, s4_train=1, s4_val=1, s4_test=1, ms3_test=1)


def test_check_data_on_a_good_and_a_broken_root(tiny_root, tmp_path):
    import shutil
    root = tmp_path/'vggsound'
    shutil.copytree(tiny_root/'vggsound', root)
    rc, out, err = run_main(['check-data', str(root)])
    assert rc == 0, out + err
    assert 'Data-hygiene report' in out and 'no samples skipped' in out and 'OK:' in out, out
    bad = sorted((root/'audio').glob('*.wav'))[0]
    bad.write_bytes(bad.read_bytes()[:100])                    # a truncated wav
    logging.disable(logging.WARNING)
    try: rc, out, err = run_main(['check-data', str(root)])
    finally: logging.disable(logging.NOTSET)
    assert rc == 1 and str(bad) in out and 'problem(s)' in out, out + err


def test_check_data_not_a_folder(tmp_path):
    rc, out, err = run_main(['check-data', str(tmp_path/'nope')])
    assert rc == 1 and f"{tmp_path/'nope'}: not a folder" in err, err


def test_import_is_light_and_names_are_reachable():
    r = subprocess.run([sys.executable, '-c', "import sys, m2vsl; assert 'torch' not in sys.modules, 'torch imported'; "
                        "print(sorted(m2vsl.__all__))"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for n in ('create_model', 'list_methods', 'from_pretrained', 'localize', 'evaluate', 'train'):
        assert n in r.stdout and callable(getattr(m2vsl, n)), n


def test_list_methods_and_create_model():
    names = m2vsl.list_methods()
    assert {'m2vsl', 'ezvsl', 'mmc_only', 'mmt_only', 'neither', 'attention10k', 'ots', 'lvs', 'cam'} <= set(names), names
    m = m2vsl.create_model('ezvsl', dim=32)
    assert m.cfg.dim == 32 and sum(p.numel() for p in m.parameters()) > 0
    assert m2vsl.create_model('lvs').__class__.__name__ == 'LVS'
    assert hasattr(m2vsl.train, 'TrainConfig')   # the module is still the module


def tiny_weights(path, method='m2vsl', **model):
    "A weights folder of a freshly built tiny model (32 px, 8 kHz audio)."
    from m2vsl.config import TrainConfig
    from m2vsl.inference import save_pretrained
    cfg = TrainConfig(method=method, model=model, image=dict(size=32),
                      audio=dict(sample_rate=8000, n_fft=128, win_length=128, hop_length=240))
    names = [f"c{i}" for i in range(model['num_classes'])] if 'num_classes' in model else None
    save_pretrained(m2vsl.create_model(method, **model), cfg, path, class_names=names)
    return path


def test_evaluate_a_weights_folder_on_a_root(tiny_root, tmp_path):
    import json
    w = tiny_weights(tmp_path/'w', 'ezvsl', dim=32)
    rc, out, err = run_main(['evaluate', '--checkpoint', str(w), '--root', str(tiny_root/'vggsound'), '--no-progress',
                             '--batch-size', '2', '--out', str(tmp_path/'m.json')])
    assert rc == 0, err
    m = json.loads(out)['vggsound/single/test']
    assert m['n_samples'] == 3 and 0 <= m['iou@0.5'] <= 1, m
    assert json.loads((tmp_path/'m.json').read_text()) == json.loads(out)
    r = m2vsl.evaluate(m2vsl.create_model('ezvsl', dim=32), tiny_root/'vggsound', batch_size=2, progress=False)
    assert r['task'] == 'single' and r['metrics']['n_samples'] == 3


def test_from_pretrained_and_localize(tmp_path):
    tiny_weights(tmp_path/'w', 'm2vsl', num_classes=3, dim=32, mmt_heads=4)
    loc = m2vsl.from_pretrained(tmp_path/'w')
    im, au = np.full((40, 50, 3), 120, np.uint8), (np.sin(np.arange(16000)/5).astype(np.float32), 8000)
    r = m2vsl.localize(loc, im, au, top_k=2)
    assert r.map.shape == (40, 50) and len(r.top) == 2
    assert np.allclose(m2vsl.localize(tmp_path/'w', im, au).map, r.map, atol=1e-5)


def test_evaluate_params_passes_the_evaluate_section(tmp_path, monkeypatch):
    "`m2vsl evaluate --params` gives `evaluate()` the params file's evaluate: options per task and builds the sets at its\n    evaluate.image_size, as the pipeline's stage does; --image-size overrides the size."
    import yaml, m2vsl.cli as cli, m2vsl.data, m2vsl.evaluate
    calls, sizes = [], []
    def fake_evaluate(model, ds, task, **kw):
        calls.append((task, kw)); return {'metrics': {'n_samples': 1}}
    monkeypatch.setattr(cli, 'load_model', lambda path, device='cpu', image_size=None: ('model', None, None))
    monkeypatch.setattr(m2vsl.data, 'build_dataset', lambda d, a, i: sizes.append(i.size) or d)
    monkeypatch.setattr(m2vsl.evaluate, 'evaluate', fake_evaluate)
    p = {'data': {'root': str(tmp_path), 'single': {'path': 'vggsound', 'layout': 'vggsound', 'split': 'test'},
                  'multi': {'path': 'vggsound', 'layout': 'vggsound', 'split': 'test', 'task': 'multi'},
                  'seg': {'path': 'avsbench', 'layout': 'avsbench', 'split': 'test'}},
         'audio': {}, 'image': {'size': 96}, 'train': {'amp': 'none'}, 'methods': ['m2vsl'],
         'evaluate': {'sets': ['single', 'multi', 'seg'], 'image_size': 160, 'batch_size': 7, 'iou_thresholds': [0.2, 0.6],
                      'ciou_thresholds': [0.15], 'fscore_batch': 3}}
    f = tmp_path/'params.yaml'; f.write_text(yaml.safe_dump(p))
    rc, out, err = run_main(['evaluate', '--checkpoint', str(tmp_path/'x.pt'), '--params', str(f), '--no-progress'])
    assert rc == 0, err
    got = {t: kw for t, kw in calls}
    assert got['single']['evaluator_kw'] == {'iou_thresholds': (0.2, 0.6)} and got['single']['batch_size'] == 7
    assert got['multi']['evaluator_kw'] == {'iou_thresholds': (0.15,)}
    assert got['seg']['evaluator_kw'] == {'fscore_batch': 3} and got['seg']['amp'] == 'none'
    assert sizes == [160]*3, sizes                                   # evaluation's frames, not the training's 96 px
    calls.clear(); sizes.clear()
    rc, _, err = run_main(['evaluate', '--checkpoint', 'x', '--params', str(f), '--batch-size', '2', '--amp', 'bf16', '--sets', 'single',
                           '--image-size', '128'])
    assert rc == 0 and calls[0][1]['batch_size'] == 2 and calls[0][1]['amp'] == 'bf16', (err, calls)
    assert sizes == [128], sizes
