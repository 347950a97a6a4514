"""The ``repalign`` command line.

Exit codes: 0 success, 1 a check found problems (``validate``), 2 bad usage or bad input.
The library's own commands are defined here; ``jobs`` and ``services`` contribute theirs
through the ``repalign.commands`` entry point group, so the library never imports them.
"""

import argparse
import atexit
import logging
import os
import signal
import sys
from importlib.metadata import entry_points

from repalign import __version__
from repalign.errors import RepalignError


def build_parser():
    parser = argparse.ArgumentParser(
        prog="repalign",
        description="Measure how alike the representations of many models are.",
    )
    parser.add_argument("--version", action="version", version=f"repalign {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    zoo = commands.add_parser("zoo", help="the built-in model zoos").add_subparsers(
        dest="zoo_command", required=True, metavar="ZOO_COMMAND"
    )
    build = zoo.add_parser(
        "build",
        help="train or run the models of a preset and write their embeddings to a store",
        description="Presets: digits (default; torch MLPs and CNNs trained on scikit-learn's "
        "digits, several seeds, untrained controls), digits-small (for tests), minilm (the "
        "MiniLM sentence encoder of the optional 'minilm' extra), synth (synthetic "
        "representations with a known alignment structure, streamed to disk).",
    )
    build.add_argument("--store", required=True, help="store folder to write into")
    build.add_argument(
        "--preset", default="digits", choices=["digits", "digits-small", "minilm", "synth"]
    )
    build.add_argument(
        "--augment", type=int, default=0, help="digits: extra augmented samples (shifts, noise)"
    )
    build.add_argument("--models", type=int, help="synth: number of models")
    build.add_argument("--dim", type=int, help="synth: width of each representation")
    build.add_argument("--rows", type=int, help="synth: number of samples")
    build.add_argument("--seed", type=int, help="synth: random seed")
    build.add_argument("--sentences", type=int, help="minilm: number of sentences")
    build.add_argument("--overwrite", action="store_true", help="replace existing names")
    build.set_defaults(run=_zoo_build)

    ingest = commands.add_parser(
        "ingest",
        help="write arrays (.npy, .npz, .pt, .parquet, or a folder of them) into a store",
        description="Each array becomes a representation named after its file (and key, for "
        ".npz files and dicts of tensors). Ids come from --ids, from a Parquet input's "
        "sample_id column, or from the row order.",
    )
    ingest.add_argument("store", help="store folder (created if missing)")
    ingest.add_argument("input", help="a file or a folder of files")
    ingest.add_argument("--name", help="representation name, for an input with one array")
    ingest.add_argument("--ids", help="file of sample ids (.npy, .parquet, or one per line)")
    ingest.add_argument("--shard-rows", type=int, help="rows per Parquet shard")
    ingest.add_argument("--overwrite", action="store_true", help="replace existing names")
    ingest.set_defaults(run=_ingest)

    validate = commands.add_parser(
        "validate",
        help="check a store's files, hashes, dimensions, ids and values",
        description="Checks every shard against its manifest (sha256, rows, dimension), reads "
        "every row (NaN/Inf, duplicate ids), and compares ids across representations. Exits "
        "1 when it finds an error.",
    )
    validate.add_argument("store")
    validate.set_defaults(run=_validate)

    ls = commands.add_parser("ls", help="list the representations of a store")
    ls.add_argument("store")
    ls.set_defaults(run=_ls)

    ui = commands.add_parser(
        "ui",
        help="open MLflow's UI on the runs the jobs logged, and print its address",
        description="Serve MLflow's UI on 127.0.0.1 until interrupted (Ctrl-C), over the "
        "tracking store the jobs log to: --tracking-uri, else $MLFLOW_TRACKING_URI, else "
        "sqlite:///mlflow.db in the working folder. MLflow 3 opens in its GenAI view: choose "
        "'Model training' in the switch at the top of its sidebar (the browser remembers it), "
        "then an experiment, to see its runs table, with their names, tags and metrics, and "
        "its charts. A tracking server (http://...) serves its own UI: its address is "
        "printed.",
    )
    ui.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
        "in the working folder)",
    )
    ui.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    ui.set_defaults(run=_ui)

    for command in entry_points(group="repalign.commands"):
        command.load()(commands)  # jobs and services add their commands (docs/design.md §2)
    return parser


