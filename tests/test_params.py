"""Params files (issue 16): one typed reader, `m2vsl.pipeline.load_params`, checked when the file is read.

A hand-edited bad value is an error naming the file, the key and the value as it is read, not a decoding error of
every frame, a bare TypeError or an unrelated failure inside a loader; a YAML syntax error names the file."""
import glob, subprocess, sys
from pathlib import Path

import pytest
import yaml

from m2vsl.config import load_params, ParamsError, front_ends, load_config

REPO = Path(__file__).resolve().parents[1]
GOOD = {'data': {'root': 'data/embedded'}, 'audio': {'sample_rate': 8000, 'seconds': 3.0, 'n_fft': 128, 'win_length': 128,
        'hop_length': 240}, 'image': {'size': 64}, 'train': {'epochs': 1, 'batch_size': 8, 'lr': 0.0005}, 'methods': ['m2vsl']}


def write(tmp_path, section, key, value, name='params.yaml'):
    p = {k: dict(v) if isinstance(v, dict) else v for k, v in GOOD.items()}
    p[section][key] = value
    f = tmp_path/name
    f.write_text(yaml.safe_dump(p))
    return f


@pytest.mark.parametrize('section,key,value,why', [
    ('image', 'size', 'big', 'is not a number'), ('image', 'size', 96.7, 'is not an integer'),
    ('image', 'size', 0, 'must be > 0'), ('image', 'size', -64, 'must be > 0'), ('image', 'size', True, 'is not a number'),
    ('image', 'train_scale', 0.5, 'must be ≥ 1'), ('image', 'min_side', 0, 'must be > 0'),
    ('audio', 'sample_rate', 'fast', 'is not a number'), ('audio', 'sample_rate', -8000, 'must be > 0'),
    ('audio', 'sample_rate', 8000.5, 'is not an integer'), ('audio', 'seconds', 0, 'must be > 0'),
    ('audio', 'seconds', 'long', 'is not a number'), ('audio', 'seconds', float('nan'), 'is not a finite number'),
    ('audio', 'n_fft', 0, 'must be > 0'), ('audio', 'hop_length', -1, 'must be > 0'), ('audio', 'win_length', 512, 'must be ≤ audio.n_fft'),
    ('audio', 'scale', 0, 'must be > 0'),
    ('train', 'epochs', 0, 'must be ≥ 1'), ('train', 'batch_size', 'many', 'is not a number'), ('train', 'batch_size', 7.5, 'is not an integer'),
    ('train', 'lr', -1, 'must be > 0'), ('train', 'lr', 'fast', 'is not a number'), ('train', 'num_workers', -1, 'must be ≥ 0'),
    ('train', 'val_fraction', 1.5, 'must be < 1'), ('train', 'weight_decay', -0.1, 'must be ≥ 0'),
])
def test_bad_value_is_an_error_naming_file_key_and_value(tmp_path, section, key, value, why):
    f = write(tmp_path, section, key, value)
    with pytest.raises(ParamsError) as e: load_params(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: {section}.{key}: {value!r}") and why in msg, msg


def test_unknown_key_and_bad_choice_name_the_file(tmp_path):
    with pytest.raises(ParamsError, match=r"image: \['sise'\] not field\(s\) of ImageConfig"):
        load_params(write(tmp_path, 'image', 'sise', 96))
    with pytest.raises(ParamsError, match=r"params.yaml: train: amp='fast': choose from"):
        load_params(write(tmp_path, 'train', 'amp', 'fast'))


def test_yaml_syntax_error_names_the_file(tmp_path):
    f = tmp_path/'my-params.yaml'
    f.write_text("audio:\n  sample_rate: 8000\n image: {size: 64\n")
    with pytest.raises(ParamsError) as e: load_params(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: not valid YAML") and f'in "{f}", line' in msg and '<unicode string>' not in msg, msg
    f.write_bytes("audio: {sample_rate: 8000}  # \xe9t\xe9\n".encode('latin-1'))
    with pytest.raises(ParamsError, match='not UTF-8'): load_params(f, need=())
    f.write_text("- a\n- b\n")
    with pytest.raises(ParamsError, match='expected a mapping'): load_params(f, need=())


def test_integers_written_as_floats_and_yaml11_exponents_are_typed(tmp_path):
    f = tmp_path/'params.yaml'
    f.write_text(yaml.safe_dump(GOOD).replace('size: 64', 'size: 64.0').replace('lr: 0.0005', 'lr: 5e-4'))
    p = load_params(f)
    assert (p['image']['size'], type(p['image']['size']), p['train']['lr']) == (64, int, 5e-4)
    a, i = front_ends(p)
    assert (i.size, a.sample_rate) == (64, 8000)


@pytest.mark.parametrize('f', ['params.yaml'] + sorted(glob.glob('profiles/*.yaml', root_dir=REPO)))
def test_the_repository_params_files_load_unchanged(f):
    p, raw = load_params(REPO/f), yaml.safe_load((REPO/f).read_text())
    assert p == raw
    for s in ('audio', 'image', 'train'):
        assert {k: type(v) for k, v in p[s].items()} == {k: type(v) for k, v in raw[s].items()}


def test_train_config_reads_params_through_the_same_reader(tmp_path):
    f = write(tmp_path, 'train', 'batch_size', 32.5)
    with pytest.raises(ParamsError, match=f"{f}: train.batch_size: 32.5 is not an integer"): load_config(f, 'train')
    f.write_text("train: {epochs: 2, batch_size: 4\n")
    with pytest.raises(ParamsError, match=f"{f}: not valid YAML"): load_config(f, 'train')
    f.write_text("train:\n  epochs: 2\n  batch_size: 4.0\n  image: {size: 0}\n")   # a TrainConfig's own front ends too
    with pytest.raises(ParamsError, match=f"{f}: train.image.size: 0 must be > 0"): load_config(f, 'train')
    f.write_text("train:\n  epochs: 2\n  batch_size: 4.0\n")
    assert load_config(f, 'train').batch_size == 4


def test_no_module_reads_a_params_file_with_its_own_yaml_call():
    "Every YAML file read of the package is `load_params`'s (parse_overrides parses command-line values, not files)."
    allowed = {('config.py', 'yaml.safe_load(f)'), ('config.py', 'yaml.safe_load(v)')}
    for py in sorted((REPO/'m2vsl').glob('*.py')):
        for n, line in enumerate(py.read_text().splitlines(), 1):
            for call in ('yaml.safe_load(', 'yaml.load(', 'yaml.full_load(', 'yaml.unsafe_load('):
                if call in line:
                    i = line.index(call); assert (py.name, line[i:i + len(call) + 2]) in allowed, f"{py.name}:{n}: {line.strip()}"
