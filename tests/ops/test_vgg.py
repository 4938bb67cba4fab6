import pytest
import torch
import torch.nn.functional as F
import torchvision

from ops.vgg import VGG19_LAYERS, VGG19Features

# torchvision's vgg19().features index of the ReLU after each named conv (read off its layer table)
TORCHVISION_RELU = {"conv1_1": 1, "conv1_2": 3, "conv2_2": 8, "conv3_2": 13, "conv4_2": 22, "conv5_4": 35}
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def torchvision_vgg() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.vgg19(weights=None).eval()


def test_layer_names() -> None:
    assert len(VGG19_LAYERS) == 16
    assert VGG19_LAYERS[:4] == ("conv1_1", "conv1_2", "conv2_1", "conv2_2") and VGG19_LAYERS[-1] == "conv5_4"


def test_output_shapes_for_64x64() -> None:
    vgg = VGG19Features()
    out = vgg(torch.rand(2, 3, 64, 64))
    assert list(out) == ["conv1_2", "conv2_2", "conv3_2"]
    assert out["conv1_2"].shape == (2, 64, 64, 64)
    assert out["conv2_2"].shape == (2, 128, 32, 32)
    assert out["conv3_2"].shape == (2, 256, 16, 16)
    assert all((features >= 0).all() for features in out.values())  # post-ReLU
    assert len(vgg.features) == TORCHVISION_RELU["conv3_2"] + 1  # truncated after the deepest layer


def test_torchvision_state_dict_gives_torchvision_features(torchvision_vgg: torch.nn.Module) -> None:
    layers = ("conv1_1", "conv2_2", "conv3_2", "conv4_2")
    vgg = VGG19Features(layers=layers, pooling="max", normalization="imagenet")
    vgg.load_torchvision_state_dict(torchvision_vgg.state_dict())
    image = torch.rand(1, 3, 48, 40)
    out = vgg(image)
    with torch.no_grad():
        x = (image - IMAGENET_MEAN) / IMAGENET_STD
        for name in layers:
            expected = torchvision_vgg.features[: TORCHVISION_RELU[name] + 1](x)
            torch.testing.assert_close(out[name], expected, rtol=1e-5, atol=1e-6)


def test_caffe_normalization(torchvision_vgg: torch.nn.Module) -> None:
    vgg = VGG19Features(layers=("conv1_1",), normalization="caffe")
    vgg.load_torchvision_state_dict(torchvision_vgg.state_dict())
    image = torch.rand(1, 3, 8, 8)
    conv = torchvision_vgg.features[0]
    x = 255.0 * image - torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1))
    torch.testing.assert_close(vgg(image)["conv1_1"], expected, rtol=1e-5, atol=1e-4)


def test_average_pooling_differs_after_the_first_pool() -> None:
    torch.manual_seed(0)
    max_vgg = VGG19Features(layers=("conv1_2", "conv2_2"), pooling="max")
    avg_vgg = VGG19Features(layers=("conv1_2", "conv2_2"), pooling="avg")
    avg_vgg.load_state_dict(max_vgg.state_dict())
    image = torch.rand(1, 3, 32, 32)
    max_out, avg_out = max_vgg(image), avg_vgg(image)
    assert isinstance(avg_vgg.features[4], torch.nn.AvgPool2d) and isinstance(max_vgg.features[4], torch.nn.MaxPool2d)
    torch.testing.assert_close(max_out["conv1_2"], avg_out["conv1_2"], rtol=0, atol=0)  # before any pooling
    assert not torch.allclose(max_out["conv2_2"], avg_out["conv2_2"])
    pooled = F.avg_pool2d(avg_out["conv1_2"], 2)
    with torch.no_grad():
        expected = avg_vgg.features[5:9](pooled)  # conv2_1, ReLU, conv2_2, ReLU
    torch.testing.assert_close(avg_out["conv2_2"], expected)


def test_gradients_reach_the_input_and_weights_are_frozen() -> None:
    vgg = VGG19Features(layers=("conv2_2",))
    image = torch.rand(1, 3, 16, 16, requires_grad=True)
    vgg(image)["conv2_2"].square().sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in vgg.parameters())


def test_always_in_eval_mode() -> None:
    module = torch.nn.Sequential(VGG19Features(layers=("conv1_1",)))
    module.train()
    assert module.training and not module[0].training
    assert not any(m.training for m in module[0].modules())


def test_missing_or_misshaped_keys_raise(torchvision_vgg: torch.nn.Module) -> None:
    vgg = VGG19Features(layers=("conv2_2",))
    state = dict(torchvision_vgg.state_dict())
    del state["features.7.weight"]
    with pytest.raises(ValueError, match=r"features\.7\.weight"):
        vgg.load_torchvision_state_dict(state)
    state = dict(torchvision_vgg.state_dict())
    state["features.0.bias"] = torch.zeros(32)
    with pytest.raises(ValueError, match=r"features\.0\.bias: expected \(64,\), got \(32,\)"):
        vgg.load_torchvision_state_dict(state)
    # only the truncated network's entries are needed: deeper layers may be absent
    needed = ("features.0.", "features.2.", "features.5.", "features.7.")
    state = {k: v for k, v in torchvision_vgg.state_dict().items() if k.startswith(needed)}
    vgg.load_torchvision_state_dict(state)
    torch.testing.assert_close(vgg.features[7].weight, torchvision_vgg.features[7].weight, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": ("conv6_1",)}, "unknown VGG-19 layer"),
        ({"layers": ()}, "at least one"),
        ({"layers": ("conv1_1", "conv1_1")}, "distinct"),
        ({"pooling": "median"}, "pooling"),
        ({"normalization": "zscore"}, "normalization"),
    ],
)
def test_constructor_guards(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VGG19Features(**kwargs)


def test_input_guards() -> None:
    vgg = VGG19Features(layers=("conv1_1",))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        vgg(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="floating-point"):
        vgg(torch.ones(1, 3, 8, 8, dtype=torch.uint8))
