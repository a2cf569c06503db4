"""The benchmark scripts (issue 22) on tiny sizes: the ceiling record, the authors' EZ-VSL step, the video row, and the
report's ratios to the ceiling computed from hand-made records. Speeds are not checked: the scripts measure."""
import json, sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1]/'bench'
sys.path.insert(0, str(BENCH))
import bench_ceiling, bench_inference, bench_train, bench_video, report   # noqa: E402


@pytest.fixture(autouse=True)
def keep_threads():
    "A script's main() sets this process's torch threads, as a program should; the test puts them back, so the tests that run\nafter it (the one- vs two-process comparison in test_launch) run as they would alone."
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_ceiling_record(tmp_path):
    bench_ceiling.main(['--n', '128', '--runs', '1', '--threads', '1', '--out', str(tmp_path/'ceiling.json')])
    r = json.loads((tmp_path/'ceiling.json').read_text())
    assert r['native_precisions'][0] == 'fp32' and set(r['gemm']) == set(r['native_precisions'])
    assert ('bf16' in r['native_precisions']) == bench_ceiling.native_bf16(torch.device('cpu'))
    assert r['best_gflops'] == max(g['gflops_best'] for g in r['gemm'].values()) > 0
    assert r['cpu'] and r['machine_class'] and r['cores'] >= 1


def test_naive_ezvsl_step():
    "The authors' model: their loss on a batch, maps of the trunk's grid, and an Adam step that changes the weights."
    b = bench_train.make_batch(3, 64, 33, 20, 10)
    r = bench_train.NaiveRunner('ezvsl naive', b)
    loss, savg = r.model(b['image'], b['audio'])
    assert loss.ndim == 0 and savg.shape == (3, 2, 2)
    w = r.model.img_proj.weight.detach().clone()
    r.count_flops()
    assert r.gflop > 0 and not torch.equal(w, r.model.img_proj.weight)


def test_video_row(tmp_path):
    bench_video.main(['--seconds', '1', '--width', '96', '--height', '64', '--fps', '10', '--size', '32', '--batch', '4',
                      '--runs', '1', '--dim', '32', '--mmt-dim', '0', '--num-classes', '3', '--out', str(tmp_path/'video.json')])
    r = json.loads((tmp_path/'video.json').read_text())
    assert r['clip']['frames'] == 10 and r['e2e_fps'] > 0 and r['model_fps'] > 0
    assert r['e2e_over_model'] == pytest.approx(r['e2e_fps']/r['model_fps'], abs=1e-3)


def test_inference_side_by_side(tmp_path):
    "Every model row carries a GEMM timed between its batches, at the ceiling record's precision and size, and the median pair ratio."
    bench_ceiling.main(['--n', '64', '128', '--runs', '1', '--threads', '1', '--out', str(tmp_path/'ceiling.json')])
    ce = json.loads((tmp_path/'ceiling.json').read_text())
    bench_inference.main(['--configs', '32:cpu', '--batches', '2', '--runs', '3', '--warmup', '1', '--dim', '32', '--num-classes', '3',
                          '--mmt-dim', '0', '--no-e2e', '--threads', '1', '--out', str(tmp_path/'inference.json')])
    txt = (tmp_path/'inference.json').read_text()
    [r] = [r for r in json.loads(txt[txt.index('{'):])['results'] if r['kind'] == 'model+map']
    g = r['gemm_side_by_side']
    assert (g['precision'], g['n']) == (ce['best_precision'], ce['gemm'][ce['best_precision']]['n'])
    assert 0 < g['gflops_median'] <= g['gflops_best'] and r['over_gemm_side_by_side'] > 0
    # every pair's ratio is at least the slowest model run's GFLOP/s over the fastest GEMM's
    assert r['over_gemm_side_by_side'] >= r['gflop_per_frame']*2/(r['ms_max']/1e3)/g['gflops_best'] - 1e-3


