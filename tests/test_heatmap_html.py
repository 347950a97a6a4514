"""The interactive heatmap page (repalign.heatmap_html) and the readability of the heatmap PNG
(repalign.plots.draw_matrix).

The page is checked as a user meets it: a small job's table (`repalign.pairwise`: a null,
jackknife errors, missing pairs) is logged by `log_alignment_run` to a SQLite MLflow store, its
pages are downloaded and opened in a real headless Chromium (`tests.servers.chromium_page`),
and the mouse is moved over every cell. The PNG's labels are measured in the saved image.
"""

import io
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import Normalize, to_hex
from matplotlib.image import imread
from mlflow import MlflowClient

from repalign.alignment_tables import square_matrix
from repalign.all_pairs import pairwise
from repalign.heatmap_html import heatmap_html
from repalign.plots import (
    DPI,
    MISSING_COLOR,
    alignment_heatmap,
    cluster_order,
    draw_matrix,
    square_inches,
)
from repalign.tracking import log_alignment_run
from tests.servers import chromium_page
from tests.test_tracking import alignment_table

# The order the page must show: models in natural order (s2 before s10), layers by depth
# (fc2 before fc10, logits last). cnn.pool is constant, so its pairs are missing.
MODEL_ORDER = [
    "cnn.conv1", "cnn.conv2", "cnn.pool",
    "mlp-s2.fc2", "mlp-s2.fc10", "mlp-s2.logits",
    "mlp-s10.fc2", "mlp-s10.fc10", "mlp-s10.logits",
]  # fmt: skip
CKA = ("cka", "linear", "biased")
KNN = ("mutual_knn", "linear", "")
# the tooltip's rows for each configuration: the null and the jackknife are linear CKA's only
TOOLTIP_ROWS = {
    CKA: {"value": "value", "std err": "std_err", "p-value": "p_value", "q-value": "q_value",
          "calibrated": "calibrated"},
    KNN: {"value": "value"},
}  # fmt: skip
MIN_LABEL_PX = 8


