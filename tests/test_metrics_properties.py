"""Property tests for m2vsl.metrics: ranges, perfect predictions, invariances, degenerate inputs.

Inputs are drawn by hypothesis (derandomised, so CI is reproducible) as small random maps: ties, soft GTs, empty GTs,
negatives and odd batch splits included. Each test runs N_CASES cases.
"""
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.metrics import average_precision_score

from m2vsl.metrics import (SingleSourceEvaluator, MultiSourceEvaluator, SegmentationEvaluator, ap_from_hist, avgn_piap,
                           ciou, median_binarize, pixel_ap, score_bins, slavc_ap, slavc_precision_recall, avs_iou)

N_CASES = 150
cases = settings(max_examples=N_CASES, deadline=None, derandomize=True)
seeds = st.integers(0, 2**32 - 1)


def _maps(rng, shape, kind):
    "Random raw maps: continuous, heavily tied integers, or logit-like with a wide range."
    if kind == 0: return rng.random(shape)
    if kind == 1: return rng.integers(0, 4, shape).astype(np.float64)
    return rng.normal(0, 5, shape).astype(np.float32)


def _gt(rng, shape, soft=False, p_empty=0.15):
    "Random box-like GT per sample (soft: Flickr-like {0, .5, 1}); some samples empty."
    g = np.zeros(shape, np.float32)
    H, W = shape[-2:]
    for idx in np.ndindex(*shape[:-2]):
        if rng.random() < p_empty: continue
        y1, x1 = rng.integers(0, H), rng.integers(0, W)
        y2, x2 = rng.integers(y1 + 1, H + 1), rng.integers(x1 + 1, W + 1)
        g[idx][y1:y2, x1:x2] = 1.
        if soft:
            y1, x1 = rng.integers(0, H), rng.integers(0, W)
            g[idx][y1:, x1:] = np.maximum(g[idx][y1:, x1:], .5)
    return g


def _splits(rng, n):
    "Random cut points of range(n) into consecutive batches."
    cuts = sorted(set(rng.integers(1, n, rng.integers(0, 4)).tolist())) if n > 1 else []
    return list(zip([0] + cuts, cuts + [n]))


def _in01(v): return np.isnan(v) or (-1e-12 <= v <= 1 + 1e-12)


# ---------------------------------------------------------------- single source
@cases
@given(seeds, st.integers(1, 12), st.integers(2, 12), st.integers(2, 12), st.integers(0, 2), st.booleans(), st.booleans())
def test_single_ranges_and_rebatching(seed, B, H, W, kind, soft, with_neg):
    rng = np.random.default_rng(seed)
    maps, gt = _maps(rng, (B, H, W), kind), _gt(rng, (B, H, W), soft)
    nb = rng.integers(0, 3, B) if with_neg else None
    whole = SingleSourceEvaluator(iou_thresholds=(0.3, 0.5)).update(maps, gt, n_boxes=nb).compute()
    ev = SingleSourceEvaluator(iou_thresholds=(0.3, 0.5))
    for a, b in _splits(rng, B):
        ev.update(torch.from_numpy(maps[a:b]), gt[a:b], n_boxes=None if nb is None else nb[a:b])
    parts = ev.compute()
    assert parts.keys() == whole.keys()
    for k, v in whole.items():
        assert parts[k] == pytest.approx(v, abs=1e-12, nan_ok=True), k
        if k.startswith(('iou@', 'ap', 'precision_all', 'max_f1', 'mean_ciou', 'auc', 'pixel_ap')): assert _in01(v), (k, v)
    c = np.array([d['ciou'] for d in ev.per_sample()])
    assert np.all((c >= 0) & (c <= 1))
    assert whole['iou@0.3'] >= whole['iou@0.5'] or np.isnan(whole['iou@0.5'])


