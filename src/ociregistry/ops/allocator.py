"""How a worker's C allocator treats the buffers an upload's bytes arrive in.

A blob upload arrives as a stream of `bytes` objects of up to about 256 KiB (one socket read
each: uvloop reads that much, httptools makes a `bytes` of it), which live a few milliseconds
(until their batch is hashed and written) and are freed. glibc's malloc, left to its defaults,
serves such sizes from the top of its heap and gives that memory back to the kernel as soon as
128 KiB lie free there (`M_TRIM_THRESHOLD`), or from a fresh `mmap` for larger ones: either
way the next buffers land on pages the kernel must fault in and zero again. Measured with
`bench/upload_bench.py` (256 MiB blobs), that was 245 page faults per MiB of a chunked upload
(every byte on a fresh page) and 28 per MiB of a monolithic one; a plain ASGI app that only
drains a body spent 1.2 ms of CPU per MiB under uvicorn with the defaults and 0.35 ms without
the faults.

So each worker keeps up to `TRIM_THRESHOLD_BYTES` of freed heap for the next buffers and
serves everything below `MMAP_THRESHOLD_BYTES` (upload buffers, the 1 MiB reads of a blob
GET) from the heap: the pages an upload uses are
faulted in once per worker, not once per MiB. The memory kept is bounded by the threshold (the
worker's RSS may stay that much above its idle figure after an upload); larger objects still
go to `mmap` and back to the kernel when freed.

glibc only (`mallopt`); on another C library this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
# A socket read's buffer (at most 256 KiB) and a blob read's (1 MiB, `blobstore/filesystem.py`)
# stay on the heap. A fixed threshold ends glibc's own adjustment of it, which used to move
# 1 MiB reads onto the heap after the first one: at 1 MiB exactly, every blob GET mapped and
# faulted in each chunk again (1.0-1.25 ms of CPU per MiB instead of 0.4).
MMAP_THRESHOLD_BYTES = 4 << 20
TRIM_THRESHOLD_BYTES = 32 << 20  # about two uploads' batches in flight (4 MiB each, hashed
# and written one behind the other) kept for reuse


def keep_upload_buffers() -> bool:
    """Tune this process's allocator for upload buffers; whether the C library took it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    done = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and done
    if not done:
        log.debug("mallopt refused the upload buffer settings; the defaults stay")
    return done
