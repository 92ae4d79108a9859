"""Process-level settings that the runner applies before meta-training."""
from __future__ import annotations

import ctypes
import os

__all__ = ["tune_malloc"]


def tune_malloc() -> bool:
    """Keep freed buffers in glibc's heap instead of returning them to the system.

    Vmapped convolutions at meta-batch 32 allocate large buffers every iteration; by default
    glibc maps them with ``mmap`` and unmaps them on free, so each iteration page-faults them in
    again (DESIGN.md section 2: about 500k faults and 1.2 s of system time per iteration;
    1.35 s -> 0.58 s per step with this setting). ``mallopt(M_MMAP_MAX, 0)`` and
    ``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` do what ``MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=1073741824`` would. Returns whether it took effect (glibc only);
    ``METAGRAD_NO_MALLOC_TUNING=1`` turns it off.
    """
    if os.environ.get("METAGRAD_NO_MALLOC_TUNING"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
