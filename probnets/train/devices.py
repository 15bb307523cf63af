"""Device selection from a specification ``auto | cpu | cuda | cuda:N | mps``."""

import re

import torch

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a device specification into a :class:`torch.device`, failing clearly when it is
    unavailable.

    ``auto`` picks the first CUDA device when one is visible, else the CPU.
    """
    if not isinstance(spec, str) or not _DEVICE_PATTERN.match(spec):
        raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N, mps; got {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec}: no CUDA device is available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps: MPS is not available on this machine")
    return device
