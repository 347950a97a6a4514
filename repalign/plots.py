"""The alignment matrix of an all-pairs job as a heatmap.

`repalign.alignment_tables.square_matrix` cuts one configuration out of an all-pairs job's long
table; `alignment_heatmap` draws it. Figures are built on matplotlib's non-interactive Agg
canvas, without pyplot: nothing is displayed and no global backend is changed.
"""

import math

import matplotlib
import numpy as np
import pyarrow.compute as pc
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch

from repalign.alignment_tables import (
    as_alignment_table,
    configuration_rows,
    rows_matrix,
)

MISSING_COLOR = "lightgrey"
SIGNIFICANCE = 0.05
"""The q-value below which a calibrated heatmap colours a pair."""
DPI = 100
"""Pixels per inch of the heatmap figures, and so of the PNG they are saved to."""
TICK_POINTS = 9.0
"""The size of the heatmaps' tick labels: 12.5 px at `DPI`, capitals about 9 px tall."""
TICK_PITCH = 1.3
"""The room a tick label needs along its axis, in multiples of its size."""
EDGE_POINTS = 4.0
"""The blank border around a heatmap figure's contents."""
COLORBAR_INCHES = (0.25, 0.25)
"""The gap between a heatmap and its colour bar, and the bar's width."""
SHRINK = 0.8
"""The colour bar's height, as a fraction of the heatmap's."""


def alignment_heatmap(table, *, measure, kernel, estimator, cluster=False, calibrated=False):
    """Draw the alignment matrix of one measure configuration as a heatmap.

    Parameters
    ----------
    table : pyarrow.Table or pandas.DataFrame
        A long alignment table (see the module docstring).
    measure, kernel, estimator : str
        The configuration to draw; ``estimator=""`` for a measure without one.
    cluster : bool, default=False
        Order the representations by average-linkage hierarchical clustering of the
        distance ``1 − value`` (optimal leaf order) instead of by model, then layer. Meant
        for similarities where 1 means identical (KA, CKA, Procrustes score, CCA, mutual
        k-NN). For the ordering only, a missing pair counts as the largest distance seen
        and a distance below 0 (an unbiased estimate above 1) as 0; the colours show the
        values as they are.
    calibrated : bool, default=False
        Draw the ``calibrated`` column (docs/theory.md §2.10) instead of the value, in the same
        order, with grey for the pairs whose q-value is 0.05 or more (no more alike than
        chance) and for those without a null (the diagonal).

    Returns
    -------
    matplotlib.figure.Figure
        On an Agg canvas. Missing pairs are grey, and a legend says how many there are. In
        model order, white lines separate the models; the tick labels are as `draw_matrix`
        letters them.
    """
    rows = configuration_rows(as_alignment_table(table), measure, kernel, estimator)
    names, matrix = rows_matrix(rows)
    order = cluster_order(matrix) if cluster else np.arange(len(names))
    title = configuration_title(rows, measure, kernel, estimator)
    label, grey = measure, "missing"
    if calibrated:
        _, scores = rows_matrix(rows, "calibrated")
        _, q_values = rows_matrix(rows, "q_value")
        matrix = np.where(q_values < SIGNIFICANCE, scores, np.nan)
        title, label = f"calibrated {title}", f"calibrated {measure}"
        grey = f"q ≥ {SIGNIFICANCE} or no null"
    names = [names[i] for i in order]
    matrix = matrix[np.ix_(order, order)]
    return draw_matrix(names, matrix, title=title, label=label, grey=grey, grouped=not cluster)


def cluster_order(matrix):
    """Leaf order of average-linkage clustering on the distance ``1 − matrix`` (optimal leaf
    order), a NaN counting as the largest distance seen and a distance below 0 as 0."""
    # imported here: heatmaps in the order of the names (the default) do not pay for SciPy's
    # clustering
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    if len(matrix) < 2:
        return np.arange(len(matrix))
    distance = 1.0 - matrix
    known = np.isfinite(distance)
    largest = distance[known].max() if known.any() else 1.0
    distance = np.clip(np.where(known, distance, largest), 0.0, None)
    np.fill_diagonal(distance, 0.0)
    condensed = squareform(distance, checks=False)
    return leaves_list(linkage(condensed, method="average", optimal_ordering=True))


