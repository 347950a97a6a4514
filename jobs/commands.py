"""The command-line commands that the jobs package adds to ``repalign``.

Each function takes the ``repalign`` subcommand parsers and adds one command; the job module
itself is imported only when the command runs.
"""

import argparse
import datetime
import os
import sys
from pathlib import Path


def add_align(commands):
    align = commands.add_parser(
        "align",
        help="join representations on sample_id into an aligned copy (Dask, out of core)",
        description="Writes the samples present in every chosen representation, in sample_id "
        "order, into the target store, and reports how many rows each one lost.",
    )
    align.add_argument("store", help="source store")
    align.add_argument("target", help="target store for the aligned copy")
    align.add_argument(
        "--representations", nargs="+", metavar="NAME", help="names or globs (default: all)"
    )
    align.set_defaults(run=_align)


def _align(args):
    from jobs.align import align_representations
    from repalign.store import open_store

    names = open_store(args.store).select(args.representations)
    print(align_representations(args.store, names, args.target, progress=True))


def add_run(commands):
    run = commands.add_parser(
        "run",
        help="compute the all-pairs alignment matrix of a store (in process or on Ray), tracked in "
        "MLflow",
        description="Run an alignment job from a spec file (JSON or YAML), or from flags: "
        "--store, --out and one --measure per configuration, written name[:kernel[:estimator]]"
        "[,key=value...], e.g. --measure cka:linear:song --measure cka:rbf:biased,approx=rff. "
        "Writes OUT/alignment.parquet and OUT/summary.json, then logs one MLflow run (by default "
        "to sqlite:///mlflow.db in the working folder, as MLflow itself would); if the "
        "tracking server cannot be reached, the run is kept in OUT/pending-upload.json for "
        "`repalign sync`. A small job runs in this process; a large one, or one given a Ray "
        "cluster, on Ray.",
    )
    run.add_argument("spec", nargs="?", help="job spec file (.json, .yaml)")
    run.add_argument("--store", help="embedding store (instead of a spec file)")
    run.add_argument("--out", help="output folder")
    run.add_argument("--measure", action="append", default=[], metavar="NAME:KERNEL:ESTIMATOR")
    run.add_argument("--representations", nargs="+", metavar="NAME", help="names or globs")
    run.add_argument("--experiment", help="MLflow experiment (default: repalign)")
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="where the passes run: in this process (local) or on Ray; default: Ray when a "
        "cluster is given, else in this process unless the job's element-wise work is large "
        "(the summary says which and why)",
    )
    run.add_argument(
        "--actors",
        type=int,
        help="slots the work is dealt to: Ray actors, or threads in this process (default: the "
        "CPUs Ray offers, or this machine's)",
    )
    run.add_argument(
        "--precision",
        choices=("float64", "float32"),
        help="the moments pass's block products: float64 (default, exact) or float32 (about "
        "twice as fast; accumulated in float64; see docs/design.md §4)",
    )
    run.add_argument(
        "--null",
        choices=("analytic", "permutation", "none"),
        help="each pair's null and p-value: analytic (default; closed form for linear KA, "
        "biased CKA and HSIC), permutation (every measure but MMD², the job run again on "
        "--permutations re-pairings of the rows) or none",
    )
    run.add_argument(
        "--permutations",
        type=int,
        metavar="B",
        help="draws of --null permutation (default 100; the smallest p-value is 1/(B + 1))",
    )
    run.add_argument(
        "--tile-bytes",
        type=int,
        metavar="BYTES",
        help="largest moment state of one tile of the statistic; a larger statistic is cut "
        "into tiles (default: a quarter of a worker's memory per CPU)",
    )
    _add_cluster_flags(run)
    run.add_argument(
        "--incremental-from",
        metavar="OUT",
        help="output folder of an earlier run: reuse its saved statistics, compute only the "
        "blocks of new representations",
    )
    run.set_defaults(run=_run)


RUN_OPTIONS = (
    "store",
    "out",
    "representations",
    "experiment",
    "actors",
    "executor",
    "precision",
    "null",
    "permutations",
    "tile_bytes",
)
"""The flags of `repalign run` that set the spec key of the same name."""


def _logged(command, job, args):
    """``job(uploader, args)``, its logging child (`jobs.uploader.Uploader`) started first: the
    child imports MLflow while this process reads the spec, checks it and runs the job."""
    from jobs.uploader import Uploader

    _check_tracking_uri(args.tracking_uri)
    with Uploader(command, args.tracking_uri) as uploader:
        return job(uploader, args)


