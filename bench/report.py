"""Collect the benchmark records in bench/out/ into one JSON (bench/out/bench.json) and a markdown report
(bench/out/bench.md, shown in README.md). Reads: ceiling.json, train.json, loader.json, inference.json, video.json,
metrics.json; any missing record is reported as missing, nothing is filled in. The machine's ceiling (its native
precisions and its matrix-multiply GFLOP/s at each, `bench_ceiling.py`) is the yardstick of every row that has a
FLOP count: GFLOP/s ÷ the GEMM GFLOP/s at the best native precision ("× ceiling"). The performance goals (M2VSL's training step against EZ-VSL's,
the loader's speed against what training consumes, inference frames/s) are computed from the measured figures and
reported, not asserted: benchmarks measure. The markdown is written for a user; bench.json keeps the goals' short keys.

Records of other machines live in subfolders (`make bench BENCH_OUT=bench/out/<machine>`); each gets its own section
after the main one, with its own goals, since figures from different machines are not comparable.

    python bench/report.py            # after `make bench`
"""
import json, sys
from pathlib import Path

OUT = Path(__file__).resolve().parent/'out'


def load(name, d=OUT):
    p = d/f'{name}.json'
    if not p.exists(): return None
    txt = p.read_text()
    return json.loads(txt[txt.index('{'):])   # the loader/inference scripts print progress lines first


def f(x, nd=2): return '–' if x is None else f'{x:.{nd}f}'


def over_ceiling(gflops, ceil)->float|None:
    "A measured GFLOP/s as a share of the machine's ceiling (the GEMM GFLOP/s at its best native precision)."
    return gflops/ceil['best_gflops'] if gflops and ceil else None


def train_table(tr, ceil=None):
    lines = ['| size | method / variant | step (s), median [min, max] | samples/s | × EZ-VSL step | × default speed '
             '| naive EZ-VSL step ÷ this | GFLOP/step | × ceiling |', '|---|---|---|---|---|---|---|---|---|']
    for r in tr['rows']:
        gf = r.get('gflop_per_step')
        lines.append(f"| {r['size']} px, {r['spectrogram']} | {r['label']} | {f(r['step_s_median'], 3)} "
                     f"[{f(r['step_s_min'], 3)}, {f(r['step_s_max'], 3)}] | {f(r['samples_per_s'], 1)} | "
                     f"{f(r.get('ratio_to_ezvsl'))} | {f(r.get('speed_vs_default'))}"
                     + (f" (compile {r['compile_s']:.0f} s)" if r.get('compile_s') else '')
                     + f" | {f(r.get('naive_ezvsl_step_over_this'))} | {f(gf, 1)} "
                     f"| {f(over_ceiling(gf/r['step_s_median'] if gf else None, ceil))} |")
    return lines


def ceiling_of(ce, tr, inf)->dict|None:
    "The machine's ceiling: its ceiling record, else (older records) the fp32 GEMM of the inference record on a machine whose only native precision is fp32."
    if ce: return dict(best_gflops=ce['best_gflops'], best_precision=ce['best_precision'], source='ceiling.json')
    if inf and inf.get('fp32_gemm') and tr and tr['machine'].get('native_bf16') is False:
        return dict(best_gflops=inf['fp32_gemm']['gflops_best'], best_precision='fp32',
                    source=f"the inference record's fp32 {inf['fp32_gemm']['n']}² GEMM (fp32 is this machine's only native precision)")
    return None


def loader_rows(lo, tr, targets, key):
    "The clips/s table of a loader record, and its ratios to M2VSL's training samples/s (added to `targets`)."
    rows = ['| workers | clips/s, median [min, max] |', '|---|---|']
    for w, v in lo['clips_per_s'].items():
        mm = lo.get('clips_per_s_range', {}).get(w)
        rows.append(f"| {w} | {v:.1f}" + (f" [{mm[0]:.1f}, {mm[1]:.1f}]" if mm else '') + ' |')
    consume = next((r['samples_per_s'] for r in tr['rows'] if r['label'] == 'm2vsl' and r['size'] == lo['image_size']),
                   None) if tr else None
    for w in ('1', '2'):
        if consume and w in lo['clips_per_s']:
            ratio = lo['clips_per_s'][w]/consume
            targets[f'{key}_{w}_workers_over_m2vsl_train_{lo["image_size"]}px'] = dict(value=ratio, target='>= 3', met=ratio >= 3)
    return rows + ['']


