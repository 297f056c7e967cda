"""The device policy decided from plain values (no torch import: the sweep uses it on workers
that never load torch): what a run computes in, and why CUDA cannot be used.

Labels: "bf16" (bf16 autocast on a GPU of compute capability 8.0 or newer; the head stays
fp32), "tf32" (fp32 with TF32 matrix products and convolutions, asked for with ``tf32``, on
such a GPU) and "fp32" (true fp32: the CPU, ``amp`` off without ``tf32``, or an older GPU).
"""

from __future__ import annotations

BF16_CAPABILITY = (8, 0)  # Ampere: bf16 tensor cores and TF32


def precision_label(device_type: str, amp: bool, tf32: bool,
                    capability: tuple[int, int] | list[int] | None) -> str:
    """"bf16", "tf32" or "fp32" for a run on ``device_type`` ("cuda" or "cpu") with the
    ``amp`` and ``tf32`` settings, on a GPU of compute ``capability`` (major, minor); None on
    CUDA counts as older than 8.0."""
    if device_type != "cuda":
        return "fp32"
    modern = capability is not None and tuple(capability) >= BF16_CAPABILITY
    if amp and modern:
        return "bf16"
    if tf32 and modern:
        return "tf32"
    return "fp32"


def cuda_problem(index: int | None, *, cuda_version: str | None, n_gpus: int,
                 visible: str | None, torch_version: str = "") -> str | None:
    """Why GPU ``index`` (None: any) cannot be used, or None when it can. cuda_version: torch's
    (torch.version.cuda; None for a CPU-only build); n_gpus: the GPUs torch can use; visible:
    CUDA_VISIBLE_DEVICES (None when unset); torch_version: for the message."""
    mask = (f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None
            else "CUDA_VISIBLE_DEVICES is not set")
    if cuda_version is None:
        return (f"this torch {torch_version} is built without CUDA (torch.version.cuda "
                f"is None): install a CUDA build of torch")
    if n_gpus == 0:
        return (f"no GPU is visible to torch (CUDA {cuda_version}; {mask}; does nvidia-smi "
                f"see a GPU and a working driver?)")
    if index is not None and index >= n_gpus:
        return (f"torch sees {n_gpus} GPU{'s' if n_gpus > 1 else ''} (cuda:0 to "
                f"cuda:{n_gpus - 1}; {mask})")
    return None