def small_job_table():
    """`pairwise` on three models of three layers, each layer a noisy function of the one
    before (so that layers of a model are alike, and models not), one layer constant."""
    rng = np.random.default_rng(7)
    n = 120
    representations = {}
    for model, layers in (("mlp-s10", ("fc2", "fc10", "logits")),
                          ("cnn", ("conv1", "conv2", "pool")),
                          ("mlp-s2", ("fc2", "fc10", "logits"))):  # fmt: skip
        layer = rng.standard_normal((n, 6))
        for name in layers:  # in depth order
            noise = 0.3 * rng.standard_normal((n, 6))
            layer = np.tanh(layer @ rng.standard_normal((6, 6))) + noise
            representations[f"{model}.{name}"] = np.full((n, 6), 3.0) if name == "pool" else layer
    return pairwise(representations, ["cka", "mutual_knn,k=5"], jackknife=4)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The small job logged to a SQLite store; its table and its downloaded heatmaps folder."""
    folder = tmp_path_factory.mktemp("heatmap-html")
    uri = f"sqlite:///{folder}/mlflow.db"
    table = small_job_table()
    artifacts = str(folder / "artifacts")
    run_id = log_alignment_run(table, params={}, summary={}, experiment="heatmap-html",
                               tracking_uri=uri, artifact_location=artifacts)  # fmt: skip
    heatmaps = MlflowClient(uri).download_artifacts(run_id, "heatmaps", str(folder / "download"))
    return {"table": table, "heatmaps": Path(heatmaps)}


def expected_rows(table, config):
    """The table's rows of a configuration, by the set of the pair's names."""
    rows = [r for r in table.to_pylist() if (r["measure"], r["kernel"], r["estimator"]) == config]
    return {frozenset((r["rep_a"], r["rep_b"])): r for r in rows}


def page_name(config):
    return "-".join(part for part in config if part)


def test_the_job_logs_a_page_beside_the_png_of_each_configuration(job):
    files = {path.name for path in job["heatmaps"].iterdir()}
    for config in (CKA, KNN):
        assert {f"{page_name(config)}.html", f"{page_name(config)}.png"} <= files
    assert len([name for name in files if name.endswith(".html")]) == 2
    page = (job["heatmaps"] / "cka-linear-biased.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "cka · kernel=linear · estimator=biased" in page


# What the page shows, read in the browser: each cell's centre, where each name's row and column
# are (the middle of its labels), the tooltip, and the state of the switches.
READ_LAYOUT = """(() => {
  const centre = e => { const r = e.getBoundingClientRect();
                        return [r.left + r.width / 2, r.top + r.height / 2]; };
  const labels = [...document.querySelectorAll("#heatmap text.name")];
  const rows = labels.filter((_, i) => i % 2 === 0), columns = labels.filter((_, i) => i % 2);
  return {
    cells: [...document.querySelectorAll("#cells rect")].map(centre),
    size: document.querySelector("#cells rect").getBoundingClientRect().width,
    fills: [...document.querySelectorAll("#cells rect")].map(e => e.getAttribute("fill")),
    rows: rows.map(e => [e.textContent, centre(e)[1]]),
    columns: columns.map(e => [e.textContent, centre(e)[0]]),
    separators: [...document.querySelectorAll("#separators path")].filter(
      e => e.getBoundingClientRect().width > 0).length,
    values_switch: !document.getElementById("values").hidden,
    resources: performance.getEntriesByType("resource").length,
  };
})()"""
READ_TIP = """(() => {
  const tip = document.getElementById("tip");
  return {hidden: tip.hidden, names: [...tip.querySelectorAll(".rep")].map(e => e.textContent),
          rows: Object.fromEntries([...tip.querySelectorAll("tr")].map(
            r => [r.querySelector("th").textContent, r.querySelector("td").textContent]))};
})()"""


def open_page(browser, path):
    browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000,
                 deviceScaleFactor=1, mobile=False)  # fmt: skip
    browser.goto(path.as_uri())
    return browser.evaluate(READ_LAYOUT)


def shown(text):
    """A number as the tooltip writes it, None for the dash of a null."""
    return None if text == "—" else float(text)


def hover_every_cell(browser, layout, rows, config):
    """Move the mouse over each cell; check that its tooltip names a pair of the table and
    shows that pair's numbers, and that the cell sits in the row of one of its names and the
    column of the other. The pairs hovered, one per cell."""
    row_y, column_x = dict(layout["rows"]), dict(layout["columns"])
    half_cell = layout["size"] / 2
    hovered = []
    for x, y in layout["cells"]:
        browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        tip = browser.evaluate(READ_TIP)
        assert not tip["hidden"]
        a, b = tip["names"]
        assert (abs(y - row_y[a]) < half_cell and abs(x - column_x[b]) < half_cell) or (
            abs(y - row_y[b]) < half_cell and abs(x - column_x[a]) < half_cell
        ), (a, b, x, y)
        row = rows[frozenset((a, b))]
        shows = dict(tip["rows"])
        reason = shows.pop("missing", None)
        assert reason == (None if row["status"] == "ok" else row["reason"])
        assert set(shows) == set(TOOLTIP_ROWS[config])
        for label, column in TOOLTIP_ROWS[config].items():
            if row[column] is None:
                assert shows[label] == "—", (a, b, label)
            else:
                assert shown(shows[label]) == pytest.approx(row[column], rel=6e-4), (a, b, label)
        hovered.append(frozenset((a, b)))
    return hovered


@pytest.mark.slow  # a browser
def test_in_chromium_the_page_has_one_cell_per_pair_and_hovering_shows_its_numbers(job):
    with chromium_page() as browser:
        for config in (CKA, KNN):
            rows = expected_rows(job["table"], config)
            layout = open_page(browser, job["heatmaps"] / f"{page_name(config)}.html")
            assert layout["resources"] == 0  # nothing loaded from anywhere
            assert [name for name, _ in sorted(layout["rows"], key=lambda r: r[1])] == MODEL_ORDER
            assert [name for name, _ in sorted(layout["columns"], key=lambda c: c[1])] == (
                MODEL_ORDER
            )
            assert layout["separators"] == 2  # between the three models
            assert layout["values_switch"] == (config == CKA)
            assert len(layout["cells"]) == len(rows) == 45
            hovered = hover_every_cell(browser, layout, rows, config)
            assert sorted(hovered, key=sorted) == sorted(rows, key=sorted)  # each pair once
            missing = sum(r["status"] != "ok" for r in rows.values())
            assert missing == 9  # cnn.pool with each of the nine
            grey = to_hex(MISSING_COLOR)
            assert sum(fill == grey for fill in layout["fills"]) == missing


@pytest.mark.slow  # a browser
def test_in_chromium_the_clustering_order_and_the_calibrated_values(job):
    table = job["table"]
    rows = expected_rows(table, CKA)
    names, matrix = square_matrix(table, measure="cka", kernel="linear", estimator="biased")
    clustered = [names[i] for i in cluster_order(matrix)]
    assert clustered != MODEL_ORDER
    with chromium_page() as browser:
        open_page(browser, job["heatmaps"] / "cka-linear-biased.html")
        browser.evaluate("document.querySelector('input[value=cluster]').click()")
        layout = browser.evaluate(READ_LAYOUT)
        assert [name for name, _ in sorted(layout["rows"], key=lambda r: r[1])] == clustered
        assert [name for name, _ in sorted(layout["columns"], key=lambda c: c[1])] == clustered
        assert layout["separators"] == 0  # the models are mixed
        hovered = hover_every_cell(browser, layout, rows, CKA)
        assert sorted(hovered, key=sorted) == sorted(rows, key=sorted)

        raw_fills = layout["fills"]
        browser.evaluate("document.querySelector('input[value=calibrated]').click()")
        layout = browser.evaluate(READ_LAYOUT)
        grey = to_hex(MISSING_COLOR)
        significant = [rows[pair]["q_value"] is not None and rows[pair]["q_value"] < 0.05
                       for pair in hovered]  # fmt: skip
        assert 0 < sum(significant) < len(significant)
        assert [fill != grey for fill in layout["fills"]] == significant
        changed = [
            a != b for a, b, s in zip(raw_fills, layout["fills"], significant, strict=True) if s
        ]
        assert any(changed)  # coloured by the calibrated scores, not the values
        label = browser.evaluate("document.getElementById('bar-label').textContent")
        assert label == "calibrated cka"


def test_each_cell_has_the_viridis_colour_of_its_value_as_matplotlib_writes_it():
    """The page's raw colours: viridis over the range of the values, as `to_hex` of one
    value at a time gives it; a pair without a value grey."""
    table, _ = sixty(models=6, layers=5)
    page = heatmap_html(table, measure="cka", kernel="linear", estimator="biased")
    data = json.loads(re.search(r'id="heatmap-data">(.*?)</script>', page, re.S)[1])
    (label, values), *_ = data["columns"]
    assert label == "value" and len(values) == 30 * 31 // 2
    known = [v for v in values if v is not None]
    norm = Normalize(min(known), max(known))
    expected = [
        to_hex(MISSING_COLOR) if v is None else to_hex(colormaps["viridis"](norm(v)))
        for v in values
    ]
    assert data["views"]["raw"]["colors"] == expected
    assert len(set(expected)) > 100


def test_names_are_text_whatever_they_hold():
    hostile = "m.</script><script>alert(1)</script>"
    table = alignment_table(representations=[hostile, "m.fc2"], configurations=[CKA])
    page = heatmap_html(table, measure="cka", kernel="linear", estimator="biased")
    assert page.count("</script>") == 2  # the data's and the code's
    assert "<script>alert(1)" not in page
    assert "m.\\u003c/script>\\u003cscript>alert(1)\\u003c/script>" in page  # as JSON


def sixty(models=6, layers=10):
    """A table of ``models`` × ``layers`` representations with long names."""
    names = [f"vit-b16-s{m}.blocks.{layer}.mlp" for m in range(models) for layer in range(layers)]
    return alignment_table(representations=names, configurations=[CKA]), names


def saved(figure):
    """The figure saved as MLflow's log_figure saves it (PNG at the figure's dpi), read back
    as an array of shape (height, width, 4)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    return imread(buffer)


