"""The package's layering, as declared in pyproject.toml (`[tool.importlinter]`), holds: no
package imports one above it. Run here too, so that a broken layer shows in pytest's report."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    program = Path(sys.executable).parent / "lint-imports"
    command = str(program) if program.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is missing: pip install -e '.[test]'"
    return subprocess.run(
        [command, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_no_package_imports_one_above_it() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_is_reported(tmp_path: Path) -> None:
    """The check has teeth: with two layers swapped, the imports that now run upwards (catalog
    and content use the database) are named."""
    config = tmp_path / "swapped.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["ociregistry"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "swapped"\ntype = "layers"\n'
        'containers = ["ociregistry"]\nlayers = ["db", "catalog"]\n'
    )
    result = lint_imports("--config", str(config))
    assert result.returncode != 0
    assert "ociregistry.catalog.images -> ociregistry.db.database" in result.stdout