@cases
@given(seeds, st.integers(1, 8), st.integers(2, 16), st.integers(2, 16))
def test_single_perfect_prediction(seed, B, H, W):
    "S = G: pixel AP is 1; cIoU is 1 when G covers more than the median rule's half, its area share otherwise."
    rng = np.random.default_rng(seed)
    gt = _gt(rng, (B, H, W), p_empty=0)
    res = SingleSourceEvaluator().update(gt.astype(np.float64), gt)
    assert res.compute()['pixel_ap'] == 1.0
    N, k = H*W, int(H*W*0.5)
    area = gt.reshape(B, -1).sum(1)
    const = area == N
    want = np.where((N - area <= k) | const, 1.0, area/N)
    np.testing.assert_allclose([d['ciou'] for d in res.per_sample()], want, atol=1e-12)
    np.testing.assert_allclose([d['pixel_ap'] for d in res.per_sample()], 1.0)
    # any map ranking every GT pixel above every other pixel is perfect per image (the pooled AP also needs the
    # images' normalised scores to agree, which per-image noise does not guarantee)
    noisy = gt + 0.4*rng.random(gt.shape)
    ap = [d['pixel_ap'] for d in SingleSourceEvaluator().update(noisy, gt).per_sample()]
    np.testing.assert_array_equal(ap, 1.0)


@cases
@given(seeds, st.integers(1, 6), st.integers(2, 10), st.floats(-1e6, 1e6))
def test_constant_and_nan_maps(seed, B, H, value):
    "Constant maps predict every pixel (documented cIoU, AP = base rate); NaN maps raise or are counted skips."
    rng = np.random.default_rng(seed)
    gt = _gt(rng, (B, H, H), soft=True)
    ev = SingleSourceEvaluator().update(np.full((B, H, H), value), gt)
    g = gt.reshape(B, -1)
    want_ciou = np.where(g.sum(1) > 0, g.sum(1)/(g.sum(1) + (g == 0).sum(1)), 0.)
    np.testing.assert_allclose([d['ciou'] for d in ev.per_sample()], want_ciou, atol=1e-12)
    ap = np.array([d['pixel_ap'] for d in ev.per_sample()])
    base = g.sum(1)/g.shape[1]
    np.testing.assert_allclose(ap[base > 0], base[base > 0], atol=1e-12)
    assert np.isnan(ap[base == 0]).all()
    bad = rng.random((B, H, H)); bad[rng.integers(0, B)].flat[rng.integers(0, H*H)] = np.nan
    with pytest.raises(ValueError, match='NaN'): SingleSourceEvaluator().update(bad, gt)
    r = SingleSourceEvaluator(on_nonfinite='skip').update(bad, gt).compute()
    assert r['n_skipped'] == int(np.isnan(bad.reshape(B, -1)).any(1).sum()) and r['n_samples'] == B - r['n_skipped']


