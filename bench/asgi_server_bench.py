#!/usr/bin/env python3
"""uvicorn (uvloop, httptools: how `ociregistry serve` runs the app) against granian (a Rust
HTTP server for ASGI), on the same data folder, one after the other, same worker count.

Issue 15 asks to measure the ASGI server and adopt a faster one only if every test stays green.
This prints, for each server: `GET /v2/`, manifest GET and HEAD by tag with a Bearer token
(wrk, 32 connections; requests/s and the server's CPU per request, from /proc/PID/stat of its
process group), a 256 MiB monolithic upload and its download (curl; MB/s and CPU per MiB), and
the RSS/PSS of each process once idle. Access logs are off for both.

granian is not a dependency of the registry: `pip install granian` into the same environment
first. Run `python bench/asgi_server_bench.py` (about two minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from memory_bench import memory_of
from registry.harness import cpu_ticks, free_port, group_pids, group_stats

ADMIN_PASSWORD = secrets.token_urlsafe(12)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20


def log(message: str) -> None:
    print(f"[asgi] {message}", file=sys.stderr, flush=True)


def group_cpu(leader: int) -> float:
    return sum(cpu_ticks(fields) for _, fields in group_stats(leader)) / CLOCK_TICKS


class Running:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = int(argv[argv.index("--port") + 1])
        self.url = f"http://127.0.0.1:{self.port}"
        with log_path.open("ab") as out:
            self.process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited early; see {log_path}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def load(server: Running, path: str, headers: dict[str, str], method: str, seconds: int):
    """Requests/s and server CPU µs per request at 32 connections: wrk for GET, hey for HEAD
    (wrk waits for a body after a HEAD answer's Content-Length), as registry_bench.py does."""
    header_args = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    url = server.url + path
    if method == "HEAD":
        base = ["hey", "-m", "HEAD", "-c", "32", *header_args]
        warmup, measured = [*base, "-z", "1s", url], [*base, "-z", f"{seconds}s", url]
    else:
        base = ["wrk", "-t2", "-c32", "--timeout", "30s", *header_args]
        warmup, measured = [*base, "-d1s", url], [*base, f"-d{seconds}s", url]
    subprocess.run(warmup, capture_output=True, check=True)
    before = group_cpu(server.process.pid)
    output = subprocess.run(measured, capture_output=True, text=True, check=True).stdout
    cpu = group_cpu(server.process.pid) - before
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    if method == "HEAD":
        requests = sum(int(n) for n in re.findall(r"\[\d{3}\]\s+(\d+) responses", output))
    else:
        requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return rate, 1e6 * cpu / max(requests, 1)


def push_image(url: str, auth: tuple[str, str]) -> None:
    with httpx.Client(base_url=url, auth=auth, timeout=60) as client:
        layer = secrets.token_bytes(1024)
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        descriptors = []
        for body, media in ((config, "application/vnd.oci.image.config.v1+json"),
                            (layer, "application/vnd.oci.image.layer.v1.tar")):  # fmt: skip
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            response = client.post(
                "/v2/bench/app/blobs/uploads/", params={"digest": digest}, content=body,
                headers={"Content-Type": "application/octet-stream"},
            )  # fmt: skip
            response.raise_for_status()
            descriptors.append({"mediaType": media, "digest": digest, "size": len(body)})
        manifest = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptors[0],
             "layers": descriptors[1:]}
        ).encode()  # fmt: skip
        client.put(
            "/v2/bench/app/manifests/1.0", content=manifest, headers={"Content-Type": OCI_MANIFEST}
        ).raise_for_status()


