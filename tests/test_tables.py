"""The tables stage (pipeline/tables.ipynb) on the metrics of other profiles than the default: one method, some of the
evaluation sets, no untrained or centre-prior references. Every table file comes out, a table whose sets were not
evaluated says so, and comparisons without both sides are left out instead of failing (issue 20)."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TABLES = ['table1', 'table2', 'table3', 'table4']


def run_tables(tmp_path, methods, sets, refs=(), scores=None):
    """Run the tables notebook in `tmp_path` on the repository's metrics of `methods` (+ `refs`), cut to `sets`;
    `scores`: per-clip single-source scores to write as results/<name>/single.csv (CSV text by method or reference)."""
    for m, text in (scores or {}).items():
        f = tmp_path/'results'/('references/' if m == 'centre_prior' else '')/m/'single.csv'
        f.parent.mkdir(parents=True); f.write_text(text)
    p = yaml.safe_load((REPO/'params.yaml').read_text())
    p['methods'] = list(methods); p['evaluate']['sets'] = list(sets)
    (tmp_path/'params.yaml').write_text(yaml.safe_dump(p))
    (tmp_path/'metrics').mkdir()
    (tmp_path/'metrics'/'references').mkdir()
    for m in list(methods) + list(refs):
        sub = 'references/' if m in refs else ''
        full = json.loads((REPO/'metrics'/f'{sub}{m}.json').read_text())
        (tmp_path/'metrics'/f'{sub}{m}.json').write_text(json.dumps({k: v for k, v in full.items() if not isinstance(v, dict) or k in sets}))
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    r = subprocess.run([str(BIN/'papermill'), '--no-progress-bar', '--cwd', str(tmp_path), '-k', 'python3', '--language', 'python',
                        str(REPO/'pipeline'/'tables.ipynb'), str(tmp_path/'tables.ipynb'),
                        '-p', 'paper_reported', str(REPO/'pipeline'/'paper_reported.yaml')],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path/'reports'/'tables'
    for f in [f'{t}.{x}' for t in TABLES for x in ('md', 'csv')] + ['summary.md', 'learning.md', 'm2vsl_vs_others.csv']:
        assert (out/f).exists(), f
    return out, tmp_path/'metrics'


@pytest.mark.skipif(not (REPO/'metrics'/'m2vsl.json').exists(), reason='no metrics of the main run')
def test_one_method_some_sets_no_references(tmp_path):
    out, met = run_tables(tmp_path, ['m2vsl'], ['single', 'seg'])
    t1 = (out/'table1.md').read_text()
    assert '| m2vsl | – | – | – |' in t1 and '(reported)' in t1, t1          # single_inst not evaluated: dashes
    assert 'untrained_m2vsl' not in t1 and 'centre_prior' not in t1, t1
    assert 'not produced' in (out/'table2.md').read_text()                  # duets not evaluated
    assert '| m2vsl |' in (out/'table3.md').read_text()
    t4 = (out/'table4.md').read_text()
    assert '| m2vsl |' in t4 and '| neither |' not in t4, t4               # the ablations not trained: their rows left out
    s = json.loads((met/'summary.json').read_text())
    assert s['comparisons'] == 0 and s['m2vsl_beats_ezvsl_everywhere'] is None, s
    assert 'not compared' in (out/'summary.md').read_text()
    learn = json.loads((met/'learning.json').read_text())
    assert learn['checks'] == 0 and learn['not_judged'] == 3 and learn['every_method_learns'] is None, learn
    assert '| m2vsl | seg miou |' in (out/'learning.md').read_text()
    # one metrics file per table row: `dvc metrics show metrics/tables/table1` prints Table 1
    assert sorted(f.parent.name for f in (met/'tables').rglob('m2vsl.json')) == ['table1', 'table3', 'table4']
    assert set(json.loads((met/'tables'/'table1'/'m2vsl.json').read_text())) == {'single_pixel_ap', 'single_iou@0.5', 'single_auc'}


@pytest.mark.skipif(not (REPO/'metrics'/'ezvsl.json').exists(), reason='no metrics of the main run')
def test_two_methods_every_set_one_reference(tmp_path):
    out, met = run_tables(tmp_path, ['m2vsl', 'ezvsl'], ['single', 'single_inst', 'multi', 'seg', 'seg_multi'], refs=['centre_prior'])
    t2 = (out/'table2.md').read_text()
    assert '| centre_prior |' in t2 and 'Duet CAP (reported)' in t2 and '| m2vsl - avgn (gain) |' in t2, t2   # Table 2 reported
    assert 'VGGSound-Duet' in t2, t2
    s = json.loads((met/'summary.json').read_text())
    assert s['comparisons'] == 15 and s['m2vsl_beats_every_ablation'] is None, s   # Tables 1–3 against EZ-VSL: 6 + 5 + 4
    learn = json.loads((met/'learning.json').read_text())
    assert learn['checks'] == 0 and learn['not_judged'] == 6, learn          # no untrained_* metrics: shown, not judged


@pytest.mark.skipif(not (REPO/'metrics'/'references'/'untrained_ezvsl.json').exists(), reason='no metrics of the main run')
def test_learning_check_counts_each_half(tmp_path):
    "The learning check: a row learns when it beats both references; each half is counted on its own (issue 18)."
    methods = ['m2vsl', 'ezvsl']
    out, met = run_tables(tmp_path, methods, ['single', 'seg'], refs=['centre_prior', 'untrained_m2vsl', 'untrained_ezvsl'])
    val = lambda name, t, k: json.loads((met/f"{'references/' if name.startswith(('untrained', 'centre')) else ''}{name}.json")
                                        .read_text())[t][k]
    rows = [(m, t, k) for m in methods for t, k in [('single', 'pixel_ap'), ('single', 'iou@0.3'), ('seg', 'miou')]]
    up = [val(m, t, k) > val(f'untrained_{m}', t, k) for m, t, k in rows]
    uc = [val(m, t, k) > val('centre_prior', t, k) for m, t, k in rows]
    learn = json.loads((met/'learning.json').read_text())
    assert learn['checks'] == 6 and learn['not_judged'] == 0, learn
    assert (learn['above_untrained'], learn['above_centre'], learn['learns']) == (sum(up), sum(uc), sum(a and b for a, b in zip(up, uc))), learn
    md = (out/'learning.md').read_text()
    assert f"Above the untrained self: {sum(up)} of 6; above the centre prior: {sum(uc)} of 6." in md, md
    yn = lambda v: 'yes' if v else '**no**'
    for (m, t, k), a, b in zip(rows, up, uc):
        assert f"| {yn(a)} | {yn(b)} | {yn(a and b)} |" in next(l for l in md.splitlines() if l.startswith(f'| {m} | {t} {k} |')), md


@pytest.mark.skipif(not (REPO/'metrics'/'references'/'centre_prior.json').exists(), reason='no metrics of the main run')
def test_learning_check_by_box_area(tmp_path):
    "The learning check's breakdown by box size: per band, % of clips at IoU >= 0.3 / mean per-clip pixel AP (issue 18)."
    N = json.loads((REPO/'metrics'/'references'/'centre_prior.json').read_text())['image_size']**2
    def csv(rows):   # (box share of the frame, ciou, pixel_ap)
        return 'id,ciou,conf,n_boxes,gt_area,pixel_ap\n' + ''.join(f'c{i},{c},0.5,1,{a*N},{ap}\n' for i, (a, c, ap) in enumerate(rows))
    m2 = [(.10, .2, .6), (.12, .1, .4), (.20, .35, .7), (.20, .25, .5), (.30, .5, .8), (.60, .7, .9), (.60, .2, .7)]
    cp = [(.10, .0, .1), (.12, .0, .3), (.20, .40, .5), (.20, .45, .5), (.30, .6, .8), (.60, .8, .9), (.60, .9, 1.)]
    out, _ = run_tables(tmp_path, ['m2vsl'], ['single'], refs=['centre_prior'], scores={'m2vsl': csv(m2), 'centre_prior': csv(cp)})
    md = (out/'learning.md').read_text()
    assert '| box area | clips | m2vsl | centre_prior |' in md, md
    for line in ['| under 15 % | 2 | 0 / 50 | 0 / 20 |', '| 15–25 % | 2 | 50 / 60 | 100 / 50 |', '| 25–40 % | 1 | 100 / 80 | 100 / 80 |',
                 '| 40 % or more | 2 | 50 / 80 | 100 / 95 |']:
        assert line in md, (line, md)
    import pandas as pd
    t = pd.read_csv(out/'learning_by_area.csv')
    assert t['clips'].tolist() == [2, 2, 1, 2] and t['m2vsl iou@0.3'].tolist() == [0, .5, 1, .5], t
