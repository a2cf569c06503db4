"ImageNet initialisation (`pretrained: true`) through torchvision's weights API, and local weights files; no network."
import os, socket, time
import pytest, torch, torchvision
from m2vsl.model import resnet18, imagenet_weights_file, VisualEncoder, M2VSL, ModelConfig

EXPECTED = 'resnet18-f37072fd.pth'   # torchvision's ResNet18_Weights.IMAGENET1K_V1 file name


@pytest.fixture
def hub(tmp_path, monkeypatch):
    "An empty torch hub cache under a temporary TORCH_HOME; the network is blocked (socket connect and the download)."
    monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    calls = []
    def blocked(*a, **k):
        calls.append(a); raise OSError('network blocked in this test')
    monkeypatch.setattr(socket.socket, 'connect', blocked)
    monkeypatch.setattr(socket, 'getaddrinfo', blocked)
    return tmp_path/'torch'/'hub'/'checkpoints', calls


def _fake_imagenet(folder):
    torch.manual_seed(123)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(sd, folder/EXPECTED)
    return sd


def test_expected_file_is_under_torch_home(hub):
    folder, _ = hub
    assert imagenet_weights_file() == str(folder/EXPECTED)


def test_cached_weights_load_without_network(hub):
    folder, calls = hub
    sd = _fake_imagenet(folder)
    m = resnet18(pretrained=True)
    assert torch.equal(m.conv1.weight, sd['conv1.weight'])
    assert torch.equal(m.layer4[1].bn2.running_var, sd['layer4.1.bn2.running_var'])
    # the model config's `pretrained: true` reaches the visual trunk (the audio trunk stays random)
    model = M2VSL(ModelConfig(dim=16, num_classes=3, mmt_depth=1, pretrained=True))
    assert torch.equal(model.visual.layers[3][1].conv2.weight.detach().contiguous(), sd['layer4.1.conv2.weight'])
    assert calls == []


def test_no_cache_no_network_fails_at_once_naming_the_file(hub):
    folder, calls = hub
    t0 = time.time()
    with pytest.raises(FileNotFoundError) as e:
        resnet18(pretrained=True)
    assert time.time() - t0 < 5
    msg = str(e.value)
    assert str(folder/EXPECTED) in msg and 'TORCH_HOME' in msg and 'pretrained: <path>' in msg
    assert calls, "the download was not tried"
    assert not (folder/EXPECTED).exists()


def test_download_goes_into_the_cache(hub, monkeypatch):
    "Where the network allows, the weights API downloads to the expected file (the download itself faked)."
    folder, _ = hub
    sd = torchvision.models.resnet18(weights=None).state_dict()
    seen = []
    def fake_download(url, dst, hash_prefix=None, progress=True):
        seen.append((url, hash_prefix))
        torch.save(sd, dst)
    monkeypatch.setattr(torch.hub, 'download_url_to_file', fake_download)
    m = resnet18(pretrained=True)
    # the real download is checked against the hash in the file's name (torch.hub's check_hash)
    assert seen == [(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url, 'f37072fd')]
    assert (folder/EXPECTED).is_file() and torch.equal(m.fc.weight, sd['fc.weight'])
    resnet18(pretrained=True); assert len(seen) == 1                    # the second time: from the cache


def test_pretrained_path_loads_a_local_file(hub, tmp_path):
    torch.manual_seed(7)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(sd, tmp_path/'my_resnet18.pth')
    ve = VisualEncoder(dim=8, pretrained=str(tmp_path/'my_resnet18.pth'))
    assert torch.equal(ve.stem[0].weight.detach(), sd['conv1.weight'])
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        resnet18(pretrained=str(tmp_path/'missing.pth'))