def configuration_title(rows, measure, kernel, estimator):
    """``measure · kernel=… · estimator=…`` over the range of ``n`` of the rows."""
    title = f"{measure} · kernel={kernel}"
    if estimator:
        title += f" · estimator={estimator}"
    n_range = pc.min_max(rows["n"]).as_py()
    low, high = n_range["min"], n_range["max"]
    if low is not None:
        title += f"\nn = {low:,}" if low == high else f"\nn = {low:,} to {high:,}"
    return title


def draw_matrix(names, matrix, *, title, label, grey="missing", grouped=False):
    """The heatmap figure of a square ``matrix`` whose rows and columns are ``names``; NaN cells
    are grey, counted in a legend as ``grey``.

    The matrix is a square `square_inches` wide, and the figure is the square with room for its
    texts (`_Frame`): long names widen the figure, they never shrink the matrix.

    Tick labels are `TICK_POINTS` tall whatever the count. Every name is a tick when the rows
    leave room for it (each label needs `TICK_PITCH` times its size); otherwise the ticks are
    the models at the middle of their rows when ``grouped``, else every k-th name, k as small
    as the room allows. ``grouped`` says that the names are in `model_then_layer` order; white
    lines then separate the models.
    """
    count = len(names)
    side = square_inches(count) * DPI  # pixels
    figure = Figure(dpi=DPI)
    renderer = FigureCanvasAgg(figure).get_renderer()
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    colormap = matplotlib.colormaps["viridis"].with_extremes(bad=MISSING_COLOR)
    image = axes.imshow(np.ma.masked_invalid(matrix), cmap=colormap, interpolation="nearest")
    axes.set_title(title)
    figure.colorbar(image, cax=figure.add_axes((0.0, 0.0, 1.0, 1.0)), label=label)
    legend = None
    missing = int(np.isnan(matrix[np.triu_indices(count)]).sum())
    if missing:
        note = f"{grey}: {missing} pair{'s' if missing > 1 else ''} (reasons in the table)"
        patch = Patch(facecolor=MISSING_COLOR, edgecolor="grey", label=note)
        edge = EDGE_POINTS / 72  # inches
        legend = figure.legend(
            handles=[patch],
            loc="lower left",
            bbox_to_anchor=(edge, edge),
            bbox_transform=figure.dpi_scale_trans,
            borderaxespad=0.0,
            fontsize=8,
        )
    starts = model_starts(names) if grouped else []
    for start in starts[1:]:
        axes.axhline(start - 0.5, color="white", linewidth=1.0)
        axes.axvline(start - 0.5, color="white", linewidth=1.0)
    ticks, labels = range(count), names
    needed = TICK_POINTS * TICK_PITCH * DPI / 72  # pixels along the axis per label
    room = side / max(count, 1) / needed
    if room < 1.0:
        if grouped:
            ends = [*starts[1:], count]
            ticks = [(start + end - 1) / 2 for start, end in zip(starts, ends, strict=True)]
            labels = [names[start].partition(".")[0] for start in starts]
        ticks, labels = _spaced(ticks, labels, 1.0 / room)
    _set_ticks(axes, ticks, labels)
    _Frame(figure, renderer, labels, legend, side).place(figure)
    return figure


def square_inches(count):
    """The side of the heatmap of ``count`` names: 2 + 0.2 in per name, from 3 to 22 in."""
    return min(max(2.0 + 0.2 * count, 3.0), 22.0)


