"""ociregistry on S3 against CNCF Distribution on S3, in one run, on the same S3 gateway.

Starts the test S3 server (tests/support/s3gateway.py: Ceph's RADOS Gateway on loopback), one
PostgreSQL cluster (tests/support/pgcluster.py) and three set-ups side by side, each with its
own bucket on that gateway:

- `ours`: one `ociregistry serve` (SQLite, `storage = s3://…`, blob GET answers 307);
- `ours3`: three instances on PostgreSQL and S3 behind nginx with deploy/nginx-ociregistry.conf
  (tests/support/cluster.py renders it);
- `theirs`: CNCF Distribution (Debian's 2.8.2, or `--reference BINARY`) with its `s3` driver,
  redirects on (its blob GET answers 307 to a presigned URL too).

All three use token auth from our token service, as bench/registry_bench.py does on the
filesystem: its harness, seed data and cases are reused here (wrk/hey load, curl uploads, httpx
chunked uploads, the small pushes). Blob GET follows the redirect (`curl -L`); the gateway's own
GET of the same object through a presigned URL is printed beside it. Run as root on a machine
where scripts/test has run (Ceph, nginx, PostgreSQL installed):

    .venv/bin/python bench/s3_bench.py [--blob-mib 32] [--load-seconds 3] [--pushes 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import types
from dataclasses import asdict
from functools import partial
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

import registry.__main__ as _main  # noqa: E402
from registry import cases, content, harness, report  # noqa: E402
from support.cluster import INSTANCES, Nginx  # noqa: E402
from support.pgcluster import URL_ENV, PostgresCluster  # noqa: E402
from support.s3gateway import S3Gateway  # noqa: E402

# The registry benchmark's parts, under one name: this script runs its cases on S3.
rb = types.SimpleNamespace(
    **{
        name: value
        for module in (harness, content, cases, report, _main)
        for name, value in vars(module).items()
        if not name.startswith("__")
    }
)

RESULTS_PATH = BENCH_DIR / "results" / "s3-latest.json"
LABELS = ("ours", "ours3", "theirs")


# --------------------------------------------------------------------------------------------
# The three set-ups
# --------------------------------------------------------------------------------------------


class OurS3Server(rb.OurServer):
    """One instance, SQLite in its data folder, blobs in `s3://BUCKET/registry`."""

    def __init__(self, workdir: Path, workers: int, env: dict[str, str], label: str = "ours"):
        self.label = label
        super().__init__(workdir, workers)
        self.env.update(env)
        self.description = f"{workers} uvicorn workers, no access log, " + ", ".join(
            f"{key}={value}" for key, value in env.items() if key.startswith("OCIREGISTRY_")
        )


class OurCluster(rb.Server):
    """Three instances on one PostgreSQL database and one bucket, behind nginx (round-robin)."""

    label = "ours3"

    def __init__(self, workdir: Path, workers: int, env: dict[str, str]) -> None:
        super().__init__(workdir)
        self.instances = [
            OurS3Server(self.workdir, workers, env, label=f"instance-{n}") for n in range(INSTANCES)
        ]
        self.nginx = Nginx(self.workdir / "nginx", [i.port for i in self.instances])
        self.url = self.nginx.url
        self.description = (
            f"{INSTANCES} instances × {workers} workers on PostgreSQL and S3, nginx with "
            "deploy/nginx-ociregistry.conf (round-robin, no buffering)"
        )

    def start(self) -> None:
        for n, instance in enumerate(self.instances):  # the first makes schema, key, user
            rb.log(f"  starting {instance.label} on {instance.url}")
            if n:  # the user and the registry live in the shared database already
                instance.prepare_namespace = lambda: None  # type: ignore[method-assign]
            instance.start()
        self.credentials = self.instances[0].credentials
        self.nginx.start()

    def stop(self) -> None:
        self.nginx.stop()
        for instance in self.instances:
            instance.stop()

    def cpu_seconds(self) -> float:
        """All three instances' CPU (nginx's is left out, as a load balancer would run apart)."""
        return sum(instance.cpu_seconds() for instance in self.instances)

    def version(self) -> str:
        return self.instances[0].version() + ", nginx"

    def log_tail(self) -> str:
        return "\n".join(f"-- {i.label}\n{i.log_tail()}" for i in self.instances)


class DistributionS3(rb.Distribution):
    """Distribution with its `s3` driver on the gateway, redirects on, token auth from ours."""

    def __init__(
        self, workdir: Path, cache: str, token_server: rb.OurServer, binary: str, s3: dict
    ) -> None:
        super().__init__(workdir, cache, token_server, binary)
        self.s3 = s3
        # Go's SDK panics at start when AWS_CA_BUNDLE is set (S3-TEST-SERVER.md).
        self.env.pop("AWS_CA_BUNDLE", None)
        self.description = (
            f"s3 driver (bucket {s3['bucket']}, redirects on), "
            f"storage.cache.blobdescriptor: {cache}, GOMAXPROCS = nproc, token auth against "
            "ours, no access log"
        )

    def config(self, realm: str, service: str) -> str:
        text = super().config(realm, service)
        filesystem = f"  filesystem:\n    rootdirectory: {self.data_dir}\n"
        s3 = (
            "  s3:\n"
            "    region: us-east-1\n"
            f"    regionendpoint: {self.s3['endpoint']}\n"
            f"    bucket: {self.s3['bucket']}\n"
            f"    accesskey: {self.s3['accesskey']}\n"
            f"    secretkey: {self.s3['secretkey']}\n"
            "    rootdirectory: /registry\n"
            "    secure: false\n"
            "    forcepathstyle: true\n" + ("" if self.is_v3 else "    v4auth: true\n")
        )
        assert filesystem in text
        text = text.replace(filesystem, s3)
        return text.replace("  redirect:\n    disable: true\n", "")


# --------------------------------------------------------------------------------------------
# Blob GET through the redirect, and the gateway's own speed
# --------------------------------------------------------------------------------------------


def redirected_download(bench: rb.Bench, server: rb.Server, details: rb.Details) -> float:
    """One `curl -L` of the big blob: the registry's 307 plus the download from the gateway,
    all inside curl's `time_total`; median MB/s. curl drops Authorization on the other port."""
    url = f"{server.url}/v2/{rb.APP_REPO}/blobs/{bench.seed.big_digest}"
    headers = rb.pull_headers(bench, server)
    first = [*rb.curl_base(headers), "-o", "/dev/null", "-w", "%{http_code}", url]
    details["first_answer"] = rb.run_tool(first).strip()  # 307 on all three
    argv = [*rb.curl_base(headers), "-L", "-o", "/dev/null", url]
    speeds = []
    with rb.server_cpu(server, details):
        for _ in range(bench.settings.download_runs):
            status, seconds, _, size = rb.curl_request(argv)
            if status != 200 or size != bench.settings.blob_mib * rb.MIB:
                raise rb.BenchError(f"{server.label}: blob GET answered {status} with {size} B")
            speeds.append(size / seconds / rb.MB)
    details["runs"] = [round(speed, 1) for speed in speeds]
    return statistics.median(speeds)


