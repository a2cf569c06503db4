"""`m2vsl.evaluate.evaluate` on test sets with clips that have no ground truth (issue 16): skipped, counted
(`n_no_gt`), named in a warning; a set where no clip has ground truth is a clear error."""
import logging

import pytest
import torch
from torch.utils.data import Dataset

from m2vsl.evaluate import evaluate, CentrePrior


class Toy(Dataset):
    "Clips with a square of ground truth; those in `no` have has_gt=False (e.g. every box dropped as corrupt)."
    def __init__(self, n=10, no=(), S=32, duet=False):
        self.n, self.no, self.S, self.duet, self.name = n, set(no), S, duet, 'toy-test'
        self.no_gt = [(f"c{i:02d}", 'every box dropped as corrupt') for i in sorted(self.no)]
    def __len__(self): return self.n
    def __getitem__(self, i):
        S, K = self.S, 2 if self.duet else 1
        gt = torch.zeros(K, S, S*K)
        if i not in self.no: gt[0, 4:12, 4:12] = 1; gt[-1, 16:24, 16:24] = 1
        return {'id': f"c{i:02d}", 'image': torch.rand(3, S, S*K), 'audio': torch.rand(1, 33, 16),
                'labels': torch.zeros(3), 'classes': torch.tensor([0, 1][:K]), 'gt': gt, 'has_gt': i not in self.no}


@pytest.mark.parametrize('task,count', [('single', 'n_samples'), ('seg', 'n_frames'), ('multi', 'n_samples')])
def test_clips_without_ground_truth_are_skipped_and_counted(task, count, caplog):
    ds = Toy(10, no=(1, 4, 5), duet=task == 'multi')
    with caplog.at_level(logging.WARNING, logger='m2vsl.evaluate'):
        r = evaluate(CentrePrior(), ds, task, batch_size=4, progress=False)
    assert (r['metrics'][count], r['metrics']['n_no_gt']) == (7, 3)
    assert sorted(r['per_sample']['id']) == [f"c{i:02d}" for i in range(10) if i not in (1, 4, 5)]
    msg = ' '.join(m.getMessage() for m in caplog.records if m.name == 'm2vsl.evaluate')
    assert 'skipped 3 of 10 samples without ground truth' in msg and 'c01 (every box dropped as corrupt)' in msg, msg
    # the scores are those of the clips with ground truth alone
    ref = evaluate(CentrePrior(), torch.utils.data.Subset(ds, [i for i in range(10) if i not in (1, 4, 5)]), task,
                   batch_size=4, progress=False)
    assert {k: v for k, v in r['metrics'].items() if k != 'n_no_gt'} == pytest.approx(
        {k: v for k, v in ref['metrics'].items() if k != 'n_no_gt'}, nan_ok=True)
    assert ref['metrics']['n_no_gt'] == 0


def test_a_whole_batch_without_ground_truth_is_skipped():
    r = evaluate(CentrePrior(), Toy(8, no=(0, 1, 2, 3)), 'single', batch_size=4, progress=False)
    assert (r['metrics']['n_samples'], r['metrics']['n_no_gt']) == (4, 4)


def test_no_clip_with_ground_truth_is_an_error():
    with pytest.raises(ValueError, match=r"toy-test: none of its 6 samples has ground truth \(has_gt=False, e\.g\. c00"):
        evaluate(CentrePrior(), Toy(6, no=range(6)), 'single', batch_size=4, progress=False)