class _Frame:
    """The heatmap's figure as the square of the matrix, ``side`` pixels, and the room of its
    texts around it, computed from their sizes rather than by matplotlib's layout engines (they
    draw the whole figure to measure it, which took as long as saving it).

    Around the square: the title above it; the tick labels (``labels``, the widest one's width,
    with the ticks' length and pad) to its left and below it, where the column labels stand
    upright; below them the ``legend`` if there is one; to its right the colour bar, its tick
    labels (as its formatter writes them) and its label; a border of `EDGE_POINTS` all round.
    `place` makes the figure as large as that needs.
    """

    def __init__(self, figure, renderer, labels, legend, side):
        axes, colorbar = figure.axes
        points = figure.dpi / 72
        edge = EDGE_POINTS * points
        ticks = matplotlib.rcParams["ytick.major.size"] + matplotlib.rcParams["ytick.major.pad"]
        tick_room = ticks * points
        tick_font = FontProperties(size=TICK_POINTS)
        widest = max((_text_width(renderer, text, tick_font) for text in labels), default=0.0)
        title = axes.title.get_window_extent(renderer)
        top = edge + title.height + matplotlib.rcParams["axes.titlepad"] * points
        gap, bar = (inches * figure.dpi for inches in COLORBAR_INCHES)
        bar_font = FontProperties(size=matplotlib.rcParams["ytick.labelsize"])
        scale = colorbar.yaxis
        bar_ticks = scale.get_major_formatter().format_ticks(scale.get_majorticklocs())
        bar_label = scale.label.get_window_extent(renderer).width  # turned: its height
        right = (
            gap
            + bar
            + tick_room
            + max((_text_width(renderer, text, bar_font) for text in bar_ticks), default=0.0)
            + matplotlib.rcParams["axes.labelpad"] * points
            + bar_label
            + edge
        )
        footer = legend.get_window_extent(renderer) if legend is not None else None
        # the title is centred over the square
        self.left = max(edge + widest + tick_room, edge + (title.width - side) / 2)
        self.bottom = edge + widest + tick_room + (footer.height if footer else 0.0)
        width = max(
            self.left + side + right,
            self.left + (side + title.width) / 2 + edge,
            footer.width + 2 * edge if footer else 0.0,
        )
        # whole pixels, as the saved image has them
        self.width, self.height = math.ceil(width), math.ceil(top + side + self.bottom)
        self.side, self.gap, self.bar = side, gap, bar

    def place(self, figure):
        """Size the figure, and put the heatmap's axes and its colour bar's in their places."""
        figure.set_size_inches(self.width / figure.dpi, self.height / figure.dpi)
        axes, colorbar = figure.axes
        axes.set_position(self._fraction(self.left, self.bottom, self.side, self.side))
        margin = (1.0 - SHRINK) / 2 * self.side
        start = self.left + self.side + self.gap
        bar = (start, self.bottom + margin, self.bar, SHRINK * self.side)
        colorbar.set_position(self._fraction(*bar))

    def _fraction(self, left, bottom, width, height):
        return (left / self.width, bottom / self.height, width / self.width, height / self.height)


def _text_width(renderer, text, font):
    width, _, _ = renderer.get_text_width_height_descent(text, font, ismath=False)
    return width


def model_heatmap(models, *, title, label):
    """The heatmap of a `repalign.models.model_table`'s best values, models in its order (a
    model against itself grey)."""
    rows = models.to_pylist()
    names = list(dict.fromkeys(name for r in rows for name in (r["model_a"], r["model_b"])))
    index = {name: i for i, name in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    for row in rows:
        i, j = index[row["model_a"]], index[row["model_b"]]
        matrix[i, j] = matrix[j, i] = row["value"]
    return draw_matrix(names, matrix, title=title, label=label, grey="a model against itself")


def model_starts(names):
    """The positions in ``names`` (in `model_then_layer` order) where a model's names begin; a
    name's model is its part before the first dot."""
    models = [name.partition(".")[0] for name in names]
    return [i for i, model in enumerate(models) if i == 0 or model != models[i - 1]]


def _set_ticks(axes, ticks, labels):
    """The same ticks and labels on both axes, the column labels turned upright."""
    axes.set_xticks(list(ticks), labels=labels, rotation=90, fontsize=TICK_POINTS)
    axes.set_yticks(list(ticks), labels=labels, fontsize=TICK_POINTS)


def _spaced(ticks, labels, gap):
    """The ticks (increasing) and their labels, leaving out each tick closer than ``gap`` to
    the last one kept."""
    kept = []
    for tick, label in zip(ticks, labels, strict=True):
        if not kept or tick - kept[-1][0] >= gap:
            kept.append((tick, label))
    return [tick for tick, _ in kept], [label for _, label in kept]
