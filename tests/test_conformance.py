"""The OCI conformance suite (src/ociregistry/conformance) against a freshly started server.

It runs as `python -m ociregistry.conformance` in a child process, exactly as an operator would
run it against any registry, in strict mode: our server claims every optional feature of the
spec (JSON errors, Range, referrers filters, deletion, mounts, sha512, _catalog), so none of
them may be skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from support.server import RunningServer

REGISTRY = "conformance"
NAMESPACE = f"{REGISTRY}/repo"
CROSSMOUNT_NAMESPACE = f"{REGISTRY}/crossmount"
SUITE_TIMEOUT_SECONDS = 900
#: Fewer tests than this means the suite did not really run (collection went wrong).
MIN_TESTS = 80


def run_suite(
    server: RunningServer, junit: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], ET.Element]:
    # Only our settings: an OCI_* variable of the caller's shell must not change the run.
    env = {name: value for name, value in os.environ.items() if not name.startswith("OCI_")}
    # A mount without `from` finds the blob in any repository the caller may pull: 201.
    env["OCI_AUTOMATIC_CROSSMOUNT"] = "1"
    # Signed in: the suite goes through the token flow (401, token endpoint, Bearer).
    env["OCI_USERNAME"], env["OCI_PASSWORD"] = server.admin
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ociregistry.conformance",
            "--url",
            server.url,
            "--namespace",
            NAMESPACE,
            "--crossmount-namespace",
            CROSSMOUNT_NAMESPACE,
            "--strict",
            "--junitxml",
            str(junit),
            "-q",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=SUITE_TIMEOUT_SECONDS,
    )
    assert junit.exists(), f"no JUnit report\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    return result, ET.parse(junit).getroot()


def totals(report: ET.Element) -> dict[str, int]:
    suite = report if report.tag == "testsuite" else report.find("testsuite")
    assert suite is not None
    return {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}


def test_conformance_suite_passes(fresh_server: RunningServer, tmp_path: Path) -> None:
    fresh_server.create_registry(REGISTRY)
    result, report = run_suite(fresh_server, tmp_path / "junit.xml")
    counts = totals(report)
    summary = f"{counts}\n{result.stdout[-20000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"conformance suite failed: {summary}"
    assert counts["failures"] == 0 and counts["errors"] == 0, summary
    assert counts["tests"] >= MIN_TESTS, summary
    skipped = [
        case.get("name") for case in report.iter("testcase") if case.find("skipped") is not None
    ]
    assert not skipped, f"strict run skipped {skipped}: {summary}"


def test_conformance_categories_can_be_selected(
    fresh_server: RunningServer, tmp_path: Path
) -> None:
    """`-m content_discovery` runs that category only (what `pytest -m` users rely on)."""
    fresh_server.create_registry(REGISTRY)
    result, report = run_suite(fresh_server, tmp_path / "junit.xml", "-m", "content_discovery")
    assert result.returncode == 0, f"{result.stdout[-10000:]}\n{result.stderr[-3000:]}"
    modules = {case.get("classname", "").rpartition(".")[2] for case in report.iter("testcase")}
    assert modules == {"test_content_discovery"}, modules
    assert totals(report)["tests"] >= 10
