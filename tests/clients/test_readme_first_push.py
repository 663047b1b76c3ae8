"""The README's "Push a first image" commands, run as written against a registry of their own:
a newcomer copying them on a machine without internet access gets an image pushed and pulled.

Only what cannot be the same here is adapted: the registry's address (a free port instead of
5000), the data folder (`OCIREGISTRY_DATA_DIR` instead of the folder `scripts/serve` runs in),
the `ociregistry` command (this test's Python), and the password `docker login` would ask for
at the terminal (given on stdin).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from clienttools import find_tool, unavailable

from support.server import ADMIN_PASSWORD, RunningServer

README = Path(__file__).resolve().parents[2] / "README.md"


def first_push_commands() -> list[str]:
    """The shell block under the README's "## Push a first image" heading."""
    text = README.read_text()
    section = text[text.index("## Push a first image") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's first-push section has no sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_first_push_works_offline(tmp_path: Path) -> None:
    docker = find_tool("docker", "OCIREGISTRY_DOCKER")
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    if subprocess.run([docker, "version"], env=env, capture_output=True).returncode != 0:
        unavailable("the docker daemon does not answer")
    commands = first_push_commands()
    assert any(c.startswith("docker push ") for c in commands), commands
    assert any(c.startswith("docker pull ") for c in commands), commands
    assert not any(re.search(r"docker (pull|tag) busybox", c) for c in commands), (
        "the first push must build its image, not assume one from the internet"
    )
    server = RunningServer(tmp_path / "data").start()
    work = tmp_path / "work"
    work.mkdir()
    image = f"{server.address}/team-a/hello:1.0"
    try:
        for command in commands:
            line = command.replace("127.0.0.1:5000", server.address)
            line = line.replace(".venv/bin/ociregistry", f"{sys.executable} -m ociregistry")
            stdin = None
            if line.startswith("docker login"):
                line += " --password-stdin"
                stdin = ADMIN_PASSWORD + "\n"
            line = re.sub(r"^docker ", f"{docker} ", line)
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", line],
                cwd=work,
                input=stdin,
                capture_output=True,
                text=True,
                env={**env, "OCIREGISTRY_DATA_DIR": str(server.data_dir)},
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        inspected = subprocess.run(
            [docker, "image", "inspect", image], env=env, capture_output=True, text=True
        )
        assert inspected.returncode == 0, inspected.stderr
        tags = server.cli("tag", "list", "team-a", "hello").stdout
        assert "1.0" in tags, tags
    finally:
        subprocess.run([docker, "rmi", "-f", image], env=env, capture_output=True)
        server.kill()
