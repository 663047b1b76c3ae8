"""Our OCI conformance suite (src/ociregistry/conformance) run against a server, as an operator
would run it against any registry: `python -m ociregistry.conformance` in a child process,
strict, signed in as the server's admin, into the registry `REGISTRY` (which the caller
creates), with a JUnit report to read the outcome from."""

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
    """The suite's run against `server` (`extra`: more of its options, such as `-m`), and its
    JUnit report, written to `junit`."""
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
    """The counts of a JUnit report: tests, failures, errors, skipped."""
    suite = report if report.tag == "testsuite" else report.find("testsuite")
    assert suite is not None
    return {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
