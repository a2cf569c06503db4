"""`make docs`: the explorer and every library notebook as HTML pages in docs/_site/, offline, with nbconvert.

Each notebook of nbs/ is executed as `nbdev_test` runs it (from nbs/, cells marked `#| slow` left out: they are shown
with their code only), then rendered; nbdev's directives (`#| export`, ...) are dropped from the shown code and
`#| hide` cells are left out. The explorer (nbs/72_explorer.ipynb, every cell `#| slow`) is executed whole with
papermill, on runs/m2vsl/checkpoints/best.pt and data/embedded when `make reproduce` has made them (else on the
tiny model it trains itself). The executed copies are kept in docs/_build/ (what `_quarto.yml` renders with Quarto).
Usage: python docs/build.py [--only NAME ...] [--timeout S]"""
import argparse, html, os, re, subprocess, sys, time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

REPO = Path(__file__).resolve().parents[1]
NBS, BUILD, SITE = REPO/'nbs', REPO/'docs'/'_build', REPO/'docs'/'_site'
EXPLORER = '72_explorer'

def directives(cell)->list:
    "The nbdev/Quarto directives (`#| ...`) at the top of a cell, as strings."
    out = []
    for line in cell.source.splitlines():
        if not line.startswith('#|'): break
        out.append(line[2:].strip())
    return out

def execute(nb, timeout:int):
    "Run the notebook's cells from nbs/, the `#| slow` and `#| eval: false` ones left out (as `nbdev_test` without flags)."
    slow = {i: c.source for i, c in enumerate(nb.cells)
            if c.cell_type == 'code' and {'slow', 'eval: false'} & set(directives(c))}
    for i in slow: nb.cells[i].source = ''
    # not run as a script: a notebook's `if __name__ == '__main__': main()` cell stays quiet, as under nbdev_test
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys; sys.modules['m2vsl_docs'] = sys.modules['__main__']; __name__ = 'm2vsl_docs'"))
    try: NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(NBS)}}).execute()
    finally:
        nb.cells.pop(0)
        for i, s in slow.items(): nb.cells[i].source = s
    return nb

def explorer(timeout:int):
    "The explorer, executed whole with papermill (on the pipeline's checkpoint and data when they exist)."
    out = BUILD/f'{EXPLORER}.ipynb'
    ck, data = REPO/'runs'/'m2vsl'/'checkpoints'/'best.pt', REPO/'data'/'embedded'
    args = ['-p', 'checkpoint', os.path.relpath(ck, NBS), '-p', 'data_root', os.path.relpath(data, NBS)] if ck.exists() and data.exists() else []
    subprocess.run([sys.executable, '-m', 'papermill', '--no-progress-bar', '-k', 'python3', '--language', 'python',
                    '--cwd', str(NBS), '--execution-timeout', str(timeout), str(NBS/f'{EXPLORER}.ipynb'), str(out), *args], check=True)
    return nbformat.read(out, as_version=4)

def tidy(nb):
    "What a reader sees: `#| hide` cells out, nbdev's directive lines dropped, `#| echo: false` inputs hidden (kept for Quarto)."
    cells = []
    for c in nb.cells:
        d = directives(c)
        if 'hide' in d: continue
        if d: c.source = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|') or l == '#| echo: false').lstrip('\n')
        if 'echo: false' in d: c.metadata.setdefault('transient', {})['remove_source'] = True
        if c.cell_type == 'code' and not c.source.strip() and not c.get('outputs'): continue
        cells.append(c)
    nb.cells = cells
    return nb

def title(nb, default:str)->str:
    for c in nb.cells:
        if c.cell_type == 'markdown' and (m := re.search(r'^#\s+(.+)$', c.source, re.M)): return m.group(1).strip()
    return default

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', nargs='*', default=None, help='notebook names (e.g. 01_audio 72_explorer); default: all')
    ap.add_argument('--timeout', type=int, default=600, help='seconds a cell may run')
    a = ap.parse_args()
    names = sorted(p.stem for p in NBS.glob('[0-9]*.ipynb'))
    if a.only: names = [n for n in names if n in a.only]
    BUILD.mkdir(parents=True, exist_ok=True); SITE.mkdir(parents=True, exist_ok=True)
    exporter, pages = HTMLExporter(template_name='lab'), []
    for n in names:
        t = time.time()
        nb = explorer(a.timeout) if n == EXPLORER else execute(nbformat.read(NBS/f'{n}.ipynb', as_version=4), a.timeout)
        nbformat.write(tidy(nb), BUILD/f'{n}.ipynb')
        body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': n}})
        (SITE/f'{n}.html').write_text(body, encoding='utf-8')
        pages.append((n, title(nb, n)))
        print(f"docs: {n}.html ({time.time() - t:.0f} s)", flush=True)
    every = sorted({p.stem for p in SITE.glob('[0-9]*.html')})   # pages of earlier --only builds stay listed
    titles = dict(pages)
    items = '\n'.join(f'<li><a href="{n}.html">{html.escape(n)}</a> {html.escape(titles.get(n, ""))}</li>' for n in every)
    (SITE/'index.html').write_text(f"<!doctype html><meta charset=utf-8><title>m2vsl notebooks</title>\n<h1>m2vsl notebooks</h1>\n"
                                   f"<p>Executed copies of the library notebooks (cells marked slow shown with their code only) "
                                   f"and of the explorer. The source is nbs/; see README.md.</p>\n<ul>\n{items}\n</ul>\n",
                                   encoding='utf-8')
    print(f"docs: {len(every)} pages in {SITE.relative_to(REPO)}/ (index.html)")

if __name__ == '__main__': main()
