"""The command-line commands that the jobs package adds to ``repalign``.

Each function takes the ``repalign`` subcommand parsers and adds one command; the job module
itself is imported only when the command runs.
"""


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
