"""What a run computes in, decided from plain values (no torch import: the sweep uses it to
check finished runs on workers that never load torch).

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