def run():
    """The ``repalign`` command (``[project.scripts]``, ``python -m repalign``): `main`, and
    then the end of the process without tearing its modules down.

    When a command returns, Python runs every exit handler (Ray's shutdown, progress bars'
    and the logging module's flushes; the threads are joined before them), then clears every
    module and collects every object. That last part takes a job command, which has imported
    matplotlib, SciPy, pyarrow and pydantic, about 0.26 s: a tenth of a small job. `_end_now`
    is registered before the command imports the libraries it uses, so it runs after all of
    their handlers (the last registered runs first), and ends the process there; the logging
    module, imported before it, it shuts down itself. A command that raises is left to
    Python's ordinary exit, which prints its traceback.
    """
    status = []
    atexit.register(_end_now, status)
    status.append(main())
    sys.exit(status[0])


def _end_now(status):
    if status:
        logging.shutdown()  # its handler was registered before ours when logging was imported
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status[0])


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args) or 0
        sys.stdout.flush()  # a reader that went away shows here, not in an exit handler
        return status
    except RepalignError as exc:
        print(f"repalign {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # whoever read the output stopped early (`repalign ls | head -1`): what the command
        # writes to disk is done by then (a pipe's output is buffered until the end); leave
        # without a traceback, the rest of the output going nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _zoo_build(args):
    from repalign.zoo import build_zoo

    options = {k: getattr(args, k) for k in ("models", "dim", "rows", "seed", "sentences")}
    options = {k: v for k, v in options.items() if v is not None}
    names = build_zoo(
        args.store, args.preset, augment=args.augment, overwrite=args.overwrite, **options
    )
    print(f"wrote {len(names)} representations to {args.store}")


def _ingest(args):
    from repalign.store.ingest import ingest

    names = ingest(
        args.store,
        args.input,
        name=args.name,
        ids=args.ids,
        shard_rows=args.shard_rows,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(names)} representations to {args.store}: {', '.join(names)}")
    _warn_unusable(args.store, names)


def _warn_unusable(path, names):
    """Say what the manifests of the ``names`` just written tell against a job: rows that are
    not finite, and other rows than most of the store's other representations."""
    from collections import Counter

    from repalign.store import open_store

    store = open_store(path)
    for name in names:
        if reason := store[name].unusable():
            print(f"warning: {reason}: jobs leave it out (`repalign validate` shows the first)",
                  file=sys.stderr)  # fmt: skip

    def sample_ids(name):
        manifest = store[name].manifest
        return manifest["rows"], manifest.get("ids_sha256")

    # compared with the sample ids most of the others share, not with one that may be the odd one
    others = [name for name in store.select() if name not in names]
    usual = Counter(map(sample_ids, others)).most_common(1)
    reference = [next(name for name in others if sample_ids(name) == usual[0][0])] if usual else []
    for difference in store.misaligned(reference + names):
        print(f"warning: {difference}: `repalign align` joins the store on sample_id before "
              "a job", file=sys.stderr)  # fmt: skip


def _validate(args):
    from repalign.store import open_store
    from repalign.store.validate import validate_store

    problems = validate_store(args.store)
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    checked = len(open_store(args.store).representations)
    print(f"{checked} representations checked: {errors} errors, {len(problems) - errors} warnings")
    return 1 if errors else 0


def _ls(args):
    from repalign.store import open_store

    store = open_store(args.store)
    rows = [("name", "rows", "dim", "shards", "source")]
    for r in store.representations.values():
        source = r.source or {}
        origin = ", ".join(f"{k}={source[k]}" for k in ("model", "layer") if k in source)
        rows.append((r.name, f"{r.rows:,}", str(r.dim), str(len(r.shards)), origin))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows) - 1} representations in {store.path}")


def _ui(args):
    from repalign.tracking import check_tracking_uri, default_store, mlflow_ui, public_uri

    if args.tracking_uri is None:
        uri, _ = default_store()
    else:
        check_tracking_uri(args.tracking_uri)
        uri = args.tracking_uri
    if uri.startswith(("http://", "https://")):
        print(f"MLflow UI at {public_uri(uri)} (a tracking server serves its own)")
        return 0
    signal.signal(signal.SIGTERM, _exit)  # a `kill` stops the UI as Ctrl-C does
    try:
        with mlflow_ui(uri, port=args.port) as (url, server):
            print(f"MLflow UI of {public_uri(uri)} at {url} (Ctrl-C stops it)", flush=True)
            status = server.wait()
    except KeyboardInterrupt:
        return 0
    raise RepalignError(f"MLflow's UI stopped by itself (exit status {status}).")


def _exit(signum, frame):
    """Leave by `SystemExit`, so that what the command started is stopped on the way out."""
    raise SystemExit(0)
