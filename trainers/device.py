"""The one rule that turns a config's `device` into a torch.device."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda if available, else cpu; asking for cuda without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but no CUDA device is available")
    return torch.device(device)
