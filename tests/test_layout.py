"""The layering of docs/design.md §2: the library stands alone."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


def test_pairwise_and_the_job_import_no_scipy_stats_or_pandas():
    """scipy.stats costs half a second to import and pandas a quarter (docs/design.md §2,
    rule 6): the q-values are computed by `repalign.results.benjamini_hochberg`, not by scipy's,
    and the table is assembled from Arrow buffers (`repalign.arrow_rows`), not by pyarrow's
    converters, which import pandas."""
    code = (
        "import sys, repalign, jobs.alignment\n"
        "repalign.pairwise({'a': [[0.0], [1.0], [3.0]], 'b': [[1.0], [0.0], [2.0]]})\n"
        "print(*(m in sys.modules for m in ('scipy.linalg', 'scipy.stats', 'pandas')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]


def test_import_repalign_loads_functions_and_submodules_when_first_used():
    code = (
        "import sys, repalign\n"
        "print('scipy' in sys.modules, repalign.cka.__name__, repalign.measures.__name__,\n"
        "      repalign.errors.RepalignError.__name__, 'pairwise' in dir(repalign))\n"
        "try:\n"
        "    repalign.no_such_thing\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "False cka repalign.measures RepalignError True",
        "module 'repalign' has no attribute 'no_such_thing'",
    ]


@pytest.mark.parametrize(
    ("command", "answer"),
    [(["--help"], "usage"), (["ls", "{store}"], "m.l"), (["validate", "{store}"], "0 errors")],
)
def test_quick_commands_import_no_heavy_framework(command, answer, tmp_path):
    """`repalign --help`, `ls` and `validate` answer without importing torch, Ray or MLflow
    (seconds of start-up each), the job commands included in the parser."""
    from repalign.store import write_representation

    write_representation(tmp_path / "store", "m.l", np.arange(4), np.eye(4, dtype=np.float32))
    args = [arg.format(store=tmp_path / "store") for arg in command]
    code = (
        "import sys\nfrom repalign.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted({'torch', 'ray', 'mlflow'} & set(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert answer in done.stdout


def test_the_logging_child_imports_no_plotting(tmp_path):
    """A small job waits for its logging child (`jobs.uploader`), which logs the heatmaps the
    command drew: reading and logging tables must not import matplotlib (0.4 s) or SciPy's
    clustering. The child is run to the point where it waits for its request."""
    code = (
        "import sys, jobs.uploader\n"
        "jobs.uploader.main('run')\n"
        "print(sorted({'matplotlib', 'scipy.cluster', 'mlflow'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert done.stdout.strip().splitlines()[-1] == "['mlflow']", done.stderr


def test_the_service_submits_jobs_without_importing_them():
    """docs/design.md §2: services → jobs only by submission (the `repalign` command line)."""
    for path in (LIBRARY.parent / "services").rglob("*.py"):
        for module in imported_modules(path):
            assert module.split(".")[0] != "jobs", (path, module)


def test_the_slowest_modules_named_for_scheduling_are_test_modules():
    """`make test` hands modules to its workers in `SLOWEST_MODULES` order: a name that is not
    a module here (a typo, a module renamed) would silently drop out of that order."""
    from tests.conftest import SLOWEST_MODULES

    modules = {path.stem for path in Path(__file__).parent.glob("test_*.py")}
    assert set(SLOWEST_MODULES) <= modules, set(SLOWEST_MODULES) - modules
    assert len(set(SLOWEST_MODULES)) == len(SLOWEST_MODULES)
