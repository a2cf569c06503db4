"""Tiny-overfit test (issue 2): on a handful of generated clips M2VSL's loss falls well below its start and its maps
peak on the sounding object, in well under a minute on a 2-core CPU.

The localization half is NOT robust (issue 2 is open). Measured with 1 thread; "seed s" = torch seed s, batch order
seed s and clips seed 3 + s (s = 0 is this test); peak-on-object share of the 48 clips (area share 0.10):
* this recipe (64 px, 3-s audio, dim 64, MMT depth 1, 80 Adam steps of 16, lr 1e-3): fused map 0.35 / 0.06 / 0.04
  for seeds 0/1/2, MMC map alone (av_map) 0.21 / 0.00 / 0.00; loss 30 → 4.6 / 3.0 / 6.6; 46–50 s each. Only seed 0
  clears the bar below (2 × area); the old note measured 0.25 for it with 2 threads.
* tried, all with 1-s audio (the fused map per seed 0/1/2 unless noted): 160 steps of 8: 0.02 / 0.27 / 0.00;
  no silent distractors: 0.15 / 0.06 / 0.04; 96 px × 60 steps: 0.00 / 0.06 / 0.06; lr 3e-4: loss → 1.1 / 0.3 / 0.2
  (memorised) but 0.04 / 0.08 / 0.02; one clip per class per batch (no same-class negatives), 160 steps, seeds 0/1:
  loss → 1.5 / 0.6, maps 0.00 / 0.00; 512 clips seen ~6× (200 steps of 16, 92 s), held-out clips, seed 0: fused 0.52,
  stage-1 MMC map 0.77; 256 clips, 200 steps of 8 (65 s), held-out, seeds 0/1: 0.06 / 0.56; batches of 32: the MMC
  loss stays at chance for 150 steps.
  Not M2VSL but for the record: stage 1 only (mmc_stages = token_stages = (1,)), 120 steps: 0.58 / 0.08 / 0.46.
* 2026-11-30, after the single-source map became the MMC map alone (`map_mmt_weight` 0, the report's output), this
  recipe on a 2-core AMD EPYC (fp32, 2 threads), seeds 0/1/2: default (MMC) map 0.23 / 0.00 / 0.10, the old 50/50
  fusion 0.29 / 0.00 / 0.04, stage 1 alone 0.40 / 0.04 / 0.27; loss 30 → 3.9 / 4.5 / 4.7; 55–58 s each. Coloured
  squares on noise instead (tests/test_baselines.py's `synth`, 48 fixed clips, 120 steps of 16): MMC map on the
  training clips 0.23 / 0.19 / 0.27 (area share 0.10), on unseen ones 0.25 / 0.41 / 0.41; 57–61 s each.
* 2026-11-30, later session, same AMD EPYC, 1 thread per run (so seeds 0/1 read 0.35 / 0.21 for the MMC map here), a
  script that repeats this recipe with variations. With this recipe as it is, the maps of stages 3 and 4 peak on the
  object for 0.00–0.06 of the clips and stage 1's for 0.33–0.44 (seeds 0/1). Tried (the MMC map):
  - a random shift (replicate padding) and a horizontal flip at every step, as the pipeline's train transform does.
    With 6 px of padding, seeds 0/1/2 gave 0.29 / 0.44 / 0.00. With 12 px, seeds 0–3 gave 0.58 / 0.58 / 0.00 / 0.02.
  - the same with tau 0.1: 0.29 / 0.56 / 0.56 / 0.15 / 0.29 / 0.60 for seeds 0–5. The loss then ends at only
    0.42–0.70 × its start, so seed 3 would fail the loss bar.
  - tau 0.2 (seeds 3/0/2/4): 0.40 / 0.21 / 0.79 / 0.15.
  - lr 2e-3 with tau 0.1 (seeds 0/3/2/4): 0.17 / 0.65 / 0.50 / 0.00.
  - cls_weight 0.1 (seeds 2/3): 0.06 / 0.00.
  - batches of 8 × 160 steps (6 px of padding, seeds 0–3): 0.06 / 0.15 / 0.00 / 0.00.
  - upsampling with align_corners=False (`map_align_corners`): 0.33 / 0.25 for seeds 0/1, against 0.35 / 0.21.
  The failures are not near misses: at 0.00 the map of a failed seed peaks off the sounding object in every clip.
Why: from scratch at 64 px the receptive fields of ResNet18's stages 2–4 (99, 211, 435 px) cover the whole frame, so
the MIL max can match the audio at any location of those stages and settles on border cells (with one clip per class
per batch the stage-2 map peaked on its top row for 11 of 12 inspected clips), and every 5×5 MMT token (pooled from
all four stages) carries the class, so the class map does not localize either (0.00–0.29). Only stage 1 (43 px) is
local; the fused map averages all of them. Larger frames or ImageNet weights (the paper's setting) do not fit the
time budget / are not available here."""
import time
import pytest
import torch
import torch.nn.functional as F

