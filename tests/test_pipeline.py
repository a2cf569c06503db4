"""End-to-end: the whole DVC pipeline on the tiny profile in a scratch copy of the repository (issue 6).

Checks that `tools/reproduce.sh` (what `make reproduce` runs) produces every table and figure, that a second
`dvc repro` has nothing to do, and that `dvc metrics show`, `dvc params diff`, `dvc plots show` (offline: image
plots) and `dvc exp run -S` work. One tiny run (the module's `tiny_run` fixture) serves every slow test here: the
figures' structure (issue 20), the release stage's weights folder, and `dvc plots/metrics show` without warnings.
The README's inference examples run as written in a fresh clone of the committed tree (its `release/m2vsl`)."""
import json, os, re, shutil, subprocess, sys, time
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def run(cmd, cwd, timeout=900, check=True):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", DVC_NO_ANALYTICS='1', PYTHONUNBUFFERED='1')
    for k in ('GIT_AUTHOR', 'GIT_COMMITTER'):   # dvc exp run commits: do not rely on a global git identity
        env.setdefault(f'{k}_NAME', 'm2vsl test'); env.setdefault(f'{k}_EMAIL', 'test@m2vsl.invalid')
    r = subprocess.run(cmd, cwd=cwd, shell=True, capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode: raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r

@pytest.fixture(scope='module')
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp('pipeline')/'repo'
    files = run('git ls-files -co --exclude-standard', REPO).stdout.split()
    for f in files:
        generated = f.startswith(('data/', 'runs/', 'results/', 'metrics/', 'reports/', 'release/'))
        if generated and not f.startswith(('reports/second_set/', 'reports/fp32/', 'reports/full/')) or not (REPO/f).is_file(): continue   # the clone runs' results are inputs
        (d/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO/f, d/f)
    shutil.copy(d/'profiles'/'tiny.yaml', d/'params.yaml')
    run('git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm scratch', d)
    return d

@pytest.fixture(scope='module')
def tiny_run(scratch):
    "The scratch copy after `tools/reproduce.sh` (what `make reproduce` runs): one tiny pipeline run for every test here."
    t = time.time()
    run('bash tools/reproduce.sh', scratch)
    print(f"tiny pipeline: {time.time() - t:.0f} s")
    return scratch

def layout(png):
    "A figure PNG and the layout pipeline/figures.ipynb stores in it (text chunk `m2vsl-layout`, read from the drawn axes)."
    from PIL import Image
    im = Image.open(png)
    assert 'm2vsl-layout' in im.text, f"{png}: no layout chunk"
    return im, json.loads(im.text['m2vsl-layout'])

def row_panels(L, r):
    return [(q['kind'], q.get('method'), q.get('source')) for q in L['panels'] if q.get('row') == r]

@pytest.mark.slow
def test_figures_structure(tiny_run):
    "Every figure of the run: what it shows (panels per row, per-source maps of duets, masks, distinct clips), dpi, labels."
    from m2vsl.pipeline import load_params
    p = load_params(tiny_run/'params.yaml')
    methods = p['methods']
    figs = tiny_run/'reports'/'figures'
    # the image-plots folder holds the PNGs only (DVC reads any other file there as a plot and warns)
    assert sorted(f.name for f in figs.iterdir()) == ['fig3_multi.png', 'fig3_seg.png', 'fig3_single.png',
                                                      'fig4_batch_size.png', 'training_curves.png']
    for f in figs.iterdir():
        im, L = layout(f)
        assert min(im.info['dpi']) >= 150, (f.name, im.info.get('dpi'))
        assert L['n_drawn_axes'] == len(L['panels']), (f.name, L['n_drawn_axes'], len(L['panels']))   # every panel drawn
    # single source: frame, ground truth and one map per method on each row; rows are different samples
    im, L = layout(figs/'fig3_single.png'); n = len(L['rows'])
    assert n >= 3 and len(set(L['rows'])) == n, L['rows']
    for r in range(n):
        assert row_panels(L, r) == [('frame', None, None), ('gt', None, None)] + [('map', m, None) for m in methods], row_panels(L, r)
    assert im.size[0] >= 250*len(L['columns']), (im.size, L['columns'])          # each column ≥ 250 px wide
    # duets (a column per source of each duet, a row per method): both sources' ground truth, each method's map per source
    im, L = layout(figs/'fig3_multi.png'); S = L['samples']
    assert L['n_sources'] == 2 and len(S) >= 2 and len(set(S)) == len(S), S
    assert L['rows'] == ['ground truth'] + methods, L['rows']
    for i in S:
        got = [(q['kind'], q.get('method'), q['source']) for q in L['panels'] if q['sample'] == i]
        assert got == [('gt', None, 0), ('gt', None, 1)] + [('map', m, k) for m in methods for k in (0, 1)], (i, got)
    assert im.size[0] >= 250*len(L['columns']), (im.size, L['columns'])
    # segmentation: rows are frames of different clips (AVSBench ids are <clip>_<frame>); GT mask and a predicted mask per method
    im, L = layout(figs/'fig3_seg.png'); n = len(L['rows'])
    clips = [i.rsplit('_', 1)[0] for i in L['rows']]
    assert n >= 2 and len(set(clips)) == n, L['rows']
    for r in range(n):
        assert row_panels(L, r) == [('frame', None, None), ('gt_mask', None, None)] + [('pred_mask', m, None) for m in methods]
    # Figure 4: the batch study's sizes and the main run's
    im, L = layout(figs/'fig4_batch_size.png')
    assert L['batch_sizes'] == sorted(set(p['batch_study']['batch_sizes']) | {p['train']['batch_size']}), L['batch_sizes']
    assert L['axes'][0]['xlabel'] and L['axes'][0]['ylabel'] and L['axes'][0]['n_lines'] == 2, L['axes']
    # training curves: one panel per method, labelled axes, training and validation loss
    im, L = layout(figs/'training_curves.png')
    assert [q['method'] for q in L['panels']] == methods and [a['title'] for a in L['axes']] == methods, L
    for a in L['axes']:
        assert a['xlabel'] == 'epoch' and 'loss' in a['ylabel'] and a['n_lines'] == 2, a

def readme_examples(text):
    "The code blocks of the README's inference section, in order: [(language, code)]."
    assert '\n## Inference' in text, "the README has no '## Inference' section"
    part = text.split('\n## Inference', 1)[1].split('\n## ', 1)[0]
    return re.findall(r"```(bash|python)\n(.*?)```", part, re.S)

def index_examples():
    "The inference examples as nbs/index.ipynb (the README's source) writes them."
    nb = json.loads((REPO/'nbs'/'index.ipynb').read_text())
    return readme_examples('\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown'))

