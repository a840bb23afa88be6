"""Process-level CPU settings for training: thread count and the allocator.

Critic updates allocate and free activation tensors of tens of MB every step. glibc
returns blocks that large to the OS (mmap/munmap) and page-faults them back in on the
next step; raising its mmap and trim thresholds keeps them in the heap. Measured on
the 2-core target: 7.9 -> 9.6 critic updates/s (bench/ has the numbers).
"""

from __future__ import annotations

import ctypes
import sys

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_KEEP_BYTES = 1 << 30


def keep_large_allocations() -> bool:
    """Ask glibc to keep large freed blocks in the heap; False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _HEAP_KEEP_BYTES) == 1
        return ok and libc.mallopt(_M_TRIM_THRESHOLD, _HEAP_KEEP_BYTES) == 1
    except (OSError, AttributeError):  # musl or another libc
        return False


def tune_cpu(threads: int) -> None:
    torch.set_num_threads(threads)
    keep_large_allocations()


def bf16_supported() -> bool:
    """True where the CPU has native bf16 matmuls (AVX-512 BF16 or AMX)."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


def use_bf16(precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and bf16_supported())


def autocast(enabled: bool):
    """CPU autocast to bf16 for matmuls (a no-op context when disabled)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)