from m2vsl.audio import AudioConfig, AudioFrontEnd
from m2vsl.methods import build
from m2vsl.model import av_map
from m2vsl.synth import make_classes, make_clip

PX, N_CLASSES, PER_CLASS = 64, 8, 6
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]

def clips(seed=3):
    "48 generated clips (8 classes × 6), half of them with silent distractors of other classes."
    classes = make_classes(10)
    fe = AudioFrontEnd(AudioConfig(sample_rate=8000, n_fft=128, win_length=128, hop_length=240))
    imgs, specs, labels, masks = [], [], [], []
    for i in range(N_CLASSES*PER_CLASS):
        c = make_clip(seed, 'overfit', i, (i % N_CLASSES,), classes, size=PX, seconds=3.0, sr=8000, distractor_p=.5)
        imgs.append((torch.from_numpy(c['frames'][0]).permute(2, 0, 1).float()/255 - MEAN)/STD)
        specs.append(fe(fe.waveform(torch.from_numpy(c['audio'])[None].float(), 8000)))
        labels.append(F.one_hot(torch.tensor(i % N_CLASSES), 10).float())
        masks.append(torch.from_numpy(c['masks'][0, 0]))
    return {'image': torch.stack(imgs), 'audio': torch.stack(specs), 'labels': torch.stack(labels)}, torch.stack(masks)

@pytest.fixture(scope='module')
def overfit_run():
    "Train once (80 Adam steps on the 48 clips); both tests below read the result."
    torch.manual_seed(0)
    t0 = time.time()
    data, masks = clips()
    model, method, cfg = build('m2vsl', num_classes=10, dim=64, mmt_heads=4, mmt_depth=1)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for step in range(80):
        idx = torch.randperm(len(masks), generator=g)[:16]
        batch = {k: v[idx] for k, v in data.items()}
        loss, _ = method.loss(model(batch), batch, cfg)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        out = model(data)
        maps = method.single_map(out, (PX, PX), cfg, classes=data['labels'].argmax(-1))
        mmc = av_map(out, (PX, PX))        # the MMC map alone (printed, not asserted: see the docstring)
    def on_object(m):
        peak = m.flatten(1).argmax(-1)
        return masks.flatten(1)[torch.arange(len(peak)), peak].float().mean().item()
    r = dict(start=sum(losses[:5])/5, end=sum(losses[-5:])/5, hit=on_object(maps), mmc_hit=on_object(mmc),
             area=masks.float().mean().item(), seconds=time.time() - t0)   # area: where a random peak would land
    print(f"loss {r['start']:.2f} -> {r['end']:.2f}; peak on the sounding object: the model's map {r['hit']:.2f}, MMC map "
          f"{r['mmc_hit']:.2f} (its area share {r['area']:.2f}); {r['seconds']:.0f} s")
    return r

@pytest.mark.slow
def test_m2vsl_tiny_overfit_loss_falls(overfit_run):
    assert overfit_run['end'] < 0.5*overfit_run['start']

# Whether it localizes is not asserted here: a from-scratch 64-px overfit of 80 steps is not a reliable localization
# test (with the MMC map 0.23 / 0.00 / 0.10 of the peaks on the object for seeds 0/1/2 with 2 threads on an AMD EPYC;
# see the docstring). The fixture prints the hit rate; the claim "M2VSL localizes" is checked where it is reliable:
# the pipeline's learning check (reports/tables/learning.md: trained vs untrained self vs centre prior, issue 18).