def _run(args):
    return _logged("run", _run_logged_by, args)


def _run_logged_by(uploader, args):
    from jobs.outputs import earlier_run, log_libraries_to, replaced
    from repalign.preflight import check_job, machine_memory
    from repalign.spec import SpecError, load_spec, parse_measure, parse_spec

    if args.spec:
        spec = load_spec(args.spec, kind="alignment")
        overrides = {k: getattr(args, k) for k in RUN_OPTIONS if getattr(args, k) is not None}
        if args.measure:
            overrides["measures"] = [parse_measure(m) for m in args.measure]
        spec = parse_spec({**spec.model_dump(exclude_none=True), **overrides})
    else:
        if not (args.store and args.out and args.measure):
            raise SpecError("give a spec file, or --store, --out and at least one --measure.")
        content = {
            "store": args.store,
            "out": args.out,
            "measures": [parse_measure(m) for m in args.measure],
        }
        for key in RUN_OPTIONS[2:]:
            if getattr(args, key) is not None:
                content[key] = getattr(args, key)
        spec = parse_spec(content)
    check_job(spec, memory_bytes=machine_memory())  # before Ray: exit 2 with the reason
    earlier = earlier_run(spec.out)
    log_libraries_to(spec.out)
    from jobs.alignment import run_alignment, write_result
    from repalign.contract import HEATMAP_FOLDER
    from repalign.heatmap_files import write_heatmaps

    result = run_alignment(
        spec,
        ray_address=args.ray_address,
        quiet=args.quiet,
        incremental_from=args.incremental_from,
    )
    path = write_result(result, spec.out)
    summary = result.summary
    print(
        f"wrote {path} ({result.table.num_rows} rows, {summary['missing_values']} missing) "
        f"in {summary['seconds']:.1f} s; executor {summary['executor']} "
        f"({summary['executor_reason']}); each row read "
        f"{_times_read(summary['reads_per_row'])}"
    )
    if earlier:
        print(replaced(spec.out, earlier))
    # drawn here while the child still imports; it logs the folder
    write_heatmaps(result.table, Path(spec.out) / HEATMAP_FOLDER)
    status = uploader.log(
        "alignment",
        out=spec.out,
        experiment=spec.experiment,
        store=spec.store,
        heatmaps=HEATMAP_FOLDER,
    )
    if summary["missing_values"]:
        print(f"missing representations: {summary['missing_representations']}", file=sys.stderr)
        if summary["constant_representations"]:
            constants = summary["constant_representations"]
            print(f"constant representations: {constants}", file=sys.stderr)
    return status


def _times_read(reads_per_row):
    """How many times the passes read each row, in words: "once (moments)", "1× (moments),
    49× (rbf)"."""
    if not reads_per_row:
        return "by no pass"
    if all(times == 1 for times in reads_per_row.values()):
        return f"once ({', '.join(reads_per_row)})"
    return ", ".join(f"{times:g}× ({name})" for name, times in reads_per_row.items())


def add_stitch(commands):
    stitch = commands.add_parser(
        "stitch",
        help="train stitchers between the models of a zoo (in process or on Ray), with the paper's "
        "bound beside each, tracked in MLflow",
        description="Run a stitching job from a spec file (JSON or YAML, kind: stitching), or "
        "from flags: --store, --out and optionally one --pair SOURCE TARGET per stitch "
        "(representation names MODEL.LAYER; default: every model into every trained model at "
        "matching relative depth, untrained controls included). Writes OUT/stitching.parquet "
        "and OUT/stitching-summary.json and logs an MLflow run with a nested run per pair.",
    )
    stitch.add_argument("spec", nargs="?", help="job spec file (.json, .yaml)")
    stitch.add_argument("--store", help="zoo store with saved models (instead of a spec file)")
    stitch.add_argument("--out", help="output folder")
    stitch.add_argument(
        "--pair", nargs=2, action="append", metavar=("SOURCE", "TARGET"), help="one stitch"
    )
    stitch.add_argument("--affine", action="store_true", default=None, help="affine stitchers")
    stitch.add_argument("--optimizer", choices=("lbfgs", "adam"), help="default: lbfgs")
    stitch.add_argument("--experiment", help="MLflow experiment (default: repalign)")
    stitch.add_argument(
        "--workers",
        type=int,
        help="parallel tasks on Ray (default: Ray's CPUs; in this process "
        "the pairs are trained one after another)",
    )
    stitch.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="where the pairs are trained: in this process (local) or on Ray; default: Ray "
        "when a cluster is given or for more than 8 pairs, else in this process",
    )
    _add_cluster_flags(stitch)
    stitch.set_defaults(run=_stitch)


