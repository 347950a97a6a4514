"""The two figures of a stitching job (`jobs.stitching`): what Theorem 1 promised against what
the stitched models achieved, and the stitching penalty against CKA.

Both take the job's table (pyarrow), use its rows whose status is "ok", and mark the pairs
whose source is an untrained control apart. Figures are built on matplotlib's Agg canvas,
without pyplot, as in `repalign.plots`.
"""

import pyarrow.compute as pc
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from repalign.errors import RepalignError

GROUPS = ((False, "trained source", "tab:blue"), (True, "untrained control", "tab:orange"))


def bound_plot(table):
    """Theorem 1's bound (x) against the achieved risk on the fit rows (y), log-log.

    Filled markers: the stitched model at the least-squares map S*, which the per-S form of
    Theorem 1 ([E26]) keeps under the diagonal on the rows S* was fitted on. Hollow markers:
    the trained stitcher on the same rows (started at S* and trained by L-BFGS, whose line
    search only lowers this risk).
    """
    rows = _ok_rows(table)
    figure, axes = _figure()
    for control, label, color in GROUPS:
        mine = rows[rows["control"] == control]
        axes.scatter(
            mine["bound_train"],
            mine["plugin_risk_train"],
            s=18,
            color=color,
            label=f"{label}: at S*",
        )
        axes.scatter(
            mine["bound_train"],
            mine["stitched_risk_train"],
            s=18,
            facecolors="none",
            edgecolors=color,
            label=f"{label}: trained",
        )
    values = rows[["bound_train", "plugin_risk_train", "stitched_risk_train"]].to_numpy().ravel()
    values = values[values > 0]
    low, high = values.min() / 2, values.max() * 2
    axes.plot([low, high], [low, high], color="black", linewidth=0.8, label="risk = bound")
    axes.set(
        xscale="log",
        yscale="log",
        xlim=(low, high),
        ylim=(low, high),
        xlabel="Theorem 1 bound (√R₂ + κ₂√Ã₂)²",
        ylabel="stitched risk (fit rows)",
        title=f"Stitching: bound against achieved risk ({len(rows)} pairs)",
    )
    axes.legend(fontsize=7, loc="upper left")
    return figure


def penalty_plot(table):
    """The stitching penalty on the test split (stitched risk − the target's own) against the
    pair's linear CKA on the fit rows."""
    rows = _ok_rows(table)
    figure, axes = _figure()
    for control, label, color in GROUPS:
        mine = rows[rows["control"] == control]
        axes.scatter(mine["cka"], mine["penalty"], s=18, color=color, label=label)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set(
        xlabel="linear CKA (biased) of source and target",
        xlim=(0, 1.02),
        ylabel="penalty: stitched − target risk (test)",
        title="Stitching penalty against CKA",
    )
    axes.legend(fontsize=7)
    return figure


def _ok_rows(table):
    """The columns the plots need, of the pairs with status "ok", as a pandas DataFrame."""
    ok = table.filter(pc.field("status") == "ok")
    if ok.num_rows == 0:
        raise RepalignError("the stitching table has no pair with status 'ok' to plot.")
    names = ["control", "cka", "penalty", "bound_train", "plugin_risk_train", "stitched_risk_train"]
    return ok.select(names).to_pandas()


def _figure():
    figure = Figure(figsize=(6.4, 5.2), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()
