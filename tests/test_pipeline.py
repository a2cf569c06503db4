"""End-to-end: the whole DVC pipeline on the tiny profile in a scratch copy of the repository (issue 6).

Checks that `tools/reproduce.sh` (what `make reproduce` runs) produces every table and figure, that a second
`dvc repro` has nothing to do, and that `dvc metrics show`, `dvc params diff`, `dvc plots show` (offline: image
plots) and `dvc exp run -S` work."""
import json, os, shutil, subprocess, sys, time
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
        if f.startswith(('data/', 'runs/', 'results/', 'metrics/', 'reports/')) or not (REPO/f).is_file(): continue
        (d/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO/f, d/f)
    shutil.copy(d/'profiles'/'tiny.yaml', d/'params.yaml')
    run('git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm scratch', d)
    return d

@pytest.mark.slow
def test_tiny_pipeline_end_to_end(scratch):
    t = time.time()
    r = run('bash tools/reproduce.sh', scratch)
    print(f"tiny pipeline: {time.time() - t:.0f} s")
    for f in ['reports/tables/table1.md', 'reports/tables/table2.md', 'reports/tables/table3.md', 'reports/tables/table4.md',
              'reports/tables/summary.md', 'reports/figures/fig3_single.png', 'reports/figures/fig4_batch_size.png',
              'reports/figures/training_curves.png', 'reports/train/m2vsl.ipynb', 'metrics/m2vsl.json', 'README.md',
              'runs/pretrain/encoders.safetensors', 'metrics/untrained_ezvsl.json', 'reports/tables/learning.md']:
        assert (scratch/f).exists(), f
    # every method started from the shared pretraining's encoders, and the learning check reports each method
    cfg = json.loads((scratch/'runs/ezvsl/history.json').read_text())['config']
    assert cfg['model']['pretrained'] == 'runs/pretrain/encoders.safetensors', cfg['model']
    learn = (scratch/'reports/tables/learning.md').read_text()
    assert '| m2vsl | single pixel_ap |' in learn and '| ezvsl | seg miou |' in learn, learn
    t1 = (scratch/'reports/tables/table1.md').read_text()
    assert '| m2vsl |' in t1 and '(reported)' in t1 and '| centre_prior |' in t1
    assert '![fig3_single](reports/figures/fig3_single.png)' in (scratch/'README.md').read_text()
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
    assert "Running stage 'tables'" in out and "Running stage 'centre_prior'" not in out, out[-3000:]


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
