"""Class activation maps of a CNN run (grad-cam package) at a chosen layer or at the model input."""

from __future__ import annotations

import difflib

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, HiResCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from lib.models.cnn import GcmsNet, add_positional_channels, resize_time, tta_widths

CAM_METHODS = {"gradcam": GradCAM, "hirescam": HiResCAM, "layercam": LayerCAM}


# The target "layer" that is the model input (B, 2, m, t) itself, the earliest stage: there
# HiResCAM's gradient x activation is gradient x input, one value per cell of the image, and
# it exists for every backbone (a 1D sequence model has no 2D feature map).
INPUT_LAYER = "input"


# The CAM of each backbone family when 06 names none: (method, target layer), measured against
# the synthetic truth by scripts/measure_cam_layers.py (docs/explanations.md). A backbone not
# listed gets LayerCAM at its last feature map ("": the map the head pools).
CAM_DEFAULTS: dict[str, tuple[str, str]] = {
    # demo CNN (cls3), synthetic small, 2 positive OOF samples per label: labels (of 9) whose
    # CAM share is 2x chance or more, mean share / chance over labels. HiResCAM at the input
    # 9/9 (2.93); at backbone.blocks.1 3/9 (1.67); blocks.0 2/9, blocks.2 (LayerCAM) 3/9, the
    # last feature map 0/9. A stage's map is 8 or more m/z rows coarse along m/z once
    # upsampled, wider than an ion's row; the input's is one cell per (m/z, time).
    "mobilenetv3_small_100": ("hirescam", INPUT_LAYER),
    # a 1D sequence model has no 2D feature map: gradient x input on the image grid
    "seq1d": ("hirescam", INPUT_LAYER),
    "seq1d_tiny": ("hirescam", INPUT_LAYER),
}


def default_cam(backbone: str) -> tuple[str, str]:
    """(CAM method, target layer) for a timm backbone name (pin tags allowed): the
    CAM_DEFAULTS entry of its name without the tag, else LayerCAM at the last feature map."""
    return CAM_DEFAULTS.get(backbone.split(".")[0], ("layercam", ""))


class TargetLayerError(ValueError):
    """The CAM's target layer cannot be found or gives no (B, C, h, w) feature map."""


class _AtWidth(nn.Module):
    """A GcmsNet at one TTA width, as one module for the grad-cam package.

    target: "" (the last feature map): run the backbone as timm's forward_features +
    forward_head (or the features_only list) and pass the last feature map through ``tap``, an
    identity the CAM hooks; the backbone runs without autograd (a CAM needs the gradient of the
    logit with respect to the feature map only, so the backward pass goes through the head
    alone). INPUT_LAYER: ``tap`` is the model input itself (B, 2, m, t), before the time
    resize, so the map lies on the cached image's grid cell by cell. Otherwise (a module named
    by the user) the model's own forward_width.
    """

    def __init__(self, net: GcmsNet, width: int, target: str = ""):
        super().__init__()
        self.net = net
        self.width = width
        self.target = target
        self.tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.target == INPUT_LAYER:  # a leaf that wants its gradient, for the package's hook
            return self.net.forward_width(self.tap(x.detach().requires_grad_()), self.width)
        if self.target:
            return self.net.forward_width(x, self.width)
        net = self.net
        with torch.no_grad():
            x = net.input_conv(add_positional_channels(resize_time(x, self.width)))
            if net.features_only:
                features = net.backbone(x)[-1]
            elif hasattr(net.backbone, "forward_features"):
                features = net.backbone.forward_features(x)
            else:
                raise TargetLayerError(f"{type(net.backbone).__name__} has no forward_features; "
                                       f"name a target layer (or {INPUT_LAYER!r})")
        if not (isinstance(features, torch.Tensor) and features.ndim == 4):
            raise TargetLayerError(f"{type(net.backbone).__name__}'s last features are not a "
                                   f"(B, C, h, w) map; name a target layer (or "
                                   f"{INPUT_LAYER!r})")
        features = self.tap(features.requires_grad_())
        out = features if net.features_only else net.backbone.forward_head(features)
        return net.head(out.float())


def find_target_layer(model: GcmsNet, target_layer: str | None = None) -> str:
    """The CAM target's name: "" for the default (the backbone's last feature map),
    INPUT_LAYER (the model input, any backbone), else ``target_layer`` checked: a module of the
    model (e.g. "backbone.layer4") whose output is a (B, C, h, w) tensor. TargetLayerError
    names the backbone and close module names."""
    if not target_layer or target_layer == INPUT_LAYER:
        return target_layer or ""
    names = dict(model.named_modules())
    if target_layer not in names:
        close = difflib.get_close_matches(target_layer, list(names), n=5)
        raise TargetLayerError(f"{type(model.backbone).__name__}: no module {target_layer!r} "
                               f"(close: {close or 'none'}; a stage, e.g. 'backbone.layer4')")
    outputs = []
    handle = names[target_layer].register_forward_hook(lambda m, i, o: outputs.append(o))
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model.backbone(model.input_conv(torch.zeros(1, 4, 64, 64, device=device)))
    finally:
        handle.remove()
    if not outputs:
        raise TargetLayerError(f"{type(model.backbone).__name__}: module {target_layer!r} is "
                               f"not used in the forward pass")
    for output in outputs:
        if not (isinstance(output, torch.Tensor) and output.ndim == 4):
            got = (f"shape {tuple(output.shape)}" if isinstance(output, torch.Tensor)
                   else type(output).__name__)
            raise TargetLayerError(f"{type(model.backbone).__name__}: module {target_layer!r} "
                                   f"gives {got}, not a (B, C, h, w) feature map")
    return target_layer


def cam_maps(model: GcmsNet, x: torch.Tensor, label: int, *, method: str = "gradcam",
             target_layer: str | None = None) -> np.ndarray:
    """Class activation maps of one label for a batch, through the model's TTA widths.

    x: (B, 2, m, t) model inputs; label: index into LABELS. For each width of
    ``tta_widths(t, model.width_offsets)`` the grad-cam package computes the map at the target
    layer and resizes it to the input's (m, t) (the time resize undone); the maps are averaged
    over widths. Returns (B, m, t) float32, finite, in [0, 1] (each width's map is scaled to
    max 1 by the package). method: a key of CAM_METHODS.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"method must be one of {sorted(CAM_METHODS)}, got {method!r}")
    name = find_target_layer(model, target_layer)
    was_training = model.training
    maps = []
    try:
        for width in tta_widths(x.shape[-1], model.width_offsets):
            wrapper = _AtWidth(model, width, name)
            layer = wrapper.tap if name in ("", INPUT_LAYER) else model.get_submodule(name)
            cam = CAM_METHODS[method](model=wrapper, target_layers=[layer])
            try:  # not `with`: the package's __exit__ would swallow an IndexError
                maps.append(cam(input_tensor=x, targets=[ClassifierOutputTarget(label)] * len(x)))
            finally:
                cam.activations_and_grads.release()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return np.nan_to_num(np.mean(maps, axis=0), nan=0.0).astype(np.float32)
