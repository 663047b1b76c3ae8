"""The machine, its noise, and the report: the header, the table and the JSON."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import httpx

from .cases import Metric
from .harness import (
    BENCH_USER,
    NOISY_SHARE,
    RESULTS_PATH,
    Server,
    Settings,
    dpkg_version,
    first_line,
    log,
)


def machine_info() -> dict[str, object]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model,
        "memory_gib": round(memory_gib, 1),
        "kernel": platform.release(),
        "load_average": round(os.getloadavg()[0], 2),
    }


def tool_versions(servers: list[Server]) -> dict[str, str]:
    versions = {server.label: server.version() for server in servers}
    wrk = first_line(["wrk", "-v"]).split(" [")[0]
    curl = " ".join(first_line(["curl", "--version"]).split()[:2])
    versions["tools"] = (
        f"{wrk} (GET), hey {dpkg_version('hey')} (HEAD), {curl}, httpx {httpx.__version__}"
    )
    return versions


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (steal included: capacity we lost)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(max_seconds: float, window: float = 10.0) -> None:
    """Wait, up to `max_seconds`, for a `window` in which the CPUs are almost idle.

    Called while both servers sit idle, so what it sees is other processes: on a shared
    machine, a test run in another session would otherwise end up in the figures.
    """
    deadline = time.monotonic() + max_seconds
    capacity = window * len(os.sched_getaffinity(0))
    while True:
        before = machine_busy_seconds()
        time.sleep(window)
        share = (machine_busy_seconds() - before) / capacity
        if share < NOISY_SHARE:
            return
        if time.monotonic() >= deadline:
            log(f"the machine is still {share:.0%} busy; measuring anyway")
            return
        log(f"the machine is {share:.0%} busy; waiting for it to calm down")


class CpuWatch:
    """How much CPU other processes took while we measured: the noise in the figures.

    Everything the machine spent, from /proc/stat, less what this script and its tools (wrk,
    hey, curl) and the two servers spent. The other engineers' test runs on a shared box show
    up here; CPU per request in the JSON is the figure that holds up when this is high.
    """

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float, float]:
        machine = machine_busy_seconds()
        mine = sum(os.times()[:4])  # this process and its reaped children (wrk, hey, curl)
        servers = sum(server.cpu_seconds() for server in self.servers)
        return time.monotonic(), machine, mine, servers

    def other_share(self) -> float:
        """Other processes' CPU as a share of the machine's capacity over the run."""
        end = self._sample()
        elapsed, machine, mine, servers = (b - a for a, b in zip(self.start, end, strict=True))
        other = max(0.0, machine - mine - servers)
        return other / (elapsed * len(os.sched_getaffinity(0)))


def print_header(
    info: dict[str, object], versions: dict[str, str], servers: list[Server], settings: Settings
) -> None:
    """What ran, where and how: printed before the measurements, flushed so it shows first."""
    print("Registry benchmark: ociregistry (ours) vs CNCF Distribution (theirs)")
    print(
        f"machine : nproc={info['nproc']}, {info['cpu']}, {info['memory_gib']} GiB RAM, "
        f"Linux {info['kernel']}, load average {info['load_average']} before measuring"
    )
    descriptions = {server.label: server.description for server in servers}
    for label, version in versions.items():
        print(f"{label:<8}: {version}")
        if label in descriptions:
            print(f"{'':<8}  {descriptions[label]}")
    print(
        f"load    : {settings.load_seconds} s per run after a {settings.warmup_seconds} s "
        f"warm-up, {settings.load_threads} threads, {settings.load_connections} connections, "
        f"median of {settings.repetitions} runs"
    )
    print(
        f"blobs   : {settings.blob_mib} MiB; median of {settings.download_runs} downloads and of "
        f"{settings.transfer_runs} uploads, each of fresh random content; "
        f"chunked uploads in {settings.chunk_mib} MiB PATCHes"
    )
    print(
        f"uploads : {settings.upload_form}, the form every server here completes; 1 MB = 10^6 bytes"
    )
    if settings.pull_auth == "token":
        reads = "pull token for reads"
    else:
        reads = "anonymous reads (theirs: with an anonymous pull token)"
    print(
        f"auth    : both: Bearer tokens from our /auth/token, signed in as {BENCH_USER}, "
        f"{reads}, push token for writes; theirs verifies them with "
        "`ociregistry signing-cert` (rootcertbundle) and, for v3, `--jwks` (jwks)"
    )
    print(
        f"pushes  : {settings.pushes} images (1–4 KiB layer, config, OCI manifest), "
        f"{settings.push_concurrency} aiohttp workers with a connection each, "
        f"{settings.push_rounds} rounds alternating (medians)"
    )
    print(flush=True)


def print_table(metrics: list[Metric], other_share: float) -> None:
    print("ratio: ours/theirs for rates, theirs/ours for seconds: > 1 always means ours is better")
    print("cpu ratio: their server CPU / ours for the same work (> 1: ours needs less CPU)")
    header = (
        f"{'metric':<58} {'unit':>7} {'ours':>10} {'theirs':>10} {'ratio':>6} "
        f"{'target':>7} {'':<5} {'cpu ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    for metric in metrics:
        ratio = metric.ratio
        verdict = ""
        if ratio is not None:
            verdict = "ok" if ratio >= metric.target else "below"
        print(
            f"{metric.title:<58} {metric.unit:>7} {fmt(metric.values.get('ours')):>10} "
            f"{fmt(metric.values.get('theirs')):>10} {fmt(ratio, 2):>6} "
            f"{'≥' + str(metric.target):>7} {verdict:<5} {fmt(metric.cpu_ratio, 2):>9}"
        )
    print()
    for metric in metrics:
        ours = metric.details.get("ours", {})
        if "paired_ratios" in ours:
            print(
                f"{metric.key}: ratio per round {ours['paired_ratios']}, median "
                f"{ours['paired_ratio_median']}; client CPU per push "
                f"{ours['client_cpu_ms_per_push']} ms (ours), "
                f"{metric.details.get('theirs', {}).get('client_cpu_ms_per_push', '-')} ms (theirs)"
            )
    print(f"noise   : other processes used {other_share:.0%} of the CPUs during the run")
    if other_share > NOISY_SHARE:
        print("WARNING : the machine was busy; the figures are unreliable, run again when idle")


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def write_json(
    metrics: list[Metric],
    info: dict[str, object],
    versions: dict[str, str],
    servers: list[Server],
    settings: Settings,
    other_share: float,
) -> None:
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "other_processes_cpu_share": round(other_share, 3),
        "versions": versions,
        "servers": {server.label: server.description for server in servers},
        "settings": asdict(settings),
        "ratio_note": "ours/theirs for rates, theirs/ours for seconds; > 1 means ours is better",
        "metrics": [
            {
                "key": metric.key,
                "title": metric.title,
                "unit": metric.unit,
                "higher_is_better": metric.higher_is_better,
                "ours": metric.values.get("ours"),
                "theirs": metric.values.get("theirs"),
                "ratio": metric.ratio,
                "target": metric.target,
                "cpu_ratio": metric.cpu_ratio,
                "details": metric.details,
            }
            for metric in metrics
        ],
    }
    RESULTS_PATH.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {RESULTS_PATH}")
