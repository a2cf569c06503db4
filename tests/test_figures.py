"""The figures stage (pipeline/figures.ipynb) when Figure 4 has fewer than two batch sizes: the figure is drawn and says
so in itself, instead of being left out (issue 20). The full set of figures is checked on a tiny run in
tests/test_pipeline.py (slow)."""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_figures(tmp_path, batch_sizes, with_main=True):
    p = yaml.safe_load((REPO/'params.yaml').read_text())
    p['batch_study'] = {'method': 'm2vsl', 'batch_sizes': batch_sizes}
    (tmp_path/'params.yaml').write_text(yaml.safe_dump(p))
    (tmp_path/'metrics'/'batch_study').mkdir(parents=True)
    seg = lambda b: {'seg': {'miou': 0.2 + b/1000, 'fscore': 0.3 + b/1000}}
    if with_main: (tmp_path/'metrics'/'m2vsl.json').write_text(json.dumps(seg(p['train']['batch_size'])))
    for b in batch_sizes: (tmp_path/'metrics'/'batch_study'/f'bs{b}.json').write_text(json.dumps(seg(b)))
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    r = subprocess.run([str(BIN/'papermill'), '--no-progress-bar', '--cwd', str(tmp_path), '-k', 'python3', '--language', 'python',
                        str(REPO/'pipeline'/'figures.ipynb'), str(tmp_path/'figures.ipynb')],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    from PIL import Image
    im = Image.open(tmp_path/'reports'/'figures'/'fig4_batch_size.png')
    return im, json.loads(im.text['m2vsl-layout'])


@pytest.mark.parametrize('batch_sizes,with_main,n', [([], True, 1), ([], False, 0), ([16], True, 2)])
def test_figure4_says_when_it_has_no_curve(tmp_path, batch_sizes, with_main, n):
    im, L = run_figures(tmp_path, batch_sizes, with_main)
    assert len(L['batch_sizes']) == n and min(im.info['dpi']) >= 150, L
    if n < 2:
        assert L['note'] and L['note'].startswith('No curve') and 'batch_study.batch_sizes' in L['note'], L
    else:
        assert L['note'] is None and L['axes'][0]['n_lines'] == 2, L
    assert L['n_drawn_axes'] == len(L['panels']) == (1 if n else 0), L
