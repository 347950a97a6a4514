"""Command-line commands of the service: ``serve``, and the client commands ``submit``,
``status``, ``query`` and ``schedule``, which talk to a running service over HTTP.

The client reads the service's address from ``--url`` or ``REPALIGN_URL`` (default
http://127.0.0.1:8000) and its token from ``REPALIGN_TOKEN`` (never from a flag, so that it
stays out of shell histories and process lists).
"""

import json
import os
import sys

DEFAULT_URL = "http://127.0.0.1:8000"


def add_serve(commands):
    serve = commands.add_parser(
        "serve",
        help="run the HTTP service: submit jobs, query results, schedule comparisons",
        description="Serve the repalign API (/v1, OpenAPI docs at /docs) and run its jobs and "
        "schedules. Tokens come from REPALIGN_API_TOKENS (comma-separated) or the config file; "
        "only stores under the --store-root folders can be read.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--store-root", action="append", metavar="DIR", help="a folder of readable stores (repeat)"
    )
    serve.add_argument("--state-dir", help="job folders, logs, default databases")
    serve.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the state dir)")
    serve.add_argument("--max-running", type=int, help="jobs run at once (default 2)")
    serve.add_argument("--ray-address", help="Ray cluster for the jobs (default: a local Ray)")
    serve.add_argument("--tracking-uri", help="MLflow (default: SQLite in the state dir)")
    serve.add_argument("--config", help="JSON file of settings (keys as the flags, with _)")
    serve.set_defaults(run=_serve)


def _serve(args):
    import uvicorn

    from services.main import create_app
    from services.settings import SettingsError, load_settings

    try:
        settings = load_settings(
            args.config,
            store_roots=args.store_root,
            state_dir=args.state_dir,
            database_url=args.database_url,
            max_running=args.max_running,
            ray_address=args.ray_address,
            tracking_uri=args.tracking_uri,
        )
    except SettingsError as exc:
        raise SystemExit(f"repalign serve: {exc}") from None
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")


def _client_flags(parser):
    parser.add_argument(
        "--url", default=os.environ.get("REPALIGN_URL", DEFAULT_URL), help="the service"
    )


def add_submit(commands):
    submit = commands.add_parser(
        "submit",
        help="submit a job spec to a running service",
        description="Send a spec file to the service, which checks it (its store must be under "
        "the service's store roots; its out is chosen by the service) and queues the job. "
        "Prints the job id.",
    )
    submit.add_argument("spec", help="job spec file (.json, .yaml): alignment or stitching")
    _client_flags(submit)
    submit.set_defaults(run=_submit)


def _submit(args):
    from repalign.spec import read_spec_file

    print(_call(args.url, "POST", "/v1/jobs", read_spec_file(args.spec))["id"])


def add_status(commands):
    status = commands.add_parser("status", help="jobs of a running service, or one job")
    status.add_argument("id", nargs="?", help="a job id (default: the latest jobs)")
    _client_flags(status)
    status.set_defaults(run=_status)


def _status(args):
    if args.id:
        print(json.dumps(_call(args.url, "GET", f"/v1/jobs/{args.id}"), indent=2))
        return
    for job in _call(args.url, "GET", "/v1/jobs", params={"limit": 20}):
        print(f"{job['id']}  {job['kind']:<9} {job['status']:<9} {job['created_at']}")


def add_query(commands):
    query = commands.add_parser(
        "query",
        help="the latest alignment matrix of an experiment, or a pair's values over a "
        "schedule's nights, from a service or from MLflow",
        description="With --experiment: the matrix of the experiment's latest finished "
        "alignment run (--level model: by pair of models). With --schedule ID --pair A B: the "
        "values of the pair A, B on each night of the schedule, one column per measure "
        "configuration, read from the schedule's parent run in MLflow.",
    )
    query.add_argument("--experiment", help="MLflow experiment")
    query.add_argument("--schedule", metavar="ID", help="a schedule's id (repalign schedule ls)")
    query.add_argument(
        "--pair", nargs=2, metavar=("A", "B"), help="with --schedule: the two representations"
    )
    query.add_argument("--measure", default="cka")
    query.add_argument("--kernel", default="linear")
    query.add_argument("--estimator", default="biased", help="'' for none")
    query.add_argument(
        "--level",
        choices=("layer", "model"),
        default="layer",
        help="layer: the matrix of every representation (default); model: per pair of models, "
        "the best-matching layers' value, which layers, a p-value for that maximum and the "
        "mean along matched depth",
    )
    query.add_argument("--tracking-uri", help="read MLflow directly instead of a service")
    _client_flags(query)
    query.set_defaults(run=_query)


