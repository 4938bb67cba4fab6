"""The `pretrained: false | true | path` resolution never downloads and names what is missing."""

import logging

import pytest
import torch
import torchvision

from lightning_modules.pretrained import PretrainedWeightsNotFoundError, load_weights, resolve_weights


def test_false_means_random_and_is_announced_once(caplog):
    with caplog.at_level(logging.WARNING):
        assert load_weights(False, "vgg19") is None
        assert load_weights(False, "vgg19") is None
    assert sum("RANDOM weights" in r.message for r in caplog.records) <= 1


def test_true_looks_in_the_hub_cache_and_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsNotFoundError) as error:
        resolve_weights(True, "vgg19")
    message = str(error.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), folder / "alexnet-owt-7be5be79.pth")
    assert resolve_weights(True, "alexnet") == folder / "alexnet-owt-7be5be79.pth"
    assert "features.0.weight" in load_weights(True, "alexnet")


def test_path_may_be_the_file_or_its_folder(tmp_path):
    path = tmp_path / "my_vgg.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    assert resolve_weights(str(path), "vgg19") == path
    with pytest.raises(PretrainedWeightsNotFoundError, match=str(tmp_path)):
        resolve_weights(str(tmp_path), "vgg19")  # folder without the canonical name


def test_damaged_file_names_the_file(tmp_path):
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="vgg19-dcbb9e9d.pth"):
        load_weights(str(tmp_path), "vgg19")