def _stitch(args):
    return _logged("stitch", _stitch_logged_by, args)


def _stitch_logged_by(uploader, args):
    from jobs.outputs import earlier_run, log_libraries_to, replaced
    from repalign.preflight import check_job, machine_memory
    from repalign.spec import SpecError, load_spec, parse_spec

    content = (
        load_spec(args.spec, kind="stitching").model_dump(exclude_none=True) if args.spec else {}
    )
    content["kind"] = "stitching"
    for key in ("store", "out", "experiment", "workers", "executor"):
        if getattr(args, key) is not None:
            content[key] = getattr(args, key)
    if args.pair:
        content["pairs"] = [{"source": s, "target": t} for s, t in args.pair]
    stitcher = dict(content.get("stitcher", {}))
    for key in ("affine", "optimizer"):
        if getattr(args, key) is not None:
            stitcher[key] = getattr(args, key)
    content["stitcher"] = stitcher
    if "store" not in content or "out" not in content:
        raise SpecError("give a spec file, or --store and --out.")
    spec = parse_spec(content, kind="stitching")
    check_job(spec, memory_bytes=machine_memory())  # before Ray, as the service at submit
    earlier = earlier_run(spec.out)
    log_libraries_to(spec.out)
    from jobs.stitching import run_stitching, write_result

    result = run_stitching(spec, ray_address=args.ray_address, quiet=args.quiet)
    path = write_result(result, spec.out)
    summary = result.summary
    print(
        f"wrote {path} ({summary['pairs']} pairs, {summary['failed']} failed); executor "
        f"{summary['executor']} ({summary['executor_reason']})"
    )
    if earlier:
        print(replaced(spec.out, earlier))
    status = uploader.log(
        "stitching",
        out=spec.out,
        experiment=spec.experiment,
        store=spec.store,
    )
    for pair, reason in summary["failures"].items():
        print(f"failed: {pair}: {reason}", file=sys.stderr)
    return status


def add_nightly(commands):
    nightly = commands.add_parser(
        "nightly",
        help="one scheduled run of an alignment job: compute what changed since the previous "
        "run, log a complete matrix and a change report",
        description="Runs the alignment job of SPEC against the output folder of the "
        "schedule's previous successful run: incrementally (only the blocks of new "
        "representations) when no representation of that run changed, else in full. Writes "
        "what `repalign run` writes, plus OUT/drift/ (each representation's random-feature "
        "mean embedding, for the next run's drift), OUT/changes.json (pairs that moved by "
        "more than the threshold, MMD² drift of changed representations) and OUT/nightly.json "
        "(the MLflow run id, tracking URI and plan); logs one MLflow run with changes.json "
        "(and its tables changes/moved.csv, changes/drift.csv) as artifacts. With --schedule, "
        "the run is a child of the schedule's parent run in MLflow, which holds each pair's "
        "value night after night as a metric whose step is the night's date, YYYYMMDD "
        "(`repalign query --schedule ID --pair A B` prints one pair's series).",
    )
    nightly.add_argument("spec", help="alignment job spec file (.json, .yaml)")
    nightly.add_argument("--out", help="output folder (default: the spec's out)")
    nightly.add_argument(
        "--previous", metavar="PREVIOUS_OUT", help="output folder of the last successful run"
    )
    nightly.add_argument(
        "--threshold",
        type=float,
        help="report pairs whose value changed by more than this (default: 0.05)",
    )
    nightly.add_argument(
        "--schedule",
        metavar="ID",
        help="the schedule this run belongs to: its MLflow run is a child of the schedule's "
        "parent run, whose metrics trace each pair over the nights (default: a run of its own)",
    )
    nightly.add_argument(
        "--date",
        type=_moment,
        metavar="WHEN",
        help="the night this run stands for, YYYY-MM-DD or an ISO 8601 time (UTC unless it "
        "names a zone); its step in the schedule's trend and the date in its run's name "
        "(default: now)",
    )
    _add_cluster_flags(nightly)
    nightly.set_defaults(run=_nightly)