def ink_extent(image, box, axis):
    """How far the dark pixels of the text in ``box`` (display coordinates, y up) reach across
    its lines: rows for ``axis=0`` (a horizontal label), columns for ``axis=1`` (turned)."""
    height = image.shape[0]
    top, bottom = int(height - box.y1), int(np.ceil(height - box.y0))
    left, right = int(box.x0), int(np.ceil(box.x1))
    dark = image[top:bottom, left:right, :3].mean(axis=2) < 0.5
    lines = np.flatnonzero(dark.any(axis=1 - axis))
    return lines[-1] - lines[0] + 1 if len(lines) else 0


def check_labels(figure, image):
    """Each tick label of the heatmap at least `MIN_LABEL_PX` across its lines, as laid out
    and as drawn, and clear of its neighbours; the labels' texts."""
    renderer = figure.canvas.get_renderer()
    axes = figure.axes[0]
    texts = []
    for labels, axis in ((axes.get_yticklabels(), 0), (axes.get_xticklabels(), 1)):
        boxes = [label.get_window_extent(renderer) for label in labels]
        across = [box.height if axis == 0 else box.width for box in boxes]
        assert min(across) >= MIN_LABEL_PX
        assert min(ink_extent(image, box, axis) for box in boxes) >= MIN_LABEL_PX
        for a, b in itertools.pairwise(boxes):
            assert not a.overlaps(b), "labels overlap"
        texts.append([label.get_text() for label in labels])
    assert texts[0] == texts[1]
    return texts[0]