def test_readme_inference_example(tmp_path):
    """The README's inference examples, run as written in a fresh clone of the committed repository (no data, no
    training: the released model `release/m2vsl` and its example pair) with the project's venv; each writes an overlay."""
    from PIL import Image
    blocks = readme_examples((REPO/'README.md').read_text())
    assert [lang for lang, _ in blocks] == ['bash', 'python'], blocks
    assert blocks == index_examples(), "README.md is older than nbs/index.ipynb's examples"
    clone = tmp_path/'clone'
    run(f'git clone -q {REPO} {clone}', tmp_path)
    (clone/'.venv').symlink_to(BIN.parent)
    (clone/'example.sh').write_text(blocks[0][1]); (clone/'example.py').write_text(blocks[1][1])
    out = run('bash -eu example.sh', clone).stdout
    assert '"peak"' in out and '"top"' in out, out
    out = run(f'{BIN}/python example.py', clone).stdout
    frame = clone/'release'/'m2vsl'/'example.jpg'
    for f in ('overlay.png', 'overlay_python.png'):
        im = Image.open(clone/f)
        assert im.size == Image.open(frame).size and im.mode == 'RGB', (f, im.size, im.mode)
    assert len(list(clone.glob('overlay.class-*.png'))) == 3            # --classes: the top-3 classes' overlays

@pytest.mark.slow
def test_release_stage(tiny_run):
    "The run's `release` stage: a float16 weights folder with its example pair and model card, that loads and localizes."
    from m2vsl.inference import from_pretrained
    rel = tiny_run/'release'/'m2vsl'
    from m2vsl.pipeline import load_params
    licences = (tiny_run/load_params(tiny_run/'params.yaml')['data']['root']/'LICENCES.md').exists()   # a kit's data has them
    assert sorted(f.name for f in rel.iterdir()) == ['LICENCES.md']*licences + ['README.md', 'config.json', 'example.jpg',
                                                     'example.wav', 'model.safetensors'], sorted(f.name for f in rel.iterdir())
    conf = json.loads((rel/'config.json').read_text())
    assert conf['method'] == 'm2vsl'
    card = (rel/'README.md').read_text()
    m = json.loads((tiny_run/'metrics'/'m2vsl.json').read_text())
    # the evaluation measured at evaluate.image_size (the tiny profile: 96 px, trained at 64), the references too, and the
    # released model localizes at that size, so what `m2vsl localize` shows is what the card scores
    p = load_params(tiny_run/'params.yaml')
    assert p['evaluate']['image_size'] != p['image']['size']
    ref = json.loads((tiny_run/'metrics'/'references'/'centre_prior.json').read_text())
    assert m['image_size'] == ref['image_size'] == conf['image']['size'] == p['evaluate']['image_size'], (m, ref, conf['image'])
    assert f"{p['image']['size']} px frames (it localizes at {p['evaluate']['image_size']} px" in card, card
    assert f"| single-source pixel AP | {100*m['single']['pixel_ap']:.1f} |" in card, card     # the run's own score
    r = from_pretrained(rel).localize(rel/'example.jpg', rel/'example.wav')
    assert r.map.shape == r.size and 0 <= r.map.min() and r.map.max() <= 1