def test_report_ratios(tmp_path):
    "× ceiling = GFLOP/s ÷ the best native GEMM; the naive and video goals come from their rows."
    ce = dict(bench='ceiling', device='cpu', cpu='Test CPU', gpu=None, cores=2, torch_threads=2, torch='x', platform='p',
              cpu_capability='AVX512', native_precisions=['fp32', 'bf16'], best_precision='bf16', best_gflops=1000.0,
              gemm={'fp32': dict(n=2048, runs=5, gflops_best=200.0, gflops_median=190.0),
                    'bf16': dict(n=2048, runs=5, gflops_best=1000.0, gflops_median=900.0)},
              machine_class='test-avx512-bf16', protocol='test')
    row = lambda label, s, **k: dict(size=224, spectrogram='257x300', batch=32, label=label, method=label.split()[0], amp='bf16',
                                     step_s_median=s, step_s_min=s, step_s_max=s, samples_per_s=32/s, ratio_to_ezvsl=s/2.0,
                                     compile_s=None, runs=3, gflop_per_step=400.0, **k)
    tr = dict(bench='train_step', rows=[row('ezvsl', 2.0), row('ezvsl naive', 4.0), row('m2vsl', 2.2, naive_ezvsl_step_over_this=4.0/2.2)],
              machine=dict(platform='p', processor='Test CPU', cpus=2, torch='x', threads=2, cpu_capability='AVX512',
                           native_bf16=True, default_amp='bf16'), peak_rss_mb=1.0, wall_s=1.0, protocol='test')
    inf = dict(bench='inference', device='cpu', cpu='Test CPU', torch_threads=2, default_amp='auto', default_amp_resolved='bf16',
               model=dict(dim=512, num_classes=10, mmt_dim=128), results=[
                   dict(kind='model+map', size=224, audio_frontend='cpu', audio=[1, 65, 76], batch=32, amp='bf16',
                        gflop_per_frame=4.0, gflops=320.0, fps=80.0, ms_per_batch=400.0, ms_min=390.0, ms_max=410.0),
                   dict(kind='localize_batch e2e (320x240 frames)', size=224, audio_frontend='cpu', audio=[1, 65, 76], batch=32,
                        amp='bf16', fps=60.0, ms_per_batch=533.0, ms_min=530.0, ms_max=540.0)])
    vi = dict(clip=dict(seconds=30, width=640, height=360, fps=25, frames=750), size=224, audio=[1, 65, 76], batch=16, amp='bf16',
              gflop_per_frame=4.0, e2e_fps=50.0, e2e_fps_all=[50.0], model_fps=70.0, model_fps_before_after=[70.0, 70.0],
              e2e_over_model=50/70, protocol='test')
    for name, rec in dict(ceiling=ce, train=tr, inference=inf, video=vi).items():
        (tmp_path/f'{name}.json').write_text(json.dumps(rec))
    report.main(['--dir', str(tmp_path)])
    t = json.loads((tmp_path/'bench.json').read_text())['targets']
    assert t['inference_224px_batched_over_ceiling']['value'] == pytest.approx(80*4/1000)
    assert t['inference_224px_batched_over_ceiling']['met'] is False
    assert t['naive_ezvsl_step_over_m2vsl_step_224px']['value'] == pytest.approx(4.0/2.2)
    assert t['naive_ezvsl_step_over_m2vsl_step_224px']['target'] == '>= 1.8'
    assert t['localize_video_over_model_batched']['value'] == pytest.approx(50/70) and t['localize_video_over_model_batched']['met'] is False
    md = (tmp_path/'bench.md').read_text()
    assert '| bf16 (the ceiling) | 1000 (900) | 2048 |' in md
    assert '| 0.32 |' in md and '| 0.24 |' in md          # model+map 80×4/1000, end to end 60×4/1000
    assert '| 1.82 | 400.0 | 0.18 |' in md                # m2vsl: naive ÷ this, GFLOP/step, 400/2.2/1000
    # a row timed side by side with the GEMM: the goal takes that pairing, not the ceiling record taken minutes apart
    inf['results'][0].update(gemm_side_by_side=dict(precision='bf16', n=2048, gflops_median=500.0, gflops_best=520.0),
                             over_gemm_side_by_side=0.61)
    (tmp_path/'inference.json').write_text(json.dumps(inf))
    report.main(['--dir', str(tmp_path)])
    t = json.loads((tmp_path/'bench.json').read_text())['targets']['inference_224px_batched_over_ceiling']
    assert (t['value'], t['side_by_side'], t['met']) == (0.61, True, False)
    md = (tmp_path/'bench.md').read_text()
    assert '| 0.32 | 0.61 |' in md and '(timed side by side)' in md
