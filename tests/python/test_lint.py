"""sqlfluff (jinja templater, no database) keeps the models in the house style."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sqlfluff_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "sqlfluff", "lint", "models", "tests/data", "--disable-progress-bar"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