def transfer(server: Running, blob: Path, digest: str, run: int) -> tuple[float, float, float]:
    """A monolithic upload and a download of `blob`: MB/s each, and CPU µs per MiB of both."""
    before = group_cpu(server.process.pid)
    answer = subprocess.run(
        ["curl", "-sS", "--http1.1", "-u", f"admin:{ADMIN_PASSWORD}", "-X", "POST",
         "--data-binary", f"@{blob}", "-H", "Expect:",
         "-H", "Content-Type: application/octet-stream", "-o", "/dev/stderr",
         "-w", "%{http_code} %{size_upload} %{time_total}",
         f"{server.url}/v2/bench/big{run}/blobs/uploads/?digest={digest}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    status, sent, seconds = answer.stdout.split()
    if status != "201":
        raise RuntimeError(f"upload answered {status}: {answer.stderr[:500]}")
    up = str(float(sent) / float(seconds))
    down = subprocess.run(
        ["curl", "-sS", "-f", "-u", f"admin:{ADMIN_PASSWORD}", "-o", "/dev/null",
         "-w", "%{speed_download}", f"{server.url}/v2/bench/big{run}/blobs/{digest}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cpu = group_cpu(server.process.pid) - before
    mib = 2 * blob.stat().st_size / MIB
    return float(up) / 1e6, float(down) / 1e6, 1e6 * cpu / mib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--blob-mib", type=int, default=256)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if shutil.which("granian") is None and not Path(sys.executable).with_name("granian").exists():
        parser.error("granian is needed: pip install granian")
    granian = shutil.which("granian") or str(Path(sys.executable).with_name("granian"))

    folder = Path(tempfile.mkdtemp(prefix="asgi-bench-"))
    data = folder / "data"
    env = {
        **os.environ,
        "OCIREGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "OCIREGISTRY_DATA_DIR": str(data),
        "OCIREGISTRY_ACCESS_LOG": "false",
        "OCIREGISTRY_TOKEN_TTL_SECONDS": "3600",
        "OCIREGISTRY_WORKERS": str(args.workers),
    }
    blob = folder / "blob"
    with blob.open("wb") as out:
        chunk = secrets.token_bytes(MIB)
        for _ in range(args.blob_mib):
            out.write(chunk)
    digest = hashlib.file_digest(blob.open("rb"), "sha256").hexdigest()
    results: dict[str, dict[str, str]] = {}
    try:
        servers = {
            "uvicorn": lambda port: [
                sys.executable, "-m", "ociregistry", "serve", "--port", str(port),
            ],
            "granian": lambda port: [
                granian, "--interface", "asgi", "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(args.workers), "--loop", "uvloop",
                "--http", "1", "--no-ws", "--log-level", "warning",
                "ociregistry.app:create_app_from_environment",
            ],
        }  # fmt: skip
        for run, (name, argv) in enumerate(servers.items()):
            log(f"{name}: starting")
            metrics = folder / f"metrics-{name}"
            metrics.mkdir()
            server = Running(
                name,
                argv(free_port()),
                {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
                folder / f"{name}.log",
            )
            try:
                auth = ("admin", ADMIN_PASSWORD)
                if run == 0:
                    subprocess.run(
                        [sys.executable, "-m", "ociregistry", "registry", "create", "bench",
                         "--public"],
                        env=env, check=True, capture_output=True,
                    )  # fmt: skip
                    push_image(server.url, auth)
                token = httpx.get(
                    f"{server.url}/auth/token",
                    params={"service": "ociregistry", "scope": "repository:bench/app:pull"},
                    auth=auth,
                ).json()["token"]
                bearer = {"Authorization": f"Bearer {token}", "Accept": OCI_MANIFEST}
                time.sleep(3)
                row = {}
                for process_pid in group_pids(server.process.pid):
                    values = memory_of(process_pid)
                    if values:
                        row.setdefault("idle RSS / PSS MiB", [])
                        row["idle RSS / PSS MiB"].append(
                            f"{values['Rss'] / MIB:.0f}/{values['Pss'] / MIB:.0f}"
                        )
                figures = {"idle RSS / PSS MiB": ", ".join(row.get("idle RSS / PSS MiB", []))}
                for label, path, headers, method in (
                    ("GET /v2/ (401)", "/v2/", {}, "GET"),
                    ("manifest GET by tag", "/v2/bench/app/manifests/1.0", bearer, "GET"),
                    ("manifest HEAD by tag", "/v2/bench/app/manifests/1.0", bearer, "HEAD"),
                ):
                    log(f"{name}: {label}")
                    rate, cpu = load(server, path, headers, method, args.seconds)
                    figures[label] = f"{rate:,.0f} req/s ({cpu:.0f} µs CPU)"
                log(f"{name}: {args.blob_mib} MiB upload and download")
                up, down, cpu = transfer(server, blob, "sha256:" + digest, run)
                figures[f"{args.blob_mib} MiB upload"] = f"{up:,.0f} MB/s"
                figures[f"{args.blob_mib} MiB download"] = f"{down:,.0f} MB/s"
                figures["transfer CPU per MiB"] = f"{cpu:,.0f} µs"
                results[name] = figures
            finally:
                server.stop()
        labels = list(results["uvicorn"])
        print("| case | uvicorn (uvloop, httptools) | granian | granian/uvicorn |")
        print("|---|---|---|---|")
        for label in labels:
            a, b = results["uvicorn"][label], results["granian"].get(label, "")
            ratio = ""
            numbers = [re.match(r"[\d,.]+", v) for v in (a, b)]
            if all(numbers) and "MiB" not in label:
                x, y = (float(m.group(0).replace(",", "")) for m in numbers)  # type: ignore[union-attr]
                ratio = f"{y / x:.2f}" if x else ""
            print(f"| {label} | {a} | {b} | {ratio} |")
    finally:
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
