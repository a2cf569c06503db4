"""Progress you can watch (issue 19): one line per epoch (epoch/epochs, train loss, val loss, samples/s, ETA) in a run's
output and in the `m2vsl.train` log, with `progress: false` too, and in a papermill-run training stage's output."""
import json, logging, os, re, shlex, subprocess, sys
from pathlib import Path

import pytest, yaml

from m2vsl.config import TrainConfig
from m2vsl.train import train, epoch_line
from test_train import ToyAV, TINY, REPO, HERE

LINE = re.compile(r'^epoch (\d+)/(\d+) train_loss=(\S+) val_loss=(\S+) samples/s=([0-9.]+) eta=(\d+):(\d\d):(\d\d) ')


def _epochs(text):
    return [m.groups() for m in map(LINE.match, text.splitlines()) if m]


def test_epoch_lines_printed_and_logged_without_bars(tmp_path, capsys, caplog):
    cfg = TrainConfig(model=dict(TINY), batch_size=6, epochs=2, val_fraction=0.25, run_dir=str(tmp_path/'run'), progress=False)
    with caplog.at_level(logging.INFO, 'm2vsl.train'):
        res = train(cfg, ToyAV(24))
    out = capsys.readouterr().out
    printed = _epochs(out)
    logged = [m.groups() for m in map(LINE.match, (r.getMessage() for r in caplog.records)) if m]
    assert [(e, n) for e, n, *_ in printed] == [('1', '2'), ('2', '2')], out
    assert logged == printed, caplog.text
    for (e, n, tl, vl, rate, h, m, s), row in zip(printed, res['history']):
        assert float(tl) == pytest.approx(row['train_loss'], rel=1e-3) and float(vl) == pytest.approx(row['val_loss'], rel=1e-3)
        assert float(rate) > 0
    assert printed[-1][5:] == ('0', '00', '00')                       # nothing left after the last epoch


def test_a_console_handler_prints_it_once(tmp_path, capsys):
    "Under `python -m m2vsl.train` (a stderr handler on the logger) the line is not printed a second time."
    lg = logging.getLogger('m2vsl.train')
    h = logging.StreamHandler(sys.stderr); old = lg.level
    lg.addHandler(h); lg.setLevel(logging.INFO)
    try: train(TrainConfig(model=dict(TINY), batch_size=6, epochs=1, val_fraction=0.25, run_dir=str(tmp_path/'r'),
                           progress=False, dvclive=False), ToyAV(12))
    finally: lg.removeHandler(h); lg.setLevel(old)
    cap = capsys.readouterr()
    assert len(_epochs(cap.err)) == 1 and _epochs(cap.out) == [], (cap.out, cap.err)


def test_epoch_line_format():
    row = {'epoch': 3, 'step': 30, 'train_loss': 1.23456, 'train_mmc': 0.5, 'val_loss': None, 'lr': 1e-4}
    assert epoch_line(row, 10, 123.456, 3725.2) == \
        'epoch 3/10 train_loss=1.235 val_loss=none samples/s=123.5 eta=1:02:05 step=30 train_mmc=0.5 lr=0.0001'


@pytest.mark.slow
def test_papermill_train_stage_shows_the_epochs(tmp_path):
    "pipeline/train.ipynb run as dvc.yaml runs it: the lines are in the output notebook and on the console."
    from m2vsl.synth import generate
    root = generate(tmp_path/'data', size='tiny', workers=1)
    p = yaml.safe_load((REPO/'profiles/tiny.yaml').read_text())
    p['data']['root'] = str(root)
    p['model']['pretrained'] = False
    p['train'].update(epochs=2, progress=False)
    (tmp_path/'params.yaml').write_text(yaml.safe_dump(p))
    # the train stage's own command (dvc.yaml), pointed at this folder
    cmd = yaml.safe_load((REPO/'dvc.yaml').read_text())['stages']['train']['do']['cmd']
    cmd = shlex.split(cmd.split('&&')[-1].replace('${item}', 'm2vsl'))
    assert cmd[0] == 'papermill' and '--log-output' in cmd
    cmd = [sys.executable, '-m', *[{'pipeline/train.ipynb': str(REPO/'pipeline/train.ipynb'),
                                    'reports/train/m2vsl.ipynb': str(tmp_path/'out.ipynb')}.get(a, a) for a in cmd]]
    cmd += ['-p', 'run_dir', str(tmp_path/'run'), '-p', 'summary', str(tmp_path/'summary.json'),
            '-p', 'params', str(tmp_path/'params.yaml')]
    env = {**os.environ, 'PATH': f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", 'OMP_NUM_THREADS': '1'}
    r = subprocess.run(cmd,
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    console = [(e, n) for e, n, *_ in _epochs(r.stdout + '\n' + r.stderr)]
    assert console == [('1', '2'), ('2', '2')], (r.stdout[-2000:], r.stderr[-2000:])
    nb = json.loads((tmp_path/'out.ipynb').read_text())
    text = '\n'.join(''.join(o.get('text', '')) for c in nb['cells'] for o in c.get('outputs', []))
    assert [(e, n) for e, n, *_ in _epochs(text)] == [('1', '2'), ('2', '2')], text[-2000:]