def model_gflop(inf, r)->float|None:
    "GFLOP per frame of the model+map row of `inf` with the same size, spectrogram, batch and precision as row `r`."
    return next((m['gflop_per_frame'] for m in inf['results'] if m['kind'] == 'model+map' and m.get('gflop_per_frame')
                 and (m['size'], m['audio'], m['batch'], m['amp']) == (r['size'], r['audio'], r['batch'], r['amp'])), None)


def ceiling_lines(ce, ceil, h)->list:
    "The machine's ceiling: native precisions and GEMM GFLOP/s at each."
    if ce:
        lines = [f'{h} Machine ceiling', '', f"{ce['cpu']}" + (f", {ce['gpu']}" if ce.get('gpu') else '')
                 + f" ({ce['device']}, {ce['cores']} cores, torch {ce['torch_threads']} threads, CPU kernels {ce['cpu_capability']}); "
                 f"native precisions {', '.join(ce['native_precisions'])}; class `{ce['machine_class']}`. {ce['protocol']}.", '',
                 '| precision | GEMM GFLOP/s, best (median) | n |', '|---|---|---|']
        for pr, g in ce['gemm'].items():
            lines.append(f"| {pr}{' (the ceiling)' if pr == ce['best_precision'] else ''} | {g['gflops_best']:.0f} ({g['gflops_median']:.0f}) | {g['n']} |")
        return lines + ['', "× ceiling: a row's GFLOP/s (FLOPs counted by torch's FlopCounterMode, a multiply-add is 2) ÷ the "
                        f"{ce['best_precision']} GEMM's {ce['best_gflops']:.0f} GFLOP/s.", '']
    if ceil: return [f"Machine ceiling: {ceil['best_gflops']:.0f} GFLOP/s from {ceil['source']} (no ceiling record: "
                     "`python bench/bench_ceiling.py`).", '']
    return ['Machine ceiling: no record (`python bench/bench_ceiling.py`), so no row is set against it.', '']


def goal_label(key:str, v:dict)->tuple:
    "What a goal of `targets` measures and against what, for a reader of the report: (measured, goal)."
    import re
    if m := re.fullmatch(r'm2vsl_step_over_ezvsl_(\d+)px', key):
        return (f"M2VSL training step ÷ EZ-VSL training step, {m[1]} px",
                f"{v['target']} (at equal batch and image size)")
    if m := re.fullmatch(r'(embedded_)?loader_(\d+)_workers_over_m2vsl_train_(\d+)px', key):
        data = 'the embedded benchmark' if m[1] else 'prepared VGGSound clips'
        return (f"data loader on {data}, {m[2]} worker{'s' if m[2] != '1' else ''}: clips/s ÷ M2VSL training samples/s at {m[3]} px",
                f"{v['target']} (the loader delivers at least 3× what training consumes)")
    if m := re.fullmatch(r'naive_ezvsl_step_over_m2vsl_step_(\d+)px', key):
        return (f"EZ-VSL as its authors train it (fp32, torchvision) ÷ M2VSL training step, {m[1]} px",
                f"{v['target']} ({'this CPU has native bf16' if v.get('native_bf16') else 'no native bf16 on this CPU'})")
    if key == 'inference_224px_batched_over_ceiling':
        return (f"M2VSL inference, 224 px, batched ({v.get('fps', 0):.1f} frames/s, amp {v.get('amp', '?')}): GFLOP/s ÷ the machine's "
                f"{v.get('ceiling_precision')} GEMM GFLOP/s" + (' (timed side by side)' if v.get('side_by_side') else ' (the ceiling record)'),
                f"{v['target']} (of the machine's ceiling)")
    if key == 'localize_video_over_model_batched':
        return (f"`m2vsl localize --video` on a {v.get('clip')} clip: end-to-end frames/s ÷ the model's batched frames/s",
                f"{v['target']}")
    return key, v['target']