def gateway_download(gateway: S3Gateway, bucket: str, key: str, runs: int, size: int) -> float:
    """The gateway alone: curl of a presigned GET URL of the same object; median MB/s."""
    url = gateway.client().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600
    )
    speeds = []
    for _ in range(runs):
        status, seconds, _, got = rb.curl_request(["curl", "--silent", "-o", "/dev/null", url])
        if status != 200 or got != size:
            raise rb.BenchError(f"gateway GET answered {status} with {got} bytes")
        speeds.append(got / seconds / rb.MB)
    return statistics.median(speeds)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def run_measurements(bench: rb.Bench) -> list[rb.Metric]:
    settings = bench.settings
    conns = settings.load_connections
    blob = f"{settings.blob_mib} MiB"
    manifest = f"/v2/{rb.APP_REPO}/manifests/{rb.SEED_TAG}"
    tags = len(bench.seed.tags)
    load_tests = [
        ("manifest_get", f"manifest GET by tag, {conns} conns (wrk)", manifest, "GET"),
        ("manifest_head", f"manifest HEAD by tag, {conns} conns (hey)", manifest, "HEAD"),
        ("tags_list", f"GET tags/list, {tags} tags, {conns} conns (wrk)",
         f"/v2/{rb.APP_REPO}/tags/list", "GET"),
    ]  # fmt: skip
    metrics: list[rb.Metric] = []
    for turn, (key, title, path, method) in enumerate(load_tests):
        metric = rb.Metric(key, title, "req/s", higher_is_better=True, target=2.0)
        bench.measure(metric, turn, partial(rb.load_test, bench, path, method))
        metrics.append(metric)

    title = f"blob GET {blob}, via the 307 (curl -L)"
    download = rb.Metric("blob_get", title, "MB/s", True, 1.0)
    bench.measure(download, 1, partial(redirected_download, bench))
    metrics.append(download)

    mono = rb.Metric("upload_monolithic", f"monolithic upload {blob} (curl)", "MB/s", True, 1.2)
    rb.median_of_runs(bench, mono, rb.monolithic_upload)
    metrics.append(mono)

    title = f"chunked upload {blob}, {settings.chunk_mib} MiB PATCHes (httpx)"
    chunked = rb.Metric("upload_chunked", title, "MB/s", True, 1.2)
    rb.median_of_runs(bench, chunked, rb.chunked_upload)
    metrics.append(chunked)

    title = f"{settings.pushes} small image pushes, concurrency {settings.push_concurrency}"
    pushes = rb.Metric("small_pushes", title, "seconds", higher_is_better=False, target=1.2)
    bench.measure(pushes, 0, partial(rb.small_pushes, bench))
    metrics.append(pushes)
    return metrics