def _nightly(args):
    return _logged("nightly", _nightly_logged_by, args)


def _nightly_logged_by(uploader, args):
    from jobs.outputs import earlier_run, log_libraries_to, replaced
    from repalign.spec import load_spec, parse_spec

    spec = load_spec(args.spec, kind="alignment")
    if args.out is not None:
        spec = parse_spec({**spec.model_dump(exclude_none=True), "out": args.out})
    earlier = earlier_run(spec.out)
    log_libraries_to(spec.out)
    options = {} if args.threshold is None else {"threshold": args.threshold}
    from jobs.nightly import describe, run_nightly
    from repalign.contract import HEATMAP_FOLDER
    from repalign.heatmap_files import write_heatmaps

    nightly = run_nightly(
        spec, previous=args.previous, ray_address=args.ray_address, quiet=args.quiet, **options
    )
    print("\n".join(describe(nightly)))
    if earlier:
        print(replaced(spec.out, earlier))
    write_heatmaps(nightly.alignment.table, Path(spec.out) / HEATMAP_FOLDER)  # as in `_run`
    return uploader.log(
        "nightly",
        out=spec.out,
        experiment=spec.experiment,
        store=spec.store,
        plan=nightly.plan.mode,
        schedule=args.schedule,
        moment=args.date,
        heatmaps=HEATMAP_FOLDER,
    )


def _moment(text):
    """A ``--date``: an ISO 8601 date or time, in UTC unless it names a zone."""
    from repalign.provenance import utc

    try:
        return utc(datetime.datetime.fromisoformat(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a date (2026-01-15) or an ISO 8601 time (2026-01-15T02:00+01:00); got "
            f"{text!r}"
        ) from None


def add_sync(commands):
    sync = commands.add_parser(
        "sync",
        help="upload the MLflow runs that jobs kept on disk while the tracking server was down",
        description="For each job output folder OUT with an OUT/pending-upload.json, log the "
        "job's saved results to MLflow as `repalign run`, `stitch` or `nightly` would have, "
        "write OUT/run.json and remove the pending record. A folder logged already is left "
        "as it is. A run that an interrupted upload left unfinished on the server is marked "
        "FAILED; one it finished is kept, not logged twice. MLflow's HTTP retries are short "
        "unless MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR or "
        "MLFLOW_HTTP_REQUEST_TIMEOUT is set (jobs.sync.SHORT_RETRIES).",
    )
    sync.add_argument("out", nargs="+", metavar="OUT", help="job output folder")
    sync.add_argument(
        "--tracking-uri",
        help="log there instead of the tracking URI each folder's record names",
    )
    sync.set_defaults(run=_sync)


def _sync(args):
    from jobs.sync import sync, use_short_retries
    from repalign.errors import RepalignError

    _check_tracking_uri(args.tracking_uri)
    use_short_retries()
    failed = []
    for out in args.out:
        try:
            print(sync(out, tracking_uri=args.tracking_uri))
        except RepalignError as exc:
            print(f"{out}: {exc}", file=sys.stderr)
            failed.append(out)
    if failed:
        raise RepalignError(
            f"{len(failed)} of {len(args.out)} folders not synced: {', '.join(failed)}."
        )


def _check_tracking_uri(tracking_uri):
    """Refuse a tracking URI no run can be logged to before the job starts (None: MLflow's
    default store, which needs no check, nor MLflow imported yet)."""
    if tracking_uri is not None:
        from repalign.tracking import check_tracking_uri

        check_tracking_uri(tracking_uri)


def _add_cluster_flags(parser):
    parser.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else where MLflow logs by "
        "default: sqlite:///mlflow.db in the working folder, which `mlflow ui` there shows)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_demo(commands):
    demo = commands.add_parser(
        "demo",
        help="train the digits model zoo (once), align it on Ray and log it to MLflow",
        description="Train the built-in digits model zoo into a cache folder on first use, "
        "run the all-pairs alignment job on it with a local Ray, log the run to a local "
        "MLflow store, and print the CKA matrix of its networks and every measure for a few "
        "pairs.",
    )
    demo.add_argument("--store", help="zoo folder (default: ~/.cache/repalign/zoo-digits)")
    demo.add_argument("--out", help="job output folder (default: beside the zoo)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_demo)


def _demo(args):
    from jobs.demo import run

    run(args.store, args.out, quiet=args.quiet)
