#!/usr/bin/env python3
"""Benchmark ociregistry against CNCF Distribution (Debian's `docker-registry`, or any other
Distribution binary given with `--reference`, such as a v3.0.0 built by hand) on this machine.

Both servers run side by side on 127.0.0.1 with their own temporary data folders, get the same
data, and face the same load generators in the same run, so the ratios do not depend on the
machine of the day. Run `python bench/registry_bench.py --help`; bench/README.md explains what
each figure means and how it is measured.

The code is the package `bench/registry/` (`python -m registry` from bench/ runs it too): this
file is its entry point, with the same options.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
