"""The ``repalign`` command line."""

import argparse

from repalign import __version__


def build_parser():
    parser = argparse.ArgumentParser(
        prog="repalign",
        description="Measure how alike the representations of many models are.",
    )
    parser.add_argument("--version", action="version", version=f"repalign {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="print the alignment matrix of a few representations of scikit-learn's digits",
        description="Compute every measure between five representations of the digits data "
        "(pixels, PCA, a random projection, a random ReLU layer, a shuffled control) and "
        "print the table.",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from repalign.demo import run  # scikit-learn is imported only when needed

        run()
    return 0