@pytest.mark.slow
def test_dvc_plots_and_metrics_show_no_warning(tiny_run):
    "`dvc plots show` and `dvc metrics show` on the run's tree: no warning, every metrics file the pipeline writes shown."
    for cmd in ('dvc plots show --json', 'dvc metrics show'):
        r = run(cmd, tiny_run)
        assert not r.stderr.strip() and 'warn' not in r.stdout.lower() and 'failed' not in r.stdout.lower(), (cmd, r.stderr[-2000:])
    shown = run('dvc metrics show --json', tiny_run).stdout
    written = {str(f.relative_to(tiny_run)) for f in (tiny_run/'metrics').rglob('*.json')}
    assert written and all(f in shown for f in written), sorted(f for f in written if f not in shown)

@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tiny_run):
    scratch = tiny_run
    for f in ['reports/tables/table1.md', 'reports/tables/table2.md', 'reports/tables/table3.md', 'reports/tables/table4.md',
              'reports/tables/summary.md', 'reports/figures/fig3_single.png', 'reports/figures/fig4_batch_size.png',
              'reports/figures/training_curves.png', 'reports/train/m2vsl.ipynb', 'metrics/m2vsl.json', 'README.md',
              'runs/pretrain/encoders.safetensors', 'metrics/references/untrained_ezvsl.json', 'reports/tables/learning.md']:
        assert (scratch/f).exists(), f
    # every method started from the shared pretraining's encoders, and the learning check reports each method
    cfg = json.loads((scratch/'runs/ezvsl/history.json').read_text())['config']
    assert cfg['model']['pretrained'] == 'runs/pretrain/encoders.safetensors', cfg['model']
    learn = (scratch/'reports/tables/learning.md').read_text()
    assert '| m2vsl | single pixel_ap |' in learn and '| ezvsl | seg miou |' in learn, learn
    t1 = (scratch/'reports/tables/table1.md').read_text()
    assert '| m2vsl |' in t1 and '(reported)' in t1 and '| centre_prior |' in t1
    assert '![fig3_single](reports/figures/fig3_single.png)' in (scratch/'README.md').read_text()
    # the tiny profile trains M2VSL with a second seed (seed_study): the tables give the spread over both
    seeds = (scratch/'reports/tables/seeds.md').read_text()
    assert 'mean ± sd over seeds 0, 1' in seeds and '| m2vsl | ' in seeds and ' ± ' in seeds, seeds
    # nothing changed -> nothing to reproduce
    again = run('dvc repro', scratch).stdout
    assert 'Data and pipelines are up to date' in again, again
    # the DVC commands a user reaches for
    assert 'm2vsl' in run('dvc metrics show', scratch).stdout
    run('git add -A && git -c user.name=t -c user.email=t@t commit -qm run', scratch)
    assert run('dvc params diff', scratch).returncode == 0
    html = run('dvc plots show --out plots-html', scratch)
    page = (scratch/'plots-html'/'index.html').read_text()
    assert '<img' in page and 'fig4_batch_size' in page          # images render offline (no vega from a CDN)
    exp = run('dvc exp run -S profile=tiny-experiment', scratch)   # a parameter only the tables stage reads
    out = exp.stdout + exp.stderr
    assert "Running stage 'tables'" in out and "Running stage 'references'" not in out, out[-3000:]


def test_data_hash_check_on_a_fresh_clone(tmp_path):
    "The data check of `make reproduce` passes on matching bytes with an empty DVC cache (a fresh clone) and fails on changed ones."
    d = tmp_path/'repo'; (d/'tools').mkdir(parents=True)
    shutil.copy(REPO/'tools'/'data_hash.py', d/'tools')
    (d/'data').mkdir(); (d/'data'/'a.txt').write_text('one\n'); (d/'data'/'b.bin').write_bytes(bytes(range(256)))
    run('git init -q && dvc init -q && dvc add -q data', d)
    shutil.rmtree(d/'.dvc'/'cache')                     # what a fresh clone has: no cache
    assert 'not in cache' in run('dvc status data.dvc', d).stdout   # why `dvc status` cannot be the check
    r = run('python tools/data_hash.py data.dvc', d, check=False)
    assert r.returncode == 0 and 'matches' in r.stdout, r.stdout + r.stderr
    (d/'data'/'a.txt').write_text('two\n')
    r = run('python tools/data_hash.py data.dvc', d, check=False)
    assert r.returncode == 1 and 'DIFFERS' in r.stdout, r.stdout + r.stderr
