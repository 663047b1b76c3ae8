"""The OCI conformance suite (src/ociregistry/conformance) against a freshly started server.

It runs as `python -m ociregistry.conformance` in a child process, exactly as an operator would
run it against any registry, in strict mode: our server claims every optional feature of the
spec (JSON errors, Range, referrers filters, deletion, mounts, sha512, _catalog), so none of
them may be skipped.
"""

from __future__ import annotations

from pathlib import Path

from support.conformance import MIN_TESTS, REGISTRY, run_suite, totals
from support.server import RunningServer


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