def ratio(metric: rb.Metric, label: str) -> float | None:
    """label against theirs, > 1 meaning ours is better (rates: ours/theirs; seconds: inverse)."""
    ours, theirs = metric.values.get(label), metric.values.get("theirs")
    if not ours or not theirs:
        return None
    return ours / theirs if metric.higher_is_better else theirs / ours


def print_table(metrics: list[rb.Metric], gateway_mbs: float, other_share: float) -> None:
    print("ratio 1 / ratio 3: ours / ours×3 against theirs; ours/theirs for rates, theirs/ours")
    print("for seconds: > 1 always means ours is better")
    header = (
        f"{'metric':<50} {'unit':>7} {'ours':>9} {'ours×3':>9} {'theirs':>9} "
        f"{'ratio 1':>7} {'ratio 3':>7} {'target':>6}"
    )
    print(header)
    print("-" * len(header))
    for metric in metrics:
        print(
            f"{metric.title:<50} {metric.unit:>7} "
            + " ".join(f"{rb.fmt(metric.values.get(label)):>9}" for label in LABELS)
            + f" {rb.fmt(ratio(metric, 'ours'), 2):>7} {rb.fmt(ratio(metric, 'ours3'), 2):>7}"
            + f" {'≥' + str(metric.target):>6}"
        )
    print(f"{'the gateway alone: GET of the same object, presigned':<50} {'MB/s':>7} "
          f"{gateway_mbs:>9,.1f}")  # fmt: skip
    print()
    print(f"noise   : other processes used {other_share:.0%} of the CPUs during the run")
    if other_share > rb.NOISY_SHARE:
        print("WARNING : the machine was busy; the figures are unreliable, run again when idle")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blob-mib", type=int, default=32, help="blob size (default 32)")
    parser.add_argument("--load-seconds", type=int, default=3, help="wrk/hey run (default 3)")
    parser.add_argument("--runs", type=int, default=3, help="downloads and uploads (median, 3)")
    parser.add_argument("--pushes", type=int, default=200, help="small pushes (default 200)")
    parser.add_argument("--tags", type=int, default=100, help="tags tags/list reads (100)")
    parser.add_argument("--repetitions", type=int, default=1, help="load runs per figure (1)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per instance")
    parser.add_argument("--reference", default="docker-registry", metavar="BINARY")
    parser.add_argument("--theirs-cache", choices=["inmemory", "none"], default="inmemory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rb.raise_on_termination()
    rb.ensure_tools()
    settings = rb.Settings(
        blob_mib=args.blob_mib, chunk_mib=8, load_seconds=args.load_seconds, warmup_seconds=1,
        load_threads=2, load_connections=32, transfer_runs=args.runs, download_runs=args.runs,
        pushes=args.pushes, push_concurrency=8, extra_tags=args.tags - 1,
        ours_workers=args.workers, theirs_cache=args.theirs_cache, pull_auth="token",
        reference=args.reference, repetitions=args.repetitions, download_streams=8,
    )  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="s3-bench-"))
    rb.log("starting the S3 gateway and PostgreSQL")
    gateway = S3Gateway(workdir / "gateway").start()
    postgres = PostgresCluster().start()
    servers: list[rb.Server] = []
    try:
        s3_env = gateway.environment()
        for name in LABELS:
            gateway.create_bucket(f"bench-{name}")
        ours = OurS3Server(
            workdir, args.workers, {**s3_env, "OCIREGISTRY_STORAGE": "s3://bench-ours/registry"}
        )
        cluster_env = {
            **s3_env,
            "OCIREGISTRY_STORAGE": "s3://bench-ours3/registry",
            URL_ENV: postgres.create_database("bench"),
        }
        cluster = OurCluster(workdir, args.workers, cluster_env)
        theirs = DistributionS3(
            workdir, args.theirs_cache, ours, args.reference,
            {"endpoint": gateway.endpoint_url, "bucket": "bench-theirs",
             "accesskey": s3_env["AWS_ACCESS_KEY_ID"],
             "secretkey": s3_env["AWS_SECRET_ACCESS_KEY"]},
        )  # fmt: skip
        for server in (ours, cluster, theirs):  # ours first: it is theirs' token server
            rb.log(f"starting {server.label} on {server.url}")
            servers.append(server)
            server.start()
        settings = rb.Settings(
            **{**asdict(settings), "upload_form": rb.choose_upload_form(servers)}
        )
        seed = rb.make_seed(workdir, settings)
        for server in servers:
            rb.log(f"seeding {server.label}")
            rb.seed_server(server, seed, settings.upload_form)
        info, versions = rb.machine_info(), rb.tool_versions(servers)
        rb.print_header(info, versions, servers, settings)
        print(f"s3      : Ceph RADOS Gateway on {gateway.endpoint_url}, one bucket per set-up")
        print(flush=True)
        watch = rb.CpuWatch(servers)
        metrics = run_measurements(rb.Bench(servers, settings, seed, workdir))
        key = "registry/blobs/sha256/" + seed.big_digest.split(":")[1][:2] + "/"
        key += seed.big_digest.split(":")[1]
        gateway_mbs = gateway_download(
            gateway, "bench-ours", key, args.runs, settings.blob_mib * rb.MIB
        )
        other_share = watch.other_share()
        print_table(metrics, gateway_mbs, other_share)
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_PATH.write_text(json.dumps({
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info, "versions": versions,
            "settings": asdict(settings), "other_processes_cpu_share": round(other_share, 3),
            "gateway_get_mb_s": gateway_mbs,
            "metrics": [{"key": m.key, "title": m.title, "unit": m.unit, "values": m.values,
                         "ratio_ours": ratio(m, "ours"), "ratio_ours3": ratio(m, "ours3"),
                         "target": m.target, "details": m.details} for m in metrics],
        }, indent=2) + "\n")  # fmt: skip
        rb.log(f"wrote {RESULTS_PATH}")
        return 0
    except KeyboardInterrupt:
        rb.log("interrupted: stopping the servers")
        return 130
    except rb.BenchError as error:
        rb.log(f"failed: {error}")
        for server in servers:
            rb.log(f"{server.label} log:\n{server.log_tail()}")
        return 1
    finally:
        for server in reversed(servers):
            server.stop()
        postgres.stop()
        gateway.stop()
        if args.keep:
            rb.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
