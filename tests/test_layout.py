"""The layering of docs/design.md §2: the library stands alone."""

import ast
import subprocess
import sys
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent.parent / "repalign"


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_library_never_imports_jobs_or_services():
    for path in LIBRARY.rglob("*.py"):
        for module in imported_modules(path):
            assert module.split(".")[0] not in {"jobs", "services"}, (path, module)


def test_only_the_tracking_module_imports_mlflow():
    for path in LIBRARY.rglob("*.py"):
        if path.name != "tracking.py":
            for module in imported_modules(path):
                assert module.split(".")[0] != "mlflow", (path, module)


def test_importing_repalign_does_not_import_heavy_frameworks():
    heavy = "{'torch', 'ray', 'mlflow', 'sklearn'}"
    code = f"import sys, repalign; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_service_submits_jobs_without_importing_them():
    """docs/design.md §2: services → jobs only by submission (the `repalign` command line)."""
    for path in (LIBRARY.parent / "services").rglob("*.py"):
        for module in imported_modules(path):
            assert module.split(".")[0] != "jobs", (path, module)
