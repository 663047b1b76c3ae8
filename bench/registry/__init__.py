"""Benchmark ociregistry against CNCF Distribution (Debian's `docker-registry`, or any other
Distribution binary given with `--reference`, such as a v3.0.0 built by hand) on this machine.

Both servers run side by side on 127.0.0.1 with their own temporary data folders, get the same
data, and face the same load generators in the same run, so the ratios do not depend on the
machine of the day. Run `python bench/registry_bench.py --help`; bench/README.md explains what
each figure means and how it is measured.

The package: `harness` (settings, tools, the two server processes, a server's processes and
their CPU from /proc), `content` (the seed image and blob uploads, monolithic and chunked),
`cases` (the measurements, and the pool of workers that times many requests), `report` (the
machine, the table, the JSON) and `__main__` (the command line). `bench/registry_bench.py` is
its entry point; the other bench/*.py scripts take these pieces from it rather than copy them.
"""