def _query(args):
    if (args.schedule is None) == (args.experiment is None):
        raise SystemExit("repalign query: give --experiment, or --schedule with --pair")
    if args.schedule is not None:
        if args.pair is None:
            raise SystemExit("repalign query: --schedule needs --pair A B")
        _query_trend(args)
        return
    if args.level == "model":
        _query_models(args)
        return
    if args.tracking_uri:
        from repalign.alignment_tables import square_matrix

        run_id, table = _latest_table(args)
        names, values = square_matrix(
            table, measure=args.measure, kernel=args.kernel, estimator=args.estimator
        )
        values = values.tolist()
    else:
        params = {
            key: getattr(args, key) for key in ("experiment", "measure", "kernel", "estimator")
        }
        answer = _call(args.url, "GET", "/v1/matrices", params=params)
        run_id, names, values = answer["run_id"], answer["names"], answer["values"]
    print(f"run {run_id}: {args.measure} {args.kernel} {args.estimator}".rstrip())
    width = max(len(n) for n in names)
    for name, row in zip(names, values, strict=True):
        cells = " ".join("  nan" if v is None or v != v else f"{v:5.3f}" for v in row)
        print(f"{name:<{width}} {cells}")


def _latest_table(args):
    """(run id, table) of the latest finished alignment run of the experiment, from MLflow."""
    from repalign.tracking import latest_run, load_alignment_table

    run_id = latest_run(args.experiment, tracking_uri=args.tracking_uri)
    if run_id is None:
        raise SystemExit(f"no finished alignment run in experiment {args.experiment!r}")
    return run_id, load_alignment_table(run_id, tracking_uri=args.tracking_uri)


def _query_models(args):
    configuration = {key: getattr(args, key) for key in ("measure", "kernel", "estimator")}
    if args.tracking_uri:
        from repalign.models import model_table

        run_id, table = _latest_table(args)
        rows = model_table(table, **configuration).to_pylist()
    else:
        params = {"experiment": args.experiment, **configuration}
        answer = _call(args.url, "GET", "/v1/models", params=params)
        run_id, rows = answer["run_id"], answer["models"]
    print(f"run {run_id}: {args.measure} {args.kernel} {args.estimator}".rstrip() + ", by model")
    header = ("model a", "model b", "best", "layers", "p(max)", "matched")
    lines = [header]
    for row in rows:
        p_value = "—" if row["p_value"] is None else f"{row['p_value']:.2g}"
        matched = "—" if row["matched_mean"] is None else f"{row['matched_mean']:.3f}"
        layers = f"{row['layer_a']}~{row['layer_b']}"
        lines.append((row["model_a"], row["model_b"], f"{row['value']:.3f}", layers, p_value,
                      matched))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _query_trend(args):
    """One pair's values over the nights of a schedule: a line per night, a column per
    configuration."""
    rep_a, rep_b = args.pair
    if args.tracking_uri:
        from repalign.tracking import schedule_trend

        trend = schedule_trend(args.schedule, rep_a, rep_b, tracking_uri=args.tracking_uri)
    else:
        params = {"rep_a": rep_a, "rep_b": rep_b}
        trend = _call(args.url, "GET", f"/v1/schedules/{args.schedule}/trend", params=params)
    print(f"schedule {args.schedule}, run {trend['run_id']}: {' / '.join(trend['pair'])}")
    header = ("night (UTC)", *trend["configurations"])
    lines = [header]
    for point in trend["points"]:
        values = point["values"]
        cells = [f"{values[c]:.4f}" if c in values else "—" for c in trend["configurations"]]
        lines.append((point["time"][:16].replace("T", " "), *cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def add_schedule(commands):
    schedule = commands.add_parser("schedule", help="schedules of a running service")
    actions = schedule.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="run a spec on a cron expression")
    add.add_argument("spec", help="job spec file")
    add.add_argument("--cron", required=True, help="e.g. '0 2 * * *' (nightly at 02:00)")
    add.add_argument("--timezone", default="UTC")
    add.add_argument("--threshold", type=float, default=0.05, help="report pairs moving more")
    _client_flags(add)
    actions_ls = actions.add_parser("ls", help="list schedules")
    _client_flags(actions_ls)
    remove = actions.add_parser("rm", help="delete a schedule")
    remove.add_argument("id")
    _client_flags(remove)
    schedule.set_defaults(run=_schedule)


def _schedule(args):
    from repalign.spec import read_spec_file

    if args.action == "add":
        spec = read_spec_file(args.spec)
        body = {"cron": args.cron, "timezone": args.timezone, "spec": spec,
                "threshold": args.threshold}  # fmt: skip
        created = _call(args.url, "POST", "/v1/schedules", body)
        print(f"{created['id']}  next run {created['next_run_at']}")
    elif args.action == "ls":
        for item in _call(args.url, "GET", "/v1/schedules"):
            print(f"{item['id']}  {item['cron']!r} {item['timezone']}  next {item['next_run_at']}")
    else:
        _call(args.url, "DELETE", f"/v1/schedules/{args.id}")
        print(f"deleted {args.id}")


def _call(url, method, path, body=None, params=None):
    """One request to the service with the token of REPALIGN_TOKEN; exits with its error."""
    import httpx  # here, not at the top: every `repalign` command loads this module

    token = os.environ.get("REPALIGN_TOKEN")
    if not token:
        raise SystemExit("set REPALIGN_TOKEN to one of the service's API tokens")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            response = client.request(method, path, json=body, params=params)
    except httpx.TransportError as exc:
        raise SystemExit(f"cannot reach the service at {url}: {exc}") from None
    if response.is_error:
        print(f"{method} {path}: HTTP {response.status_code}: {response.text}", file=sys.stderr)
        raise SystemExit(1)
    return response.json() if response.content else None