@cases
@given(seeds, st.integers(1, 60), st.booleans())
def test_slavc_matches_literal_loop(seed, n, tied):
    "The vectorised SLAVC precision/recall/AP equal a literal per-sample loop of the reference's rules."
    rng = np.random.default_rng(seed)
    nb, c = rng.integers(0, 3, n), rng.random(n)
    cf = rng.integers(0, 5, n).astype(float) if tied else rng.normal(size=n)

    def pr(thr, t):
        tp = fp = fn = 0
        for b, ci, co in zip(nb, c, cf):
            if b == 0: fp += co >= thr
            elif co >= thr:
                if ci >= t: tp += 1
                else: fp += 1
            else: fn += 1
        return (1. if tp + fp == 0 else tp/(tp + fp)), (1. if tp + fn == 0 else tp/(tp + fn))

    for t in (0.3, 0.5):
        thrs = np.sort(cf)[:-1][::-max(1, n//200)]
        P, R = zip(*[pr(x, t) for x in thrs]) if len(thrs) else ((), ())
        pm = [max(P[i:]) for i in range(len(P))]
        want = sum(pm[i]*(R[i+1] - R[i]) for i in range(len(pm) - 1))
        assert slavc_ap(nb, c, cf, t) == pytest.approx(want, abs=1e-12)
        assert 0 <= slavc_ap(nb, c, cf, t) <= 1
        p, r = slavc_precision_recall(nb, c, cf, -1000, t)
        assert (p[0], r[0]) == pytest.approx(pr(-1000, t))


@cases
@given(seeds, st.integers(2, 400), st.integers(2, 64))
def test_binned_ap_is_sklearn_on_quantised_scores(seed, n, n_bins):
    rng = np.random.default_rng(seed)
    s, y = rng.random(n), rng.random(n) < rng.random()
    if not y.any(): y[0] = True
    b = score_bins(s, n_bins)
    pos = np.bincount(b, weights=y, minlength=n_bins); neg = np.bincount(b, weights=~y, minlength=n_bins)
    assert ap_from_hist(pos, neg) == pytest.approx(average_precision_score(y, b), abs=1e-12)


@cases
@given(seeds, st.integers(1, 6), st.integers(2, 12))
def test_avgn_piap_is_sklearn_with_swapped_arguments(seed, n, H):
    rng = np.random.default_rng(seed)
    infer = median_binarize(rng.random((n, H, H)))
    gt = _gt(rng, (n, H, H), p_empty=0.2) > 0
    want = [average_precision_score(i.ravel(), g.ravel().astype(float)) for i, g in zip(infer, gt)]
    np.testing.assert_allclose(avgn_piap(infer, gt), want, atol=1e-12)


# ---------------------------------------------------------------- multi source
@cases
@given(seeds, st.integers(1, 6), st.integers(1, 3), st.integers(3, 10), st.integers(0, 2), st.booleans())
def test_multi_ranges_and_piap_permutation_invariance(seed, B, K, H, kind, use_all):
    rng = np.random.default_rng(seed)
    maps, gt = _maps(rng, (B, K, H, H), kind), _gt(rng, (B, K, H, H))
    C = 5
    cls = rng.integers(-1 if not use_all else 0, C, (B, K))
    allm = _maps(rng, (B, C, H, H), kind) if use_all else None
    ev = MultiSourceEvaluator(avgn_compat=True).update(maps, gt, cls, all_class_maps=allm)
    res = ev.compute()
    for k in ('cap', 'piap', 'ciou@0.1', 'ciou@0.3', 'mean_ciou', 'auc', 'piap_avgn'): assert _in01(res[k]), (k, res[k])
    # PIAP: permute each sample's predicted maps independently
    perm = np.stack([rng.permutation(K) for _ in range(B)])
    pm = np.take_along_axis(maps, perm[:, :, None, None], 1)
    res2 = MultiSourceEvaluator().update(pm, gt, cls).compute()
    assert res2['piap'] == pytest.approx(res['piap'], abs=1e-12, nan_ok=True)
    p1 = [d['piap'] for d in ev.per_sample()]
    p2 = [d['piap'] for d in MultiSourceEvaluator().update(pm, gt, cls).per_sample()]
    np.testing.assert_allclose(p1, p2, atol=1e-12)
    # re-batching changes nothing
    ev2 = MultiSourceEvaluator(avgn_compat=True)
    for a, b in _splits(rng, B): ev2.update(maps[a:b], gt[a:b], cls[a:b], all_class_maps=None if allm is None else allm[a:b])
    for k, v in res.items(): assert ev2.compute()[k] == pytest.approx(v, abs=1e-12, nan_ok=True), k


@cases
@given(seeds, st.integers(1, 8), st.integers(3, 12), st.integers(0, 2), st.integers(0, 40))
def test_cap_equals_single_source_pixel_ap_with_one_class(seed, B, H, kind, cls_id):
    rng = np.random.default_rng(seed)
    maps, gt = _maps(rng, (B, H, H), kind), _gt(rng, (B, H, H), p_empty=0.1)
    single = SingleSourceEvaluator().update(maps, gt).compute()['pixel_ap']
    cap = MultiSourceEvaluator().update(maps[:, None], gt[:, None], np.full((B, 1), cls_id)).compute()['cap']
    assert cap == pytest.approx(single, abs=1e-12, nan_ok=True)


@cases
@given(seeds, st.integers(1, 5), st.integers(1, 3), st.integers(4, 10))
def test_multi_perfect_and_nan(seed, B, K, H):
    "Disjoint per-source GTs predicted exactly: CAP = PIAP = 1; NaN maps raise."
    rng = np.random.default_rng(seed)
    gt = np.zeros((B, K, H, H), np.float32)
    for k in range(K): gt[:, k, :, k*H//K:(k+1)*H//K] = 1          # vertical strips
    maps = gt + 0.3*rng.random(gt.shape)
    cls = np.stack([rng.permutation(K) for _ in range(B)])
    res = MultiSourceEvaluator().update(maps, gt, cls).compute()
    assert res['cap'] == 1.0 and res['piap'] == 1.0
    maps[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match='NaN'): MultiSourceEvaluator().update(maps, gt, cls)


# ---------------------------------------------------------------- segmentation
@cases
@given(seeds, st.integers(1, 25), st.integers(2, 10), st.integers(1, 21), st.booleans())
def test_segmentation_ranges_and_rebatching(seed, N, H, fb, logits):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, (N, H, H)).astype(np.float32) if logits else rng.random((N, H, H))
    gt = _gt(rng, (N, H, H), p_empty=0.3)
    whole = SegmentationEvaluator(fscore_batch=fb).update(x, gt, logits=logits).compute()
    ev = SegmentationEvaluator(fscore_batch=fb)
    for a, b in _splits(rng, N): ev.update(x[a:b], gt[a:b], logits=logits)
    parts = ev.compute()
    for k in ('miou', 'fscore', 'fscore_frame', 'fscore_dataset'):
        assert _in01(whole[k]), k
        assert parts[k] == pytest.approx(whole[k], abs=1e-12, nan_ok=True), k  # update sizes never matter
    # batch-independent F and mIoU do not depend on the AVSBench batch size either
    other = SegmentationEvaluator(fscore_batch=fb + 3).update(x, gt, logits=logits).compute()
    for k in ('miou', 'fscore_frame', 'fscore_dataset'): assert other[k] == pytest.approx(whole[k], abs=1e-12, nan_ok=True)
    # AVSBench with 1-frame batches = per-frame max F, empty-GT frames scoring 0
    one = SegmentationEvaluator(fscore_batch=1).update(x, gt, logits=logits)
    per = [0. if d['empty_gt'] else d['fscore'] for d in one.per_sample()]
    assert one.compute()['fscore'] == pytest.approx(np.mean(per), abs=1e-12)


@cases
@given(seeds, st.integers(1, 10), st.integers(2, 10))
def test_segmentation_perfect_constant_nan(seed, N, H):
    rng = np.random.default_rng(seed)
    gt = _gt(rng, (N, H, H), p_empty=0.3)
    res = SegmentationEvaluator().update(gt.astype(np.float64), gt).compute()
    assert res['miou'] == pytest.approx(1.0, abs=1e-6)                 # 1e-7 epsilon in the denominator
    if (gt.reshape(N, -1).sum(1) > 0).any(): assert res['fscore_frame'] == pytest.approx(1.0) and res['fscore_dataset'] == pytest.approx(1.0)
    else: assert np.isnan(res['fscore_frame'])                         # documented: no scorable frame
    # constant 0.3 probability: nothing predicted at 0.5, so IoU is 0 except empty-GT frames (TN share 1)
    c = SegmentationEvaluator().update(np.full((N, H, H), 0.3), gt)
    np.testing.assert_allclose([d['iou'] for d in c.per_sample()], avs_iou(np.full((N, H, H), 0.3), gt))
    assert all(d['iou'] == pytest.approx(1.0 if d['empty_gt'] else 0.0, abs=1e-6) for d in c.per_sample())
    bad = rng.random((N, H, H)); bad[-1, 0, 0] = np.nan
    with pytest.raises(ValueError, match='NaN'): SegmentationEvaluator().update(bad, gt)
    assert SegmentationEvaluator(on_nonfinite='skip').update(bad, gt).compute()['n_skipped'] == 1
