"""Install truth (issue 17): settings.ini `requirements` name the distribution of every third-party module that
m2vsl/*.py imports (at module top or inside a function); `dev_requirements` add every one the tests import.
(tools/wheel_check.sh then installs the wheel with exactly these into a fresh venv.)"""
import ast, configparser, re, sys
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported(files, local=()):
    "Top-level names of the modules `files` import, less the standard library, m2vsl and `local`."
    mods = set()
    for f in files:
        for n in ast.walk(ast.parse(Path(f).read_text(encoding='utf-8'))):
            if isinstance(n, ast.Import): mods |= {a.name.split('.')[0] for a in n.names}
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module: mods.add(n.module.split('.')[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m not in ('m2vsl', '__future__', *local)}


def norm(name): return re.sub(r'[-_.]+', '-', name).lower()


def requirements(key):
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO/'settings.ini')
    return {norm(re.split(r'[<>=!~;\[ ]', r)[0]) for r in cfg['DEFAULT'][key].split()}


def unlisted(mods, req):
    dists = packages_distributions()
    return {m: dists.get(m) for m in sorted(mods) if not {norm(d) for d in dists.get(m, [m])} & req}


def test_requirements_name_every_runtime_import():
    mods = imported(sorted((REPO/'m2vsl').glob('*.py')))
    assert {'torch', 'torchaudio', 'fastcore', 'dvclive', 'yaml', 'PIL'} <= mods, mods   # the check sees them
    assert not (m := unlisted(mods, requirements('requirements'))), f"imported by m2vsl but not in settings.ini requirements: {m}"


def test_dev_requirements_name_every_test_import():
    tests = sorted((REPO/'tests').glob('*.py'))
    mods = imported(tests, local={f.stem for f in tests} | {'conftest'} | {f.stem for f in (REPO/'bench').glob('*.py')})   # + the bench scripts
    assert 'sklearn' in mods and 'pytest' in mods, mods
    req = requirements('requirements') | requirements('dev_requirements')
    assert not (m := unlisted(mods, req)), f"imported by the tests but in no requirement of settings.ini: {m}"