def test_png_labels_every_one_of_60_representations_at_least_8_px_tall():
    table, names = sixty()
    figure = alignment_heatmap(table, measure="cka", kernel="linear", estimator="biased")
    image = saved(figure)
    assert image.shape[:2] == tuple(round(v) for v in figure.bbox.size[::-1])
    assert check_labels(figure, image) == names


def test_png_labels_the_models_when_their_layers_do_not_fit():
    table, names = sixty(models=25, layers=8)
    figure = alignment_heatmap(table, measure="cka", kernel="linear", estimator="biased")
    models = [f"vit-b16-s{m}" for m in range(25)]
    assert check_labels(figure, saved(figure)) == models
    separators = [line for line in figure.axes[0].get_lines() if line.get_color() == "white"]
    assert len(separators) == 2 * 24
    figure = alignment_heatmap(table, measure="cka", kernel="linear", estimator="biased",
                               cluster=True)  # fmt: skip
    labelled = check_labels(figure, saved(figure))
    assert set(labelled) < set(names) and len(labelled) >= 50  # as many as the room allows


def inside(box, outer):
    return outer.x0 <= box.x0 and box.x1 <= outer.x1 and outer.y0 <= box.y0 and box.y1 <= outer.y1


@pytest.mark.parametrize(
    "names",
    [
        ["a.x", "b.y"],
        [f"resnet{m}-with-a-long-name.layer{layer}" for m in range(4) for layer in range(5)],
        [f"vit-b16-s{m}.blocks.{layer}.mlp" for m in range(25) for layer in range(8)],
        [f"an-organisation/a-model-with-a-long-name-{k}.encoder.layers.7.output" for k in range(3)],
    ],
    ids=["2 short", "20 long", "200 in 25 models", "3 very long"],
)
@pytest.mark.parametrize("values", [(-0.2, 1.0), (-3e-5, 2e-4)], ids=["similarity", "small HSIC"])
def test_png_keeps_every_text_in_the_figure_and_off_the_matrix(names, values):
    """The computed layout (`draw_matrix`) as saved: the title, the tick labels, the colour
    bar's ticks (long ones for small values: "−0.00005") and label and the legend of grey cells
    all inside the figure, none over the matrix, the colour bar beside it, and the matrix as
    large as its count asks (`square_inches`), however long the names."""
    matrix = np.random.default_rng(0).uniform(*values, (len(names), len(names)))
    np.fill_diagonal(matrix, np.nan)
    title = "calibrated cka · kernel=linear · estimator=biased\nn = 1,797"
    figure = draw_matrix(
        names, matrix, title=title, label="calibrated cka", grey="no null", grouped=True
    )
    saved(figure)
    renderer = figure.canvas.get_renderer()
    axes, colorbar = figure.axes
    matrix_box, bar_box = axes.get_window_extent(renderer), colorbar.get_window_extent(renderer)
    (legend,) = figure.legends
    texts = [
        axes.title,
        *axes.get_xticklabels(),
        *axes.get_yticklabels(),
        *colorbar.get_yticklabels(),
        colorbar.yaxis.label,
        *legend.get_texts(),
    ]
    boxes = [text.get_window_extent(renderer) for text in texts if text.get_text()]
    boxes.append(legend.get_window_extent(renderer))
    assert len(boxes) >= 2 * len(axes.get_xticks()) + 4
    for box in [*boxes, matrix_box, bar_box]:
        assert inside(box, figure.bbox), (box, figure.bbox)
    for box in [*boxes, bar_box]:
        assert not box.overlaps(matrix_box), box
    assert abs(matrix_box.width - matrix_box.height) <= 1.0
    assert matrix_box.width >= square_inches(len(names)) * DPI - 1.0
    assert bar_box.x0 > matrix_box.x1
