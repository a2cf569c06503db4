"""m2vsl.metrics against the reference implementations' own outputs (shared/fixtures/metrics/metrics_fixture_7).

The fixture's README says which reference code computed each value. Every value there is matched to 1e-6.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from m2vsl.metrics import (SingleSourceEvaluator, SegmentationEvaluator, ciou, median_binarize, gt_from_boxes,
                           flickr_gt, slavc_ap, slavc_precision_recall, success_auc)

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO_ROOT.parent/'shared'/'fixtures'/'metrics'
TOL = 1e-6

pytestmark = pytest.mark.skipif(not FIXTURE_DIR.is_dir(),
                                reason=f"metric fixtures not found at {FIXTURE_DIR} (the shared folder beside the repo)")


@pytest.fixture(scope='module')
def fx():
    exp = json.loads((FIXTURE_DIR/'metrics_fixture_7.json').read_text())
    arr = dict(np.load(FIXTURE_DIR/'metrics_fixture_7.npz'))
    return exp, arr


def _check_single(exp, maps, gts):
    "Per-sample cIoU, IoU@0.5 (EZ-VSL's 'cIoU'/'AP50'), mean cIoU and AUC, through the function and the evaluator."
    c = ciou(median_binarize(maps), gts)
    np.testing.assert_allclose(c, exp['ciou'], rtol=0, atol=TOL)
    # streaming, in uneven batches, numpy and torch mixed
    ev = SingleSourceEvaluator(iou_thresholds=(0.5,))
    ev.update(maps[:5], gts[:5]).update(torch.from_numpy(maps[5:17]), torch.from_numpy(gts[5:17])).update(maps[17:], gts[17:])
    res = ev.compute()
    np.testing.assert_allclose([d['ciou'] for d in ev.per_sample()], exp['ciou'], rtol=0, atol=TOL)
    assert res['iou@0.5'] == pytest.approx(exp['ap50'], abs=TOL)
    assert res['mean_ciou'] == pytest.approx(exp['mean_ciou'], abs=TOL)
    assert res['auc'] == pytest.approx(exp['auc'], abs=TOL)
    assert success_auc(c) == pytest.approx(exp['auc'], abs=TOL)
    assert res['n_samples'] == len(exp['ciou'])


def test_vggss(fx):
    exp, arr = fx
    maps = arr['vggss_maps_u8']/255.0
    gts = np.stack([gt_from_boxes(b) for b in exp['vggss_boxes']])
    # the fixture contains corrupt boxes like the real vggss.json, handled the EZ-VSL way by default
    assert any(not (0 <= v <= 1) for boxes in exp['vggss_boxes'] for b in boxes for v in b)
    _check_single(exp['vggss'], maps, gts)


def test_flickr(fx):
    exp, arr = fx
    maps = arr['flickr_maps_u8']/255.0
    gts = np.stack([flickr_gt(b) for b in exp['flickr_boxes_256']])
    assert set(np.unique(gts)) <= {0.0, 0.5, 1.0} and (gts == 0.5).any()
    _check_single(exp['flickr'], maps, gts)


def test_slavc(fx):
    exp, _ = fx
    s, want = exp['slavc_inputs'], exp['slavc']
    nb, c, cf = (np.asarray(s[k]) for k in ('n_boxes', 'ciou', 'conf'))
    for t in (0.3, 0.5):
        assert slavc_precision_recall(nb, c, cf, -1000, t)[0][0] == pytest.approx(want[f'precision_all@{t}'], abs=TOL)
        assert slavc_ap(nb, c, cf, t) == pytest.approx(want[f'ap@{t}'], abs=TOL)
    assert success_auc(c[nb > 0]) == pytest.approx(want['auc_visible'], abs=TOL)


def test_slavc_through_evaluator(fx):
    "The evaluator's SLAVC keys agree with the fixture when fed the fixture's cIoU through constructed maps."
    exp, _ = fx
    s, want = exp['slavc_inputs'], exp['slavc']
    nb, c, cf = (np.asarray(s[k]) for k in ('n_boxes', 'ciou', 'conf'))
    ev = SingleSourceEvaluator(iou_thresholds=(0.3, 0.5))
    ev._rows = [dict(id=None, ciou=float(a), conf=float(b), n_boxes=int(n), gt_area=1., pixel_ap=float('nan'))
                for a, b, n in zip(c, cf, nb)]   # the per-sample scalars the evaluator streams
    res = ev.compute()
    for t in (0.3, 0.5):
        assert res[f'precision_all@{t}'] == pytest.approx(want[f'precision_all@{t}'], abs=TOL)
        assert res[f'ap@{t}'] == pytest.approx(want[f'ap@{t}'], abs=TOL)
    assert res['ap'] == pytest.approx(want['ap@0.5'], abs=TOL)
    assert res['auc'] == pytest.approx(want['auc_visible'], abs=TOL)


@pytest.mark.parametrize('batch', [1, 4, 5, 20])
def test_avsbench(fx, batch):
    exp, arr = fx
    want = exp['avs'][f'batch{batch}']
    logits, gt = arr['avs_logits'], arr['avs_gt']
    ev = SegmentationEvaluator(fscore_batch=batch)
    # update sizes deliberately unrelated to the F-score batch size
    for i in range(0, len(logits), 3): ev.update(logits[i:i+3], gt[i:i+3], logits=True)
    res = ev.compute()
    assert res['fscore_batch'] == batch
    assert res['miou'] == pytest.approx(want['miou'], abs=TOL)
    assert res['fscore'] == pytest.approx(want['fscore'], abs=TOL)


def test_avsbench_batch_dependence_is_real(fx):
    "The fixture's point: the AVSBench F-score moves with the batch size, the batch-independent one does not."
    exp, arr = fx
    runs = {b: SegmentationEvaluator(fscore_batch=b).update(arr['avs_logits'], arr['avs_gt'], logits=True).compute()
            for b in (1, 4, 20)}
    assert abs(runs[1]['fscore'] - runs[4]['fscore']) > 0.01
    assert runs[1]['fscore_frame'] == runs[4]['fscore_frame'] == runs[20]['fscore_frame']