def render(folder:Path, h:str='###')->tuple:
    "The markdown lines, targets and record set of one folder of records (`h`: the level of its section headings)."
    tr, lo, inf, me = (load(n, folder) for n in ('train', 'loader', 'inference', 'metrics'))
    ce, vi = load('ceiling', folder), load('video', folder)
    ceil = ceiling_of(ce, tr, inf)
    md, targets = [], {}
    machine = None
    if tr:
        m = tr['machine']
        machine = f"{m['processor']}, {m['cpus']} CPUs, torch {m['torch']} ({m['threads']} threads), {m['platform']}"
        if 'cpu_capability' in m:
            machine += (f"; CPU kernels {m['cpu_capability']}, native bf16 {'yes' if m['native_bf16'] else 'no'}, "
                        f"so `amp: auto` trains in {'fp32' if m['default_amp'] == 'none' else m['default_amp']}")
        else:   # records from before those fields: what their own fp32 rows say
            fps = [r["speed_vs_default"] for r in tr["rows"] if r["label"].endswith(" fp32") and r.get("speed_vs_default")]
            if fps: machine += (f"; bf16 autocast trained {1/max(fps):.1f}–{1/min(fps):.1f}× faster than fp32 in the rows below, "
                               f"so this CPU computes bf16 natively (its model name was not recorded)")
        md += [f'Machine: {machine}.', '']
        md += ceiling_lines(ce, ceil, h)
        md += [f'{h} Training step' + ' (batch %d, %s)' % (tr['rows'][0]['batch'], tr['protocol']), '']
        md += train_table(tr, ceil)
        md += ['', f"Peak RSS of the training benchmark: {tr['peak_rss_mb']:.0f} MB.", '']
        for size in sorted({r['size'] for r in tr['rows']}):
            rows = {r['label']: r for r in tr['rows'] if r['size'] == size}
            if 'm2vsl' in rows and 'ezvsl' in rows:
                targets[f'm2vsl_step_over_ezvsl_{size}px'] = dict(value=rows['m2vsl']['ratio_to_ezvsl'], target='<= 1.15',
                                                                   met=rows['m2vsl']['ratio_to_ezvsl'] <= 1.15)
        for size in sorted({r['size'] for r in tr['rows']}):
            rows = {r['label']: r for r in tr['rows'] if r['size'] == size}
            if size == 224 and rows.get('m2vsl', {}).get('naive_ezvsl_step_over_this'):
                nb = tr['machine'].get('native_bf16')
                v, bar = rows['m2vsl']['naive_ezvsl_step_over_this'], 1.8 if nb else 1.0
                targets['naive_ezvsl_step_over_m2vsl_step_224px'] = dict(value=v, target=f'>= {bar}', met=v >= bar, native_bf16=nb)
    else: md += ['Training benchmark: no record (run `python bench/bench_train.py --out bench/out/train.json`).', '']
    if lo:
        md += [f'{h} Data loader', '', f"{lo['clips']} clips written like prepared VGGSound (640×360 JPEG, 10 s 22,050 Hz "
               f"wav) → {lo['image_size']} px, {lo['audio_shape']} spectrogram, batch {lo['batch']}; "
               f"median of {lo.get('runs', 1)} passes after a warm-up.", '']
        md += loader_rows(lo, tr, targets, 'loader')
        md += [f"Peak RSS: {lo['peak_rss_mb']:.0f} MB." if 'peak_rss_mb' in lo else '', '']
    else: md += ['Data loader: no record.', '']
    le = load('loader_embedded', folder)
    if le:
        md += [f"The same loader on the embedded benchmark the default pipeline trains on ({le['clips']} clips of "
               f"`{le.get('root', 'data/embedded/vggsound')}`, its {le['split']} transform):", '']
        md += loader_rows(le, tr, targets, 'embedded_loader')
    if inf:
        md += [f'{h} Inference (M2VSL, model + fused map)', '',
               f"dim {inf['model']['dim']}, {inf['model']['num_classes']} classes"
               + (f", mmt_dim {inf['model'].get('mmt_dim')}" if inf['model'].get('mmt_dim') else '')
               + f"; {inf['device']}, {inf['torch_threads']} threads.", '',
               '| kind | size | spectrogram | batch | amp | frames/s | ms per batch, median [min, max] | GFLOP/frame | GFLOP/s | × ceiling | × GEMM side by side |',
               '|---|---|---|---|---|---|---|---|---|---|---|']
        for r in inf['results']:
            gf = r.get('gflop_per_frame') or model_gflop(inf, r)   # end-to-end rows: the model's GFLOP of the same setting
            md.append(f"| {r['kind']} | {r['size']} | {'×'.join(map(str, r['audio'][1:]))} | {r['batch']} | {r['amp']} | {r['fps']:.1f} | {r['ms_per_batch']:.1f} "
                      f"[{r['ms_min']:.1f}, {r.get('ms_max', float('nan')):.1f}] | {f(r.get('gflop_per_frame'))} | {f(r.get('gflops'), 0)} "
                      f"| {f(over_ceiling(gf*r['fps'] if gf else None, ceil))} | {f(r.get('over_gemm_side_by_side'))} |")
        gemm = inf.get('fp32_gemm')
        if gemm:
            md += ['', f"GFLOP counted by torch's FlopCounterMode (a multiply-add is 2). For scale, this machine's fp32 "
                   f"{gemm['n']}×{gemm['n']} matrix multiply ran at {gemm['gflops_median']:.0f} GFLOP/s (best {gemm['gflops_best']:.0f}): "
                   "at that rate a frame's GFLOP take at least GFLOP / rate seconds, a practical ceiling on fp32 frames/s."]
        sbs = next((r['gemm_side_by_side'] for r in inf['results'] if r.get('gemm_side_by_side')), None)
        if sbs:
            md += ['', f"× GEMM side by side: a {sbs['n']}×{sbs['n']} {sbs['precision']} matrix multiply was timed between every two "
                   "timed batches of the row; the figure is the median over those pairs of the row's GFLOP/s ÷ the GEMM's. On a "
                   "machine shared with others, whose speed drifts within minutes, this compares like with like; × ceiling divides "
                   "the row's median by the ceiling record's best run, taken minutes apart."]
        md += ['', f"Peak RSS: {inf['peak_rss_mb']:.0f} MB." if 'peak_rss_mb' in inf else '', '']
        best = [r for r in inf['results'] if r['kind'] == 'model+map' and r['size'] == 224 and r['batch'] > 1]
        if best:
            amp = inf.get('default_amp', 'none')
            if amp == 'auto': amp = inf.get('default_amp_resolved', 'bf16')   # what 'auto' ran as on that machine
            d = [r for r in best if r['amp'] == amp and r.get('audio_frontend', 'cpu') == 'cpu'] or best
            top = max(d, key=lambda r: r['fps'])
            gf = top.get('gflop_per_frame') or model_gflop(inf, top)
            if top.get('over_gemm_side_by_side') is not None:   # measured side by side (bench_inference.py)
                v = top['over_gemm_side_by_side']
                targets['inference_224px_batched_over_ceiling'] = dict(value=v, target='>= 0.85', met=v >= 0.85, amp=top['amp'],
                                                                       fps=top['fps'], ceiling_precision=top['gemm_side_by_side']['precision'],
                                                                       side_by_side=True)
            elif ceil and gf:
                v = over_ceiling(gf*top['fps'], ceil)
                targets['inference_224px_batched_over_ceiling'] = dict(value=v, target='>= 0.85', met=v >= 0.85, amp=top['amp'],
                                                                       fps=top['fps'], ceiling_precision=ceil['best_precision'])
    else: md += ['Inference: no record.', '']
    if vi:
        clip = f"{vi['clip']['seconds']:.0f} s {vi['clip']['width']}×{vi['clip']['height']}"
        md += [f'{h} Video (`m2vsl localize --video`)', '',
               f"A generated {clip} clip at {vi['clip']['fps']} frames/s ({vi['clip']['frames']} frames) through "
               f"`m2vsl.cli.localize_video` (decode, model at {vi['size']} px with the {'×'.join(map(str, vi['audio'][1:]))} spectrogram, "
               f"overlays, H.264 encode, audio, JSON), batch {vi['batch']}, amp {vi['amp']}; the model alone on in-memory "
               f"tensors at the same settings; {vi['protocol']}.", '',
               '| end-to-end frames/s [runs] | model-only frames/s [before, after] | end-to-end ÷ model-only | × ceiling (end to end) |',
               '|---|---|---|---|',
               f"| {vi['e2e_fps']:.1f} [{', '.join(f'{x:.1f}' for x in vi['e2e_fps_all'])}] | {vi['model_fps']:.1f} "
               f"[{', '.join(f'{x:.1f}' for x in vi['model_fps_before_after'])}] | {vi['e2e_over_model']:.2f} "
               f"| {f(over_ceiling(vi['gflop_per_frame']*vi['e2e_fps'], ceil))} |", '']
        targets['localize_video_over_model_batched'] = dict(value=vi['e2e_over_model'], target='>= 0.8',
                                                            met=vi['e2e_over_model'] >= 0.8, clip=clip)
    if me:
        md += [f'{h} Metrics', '', f"All single-source metrics on {me['n_maps']} maps of {me['map_size'][0]}×{me['map_size'][1]} px: "
               f"{me['seconds_median']:.1f} s median of {me['runs']} ({me['maps_per_second']:.0f} maps/s)"
               + (f", min {min(me['seconds_all']):.1f}, max {max(me['seconds_all']):.1f}" if me.get('seconds_all') else '') + '.', '']
    else: md += ['Metrics: no record.', '']
    fp = load('fastpaths', folder)
    if fp:
        keys = [k for k in fp['rows'][0] if isinstance(fp['rows'][0][k], dict)]
        cols = [(s, k) for s in keys for k in fp['rows'][0][s]]
        md += [f'{h} Do the fast defaults change the results?', '',
               f"M2VSL trained with the `{fp.get('profile')}` profile, then once per fast path switched off (same data and "
               "seed); the default is also trained with other seeds, whose spread (max − min) is the run-to-run variation. "
               "Metrics in % on the single-source test set and AVSBench-S4 (`bench/bench_fastpaths.py`).", '',
               '| variant | seed | train s | ' + ' | '.join(f'{s} {k}' for s, k in cols) + ' |',
               '|---|---|---|' + '---|'*len(cols)]
        for r in fp['rows']:
            md.append(f"| {r['variant']} | {r['seed']} | {r['train_s']:.0f} | " + ' | '.join(f"{100*r[s][k]:.1f}" for s, k in cols) + ' |')
        if fp.get('seed_spread'):
            md.append('| *seed spread of the default* | | | ' + ' | '.join(f"{100*fp['seed_spread'][f'{s}/{k}']:.1f}" for s, k in cols) + ' |')
        md.append('')
    if targets:
        md += [f'{h} Performance goals (computed from the measurements above)', '',
               'Each row is a ratio from the tables above, set against the goal the package aims at; ratios mean the same '
               'on any machine. The goals are reported, not enforced.', '', '| what is measured | measured | goal | met |', '|---|---|---|---|']
        for k, v in targets.items():
            what, goal = goal_label(k, v)
            md.append(f"| {what} | {v['value']:.2f} | {goal} | {'–' if v['met'] is None else 'yes' if v['met'] else 'no'} |")
        md.append('')
    return md, targets, dict(train=tr, loader=lo, loader_embedded=le, inference=inf, metrics=me, fastpaths=fp,
                             ceiling=ce, video=vi, targets=targets, machine=machine), machine


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dir', type=Path, default=globals()['OUT'], help='the folder of records (default bench/out); the report is written there')
    out = p.parse_args(argv).dir
    md, targets, rec, machine = render(out)
    md, others = ['# Benchmarks', ''] + md, {}
    for d in sorted(p for p in out.iterdir() if p.is_dir() and (p/'train.json').exists()):
        omd, _, orec, om = render(d, '####')
        md += [f'### Another machine: `{d.name}`', '', f'Records in `{d.relative_to(out.parent.parent) if out.parent.parent in d.parents else d}/`.', ''] + omd
        others[d.name] = orec
    (out/'bench.md').write_text('\n'.join(md) + '\n')
    (out/'bench.json').write_text(json.dumps(dict(**rec, other_machines=others), indent=1) + '\n')
    print('\n'.join(md))


if __name__ == '__main__':
    sys.exit(main())
