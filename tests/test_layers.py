"""The layering contract of ``pyproject.toml`` (``[tool.importlinter]``), run as part of the suite:
the command line on top and imported by nothing, the gateway and the worker independent of each
other, then the data plane, the intent classifier and ``shared`` below both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.stack import ROOT


def test_the_import_layers_contract_is_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
