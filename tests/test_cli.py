"""`m2vsl localize` with checkpoints it cannot use (issue 16): a clear error naming the file and what does not match,
exit status 1, no traceback; a message that offers a way to load an unverified file names one that exists."""
import hashlib, re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import m2vsl.methods as methods
from m2vsl.cli import main
from m2vsl.config import TrainConfig
from m2vsl.checkpoint import save_checkpoint, load_checkpoint


@pytest.fixture
def pair(tmp_path):
    Image.new('RGB', (64, 64), (120, 30, 200)).save(tmp_path/'a.jpg')
    sf.write(tmp_path/'a.wav', np.zeros(8000, np.float32), 8000)
    return tmp_path/'a.jpg', tmp_path/'a.wav'


def weights(method, **model):
    cfg = TrainConfig(method=method, model=model)
    m, _ = methods.resolve(method)
    return methods.for_weights(m, cfg.model).state_dict()


def localize(ck, pair, capsys):
    im, au = pair
    rc = main(['localize', '--no-progress', '--checkpoint', str(ck), '--image', str(im), '--audio', str(au),
               '--out', str(im.with_name('o.png'))])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize('case', ['architecture', 'method'])
def test_checkpoint_of_another_architecture_or_method(tmp_path, pair, capsys, case):
    if case == 'architecture':   # weights of a 16-wide M2VSL under the config of a 32-wide one
        sd, cfg = weights('m2vsl', dim=16, num_classes=3, mmt_heads=4), TrainConfig(model=dict(dim=32, num_classes=3, mmt_heads=4))
    else:                        # M2VSL weights under an EZ-VSL config
        sd, cfg = weights('m2vsl', dim=32, num_classes=3, mmt_heads=4), TrainConfig(method='ezvsl', model=dict(dim=32))
    ck = tmp_path/'other.pt'
    save_checkpoint({'model': sd, 'config': cfg.to_dict()}, ck)       # a valid sidecar: the file itself is intact
    rc, err = localize(ck, pair, capsys)
    assert rc == 1 and 'Traceback' not in err, err
    assert err.startswith(f"m2vsl localize: error: {ck}: its weights do not fit the model its config describes (method "
                          f"{cfg.method!r}, dim 32)"), err
    if case == 'architecture': assert re.search(r"tensor\(s\) of another shape \(checkpoint vs model\), e\.g\. \S+ \(\d+", err), err
    else: assert 'weight(s) in the checkpoint the model does not have' in err, err
    assert not (tmp_path/'o.png').exists()


def test_checkpoint_with_an_unbuildable_config(tmp_path, pair, capsys):
    ck = tmp_path/'odd.pt'
    save_checkpoint({'model': {}, 'config': {'method': 'no_such_method'}}, ck)
    rc, err = localize(ck, pair, capsys)
    assert rc == 1 and 'Traceback' not in err and f"{ck}: its config is not one this version of m2vsl can build" in err, err


def test_missing_sidecar_message_names_a_way_that_exists(tmp_path, pair, capsys):
    ck = tmp_path/'nosum.pt'
    save_checkpoint({'model': weights('m2vsl', dim=32, num_classes=3, mmt_heads=4),
                     'config': TrainConfig(model=dict(dim=32, num_classes=3, mmt_heads=4)).to_dict()}, ck)
    ck.with_name('nosum.pt.sha256').unlink()
    rc, err = localize(ck, pair, capsys)
    assert rc == 1 and f"{ck}: no checksum file nosum.pt.sha256" in err, err
    # every option the message names is one the CLI has; the rest is a shell command or the Python call
    opts = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", err))
    from m2vsl.cli import _parser
    known = {s for a in _parser()._subparsers._group_actions[0].choices['localize']._actions for s in a.option_strings}
    assert opts <= known, (opts - known, err)
    if 'verify=False' in err: assert 'm2vsl.checkpoint.load_checkpoint(' in err, err
    # the shell command it gives makes the file loadable (sha256sum's "<digest>  <name>" line)
    (tmp_path/'nosum.pt.sha256').write_text(f"{hashlib.sha256(ck.read_bytes()).hexdigest()}  nosum.pt\n")
    assert 'model' in load_checkpoint(ck)
