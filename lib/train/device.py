"""Images on the device and the model input built from them; precision, backends, compiling,
and TTA prediction of logits."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from lib.core.precision import precision_label
from lib.core.schema import N_LABELS
from lib.data.images import LOG1P_SCALE, MIN_CLIP
from lib.train.settings import TrainSettings


def normalize_axis(images: torch.Tensor, norm: str) -> torch.Tensor:
    """Torch twin of lib.data.images.normalize_axis on (..., m, t)."""
    if norm == "none":
        return images
    axis = -1 if norm == "mass" else -2
    return images / images.amax(dim=axis, keepdim=True).clamp_min(MIN_CLIP)


def intensity_transform(x: torch.Tensor, transform: str) -> torch.Tensor:
    """Torch twin of lib.data.images.intensity_transform on (B, 2, m, t), item by item."""
    x = (x / _item_max(x)).clamp(MIN_CLIP, 1.0)
    if transform == "log":
        x = torch.log10(x)
    else:
        x = torch.log10(x / _item_max(x) * LOG1P_SCALE + 1)
        x = x / _item_max(x)
    x = x - x.amin(dim=(-3, -2, -1), keepdim=True)
    return x / _item_max(x)


def _item_max(x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=(-3, -2, -1), keepdim=True)


def two_channel(images: torch.Tensor, derivatized: torch.Tensor) -> torch.Tensor:
    """(B, m, t) images + (B,) bool flags -> (B, 2, m, t); the flag picks the channel."""
    flags = derivatized[:, None, None]
    zeros = torch.zeros_like(images)
    return torch.stack([torch.where(flags, zeros, images), torch.where(flags, images, zeros)],
                       dim=1)


class DeviceImages:
    """The run's cached images on the device; batches are index selections.

    images: (N, m, t) float32 single-channel images (max 1); derivatized: (N,) 0/1.
    """

    def __init__(self, images: np.ndarray, derivatized: np.ndarray, device: torch.device):
        self.images = torch.as_tensor(images, dtype=torch.float32).to(device)
        self.derivatized = torch.as_tensor(np.asarray(derivatized).astype(bool)).to(device)
        self.device = device

    def normed(self, index: torch.Tensor, norm: str) -> torch.Tensor:
        """(B,) indices -> (B, 2, m, t) two-channel images after the axis norm (step 2.1)."""
        index = index.to(self.device)
        return two_channel(normalize_axis(self.images[index], norm), self.derivatized[index])

    def model_input(self, index: torch.Tensor, norm: str, transform: str) -> torch.Tensor:
        """(B,) indices -> (B, 2, m, t) model inputs without mixup (steps 2.1, 2.3-2.5)."""
        return intensity_transform(self.normed(index, norm), transform)


def to_device(tensor: torch.Tensor | None, device: torch.device, pinned: bool
              ) -> torch.Tensor | None:
    if tensor is None:
        return None
    if pinned:  # pin_memory() needs CUDA
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def precision(device: torch.device, settings: TrainSettings,
              capability: tuple[int, int] | None = None) -> str:
    """What a fit on ``device`` computes in, as recorded in metrics.json: "bf16" (autocast;
    the head stays fp32), "tf32" (fp32 with TF32 matmuls and convolutions) or "fp32".

    capability: the GPU's (major, minor) compute capability; None asks torch when ``device``
    is CUDA. bf16 and TF32 need 8.0 (Ampere) or newer; amp on an older GPU computes in fp32,
    with a warning. On the CPU everything is fp32.
    """
    if device.type != "cuda":
        return "fp32"
    if capability is None:
        capability = torch.cuda.get_device_capability(device)
    label = precision_label("cuda", settings.amp, settings.tf32, capability)
    if settings.amp and label != "bf16":
        warnings.warn(f"bf16 autocast needs a GPU of compute capability 8.0 or newer; this "
                      f"one has {capability[0]}.{capability[1]}: computing in fp32",
                      stacklevel=2)
    return label


def configure_backends(device: torch.device, settings: TrainSettings) -> None:
    """On CUDA: cudnn.benchmark on (the shapes are few and fixed), and TF32 for fp32 matmuls
    and cuDNN convolutions only when settings.tf32 asks (cuDNN allows it by default, so without
    this even amp=False would not be true fp32). Nothing on other devices.

    The allow_tf32 flags work without warnings from torch 2.4 to 2.14; torch 2.9+ also has
    fp32_precision settings, but mixing the two is an error there, and torch's own inductor
    still reads cudnn.allow_tf32, which fails after only the new settings have been set.
    """
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = settings.tf32
    torch.backends.cudnn.allow_tf32 = settings.tf32


def autocast(device: torch.device, mode: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=mode == "bf16")


def predict_logits(model: nn.Module, data: DeviceImages, index: np.ndarray,
                   settings: TrainSettings) -> np.ndarray:
    """Eval-mode (TTA) logits (n, 9) float32 for the samples at ``index`` (n,). The batches'
    logits stay on the device and come back in one copy at the end."""
    model.eval()
    if len(index) == 0:
        return np.zeros((0, N_LABELS), dtype=np.float32)
    mode = precision(data.device, settings)
    index_t = torch.as_tensor(index).to(data.device)
    out = []
    with torch.no_grad():
        for start in range(0, len(index), settings.eval_batch_size):
            batch = index_t[start:start + settings.eval_batch_size]
            x = data.model_input(batch, settings.norm, settings.transform)
            with autocast(data.device, mode):
                out.append(model(x).float())
    return torch.cat(out).cpu().numpy()


def prepare_model(model: nn.Module, device: torch.device, settings: TrainSettings) -> nn.Module:
    """Move the model to the device; on CUDA switch to channels_last when asked; compile its
    per-width forward when asked (see compile_widths)."""
    model = model.to(device)
    if settings.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    if settings.compile:
        compile_widths(model)
    return model


def compile_widths(model: nn.Module) -> None:
    """torch.compile the GcmsNet's training forward, in place (the state_dict keys stay).

    dynamic=False: one graph per time width (5), each made when the width first comes up,
    within dynamo's recompile limit (8) and none after. The eval forward stays eager: it
    would need a graph per width, batch size and grad mode (automatic dynamic shapes did not
    help: guards on the width made still more graphs).
    """
    eager = model.forward_width
    compiled = torch.compile(eager, dynamic=False)

    def forward_width(x: torch.Tensor, width: int) -> torch.Tensor:
        return compiled(x, width) if model.training else eager(x, width)

    model.forward_width = forward_width
