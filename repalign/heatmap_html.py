"""The alignment matrix of one measure configuration as a self-contained interactive web page.

`heatmap_html` writes the page that `repalign.tracking` logs beside each heatmap PNG as
``heatmaps/<configuration>.html``, which MLflow's artifact viewer shows. The matrix is an SVG
lower triangle: one cell per unordered pair of representations, the diagonal included. The
data and a small script are inline, so the page loads nothing from anywhere. In a browser:

- hovering a cell shows both names, the value, and where the configuration has them its
  std_err, p-value, q-value and calibrated score; a missing pair also shows its reason;
- the representations are in model order, layers in depth order within a model
  (`repalign.alignment_tables.model_then_layer`), with white lines between the models and a
  colour per model beside the labels; a switch puts them in the order of hierarchical clustering
  (`repalign.plots.cluster_order`, computed here in Python, as the clustered PNG orders them);
- where the configuration has calibrated scores, a switch colours the cells by those instead,
  grey where q ≥ 0.05 or there is no null, as the calibrated PNG does.

Colours are matplotlib's viridis over each view's range of values, as in the PNGs; numbers are
embedded to 6 significant digits and shown to 4. Cells are 840 px / (number of
representations), from 10 to 28 px: 14 px at 60 representations, a page of about 180 kB.
"""

import html
import json
import math
import re

import matplotlib
import numpy as np
from matplotlib.colors import Normalize, to_hex

from repalign.alignment_tables import as_alignment_table, configuration_rows, rows_matrix
from repalign.plots import (
    MISSING_COLOR,
    SIGNIFICANCE,
    cluster_order,
    configuration_title,
    model_starts,
)

TOOLTIP_COLUMNS = (
    ("value", "value"),
    ("std_err", "std err"),
    ("p_value", "p-value"),
    ("q_value", "q-value"),
    ("calibrated", "calibrated"),
)
"""The columns a cell's tooltip shows, with their labels; all but ``value`` only where the
configuration has a non-null one."""


def heatmap_html(table, *, measure, kernel, estimator, cluster=False):
    """The interactive heatmap page of one measure configuration of an alignment table.

    Parameters
    ----------
    table : pyarrow.Table or pandas.DataFrame
        A long alignment table (`repalign.alignment_tables.ALIGNMENT_COLUMNS`; more columns are
        allowed, and those of `TOOLTIP_COLUMNS` are shown where present).
    measure, kernel, estimator : str
        The configuration; ``estimator=""`` for a measure without one.
    cluster : bool, default=False
        Open in the clustering order instead of model order (the page switches between them).

    Returns
    -------
    str
        A complete HTML document (see the module docstring).
    """
    table = as_alignment_table(table)
    rows = configuration_rows(table, measure, kernel, estimator)
    names, matrix = rows_matrix(rows)
    index = {name: i for i, name in enumerate(names)}
    by_pair = {}
    for row in rows.to_pylist():
        by_pair[tuple(sorted((index[row["rep_a"]], index[row["rep_b"]])))] = row
    pairs = [(i, j) for j in range(len(names)) for i in range(j + 1)]
    found = [by_pair.get(pair) for pair in pairs]
    columns = {
        column: [_rounded(None if row is None else row[column]) for row in found]
        for column, _ in TOOLTIP_COLUMNS
        if column in rows.column_names
        and (column == "value" or rows[column].null_count < rows.num_rows)
    }
    views = {"raw": _view(columns["value"], measure, "missing")}
    if "calibrated" in columns:
        q_values = columns.get("q_value", [None] * len(pairs))
        significant = [q is not None and q < SIGNIFICANCE for q in q_values]
        scores = [
            s if keep else None for s, keep in zip(columns["calibrated"], significant, strict=True)
        ]
        views["calibrated"] = _view(
            scores, f"calibrated {measure}", f"q ≥ {SIGNIFICANCE} or no null"
        )
    starts = model_starts(names)
    number = {names[start].partition(".")[0]: k for k, start in enumerate(starts)}
    palette = [to_hex(color) for color in matplotlib.colormaps["tab10"].colors]
    data = {
        "names": names,
        "model_colors": [palette[number[n.partition(".")[0]] % len(palette)] for n in names],
        "cell": min(28, max(10, 840 // len(names))),  # pixels
        "order": "cluster" if cluster else "model",
        "orders": {"model": list(range(len(names))), "cluster": cluster_order(matrix).tolist()},
        "boundaries": starts[1:],
        "cells": pairs,
        "columns": [[label, columns[c]] for c, label in TOOLTIP_COLUMNS if c in columns],
        "reasons": [_reason(row) for row in found],
        "views": views,
        "stops": [to_hex(matplotlib.colormaps["viridis"](x)) for x in np.linspace(0, 1, 11)],
        "missing_color": to_hex(MISSING_COLOR),
    }
    title, _, subtitle = configuration_title(rows, measure, kernel, estimator).partition("\n")
    missing = sum(reason is not None for reason in data["reasons"])
    summary = f"{len(names)} representations of {len(starts)} models; {len(pairs)} pairs"
    summary += f", {missing} missing" if missing else ""
    fields = {
        "title": html.escape(title),
        "subtitle": html.escape(" · ".join(part for part in (subtitle, summary) if part)),
        "style": _STYLE,
        "script": _SCRIPT,
        # "<" escaped, so that no name can close the script element the data sits in
        "data": json.dumps(data, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c"),
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda match: fields[match[1]], _PAGE)


def _rounded(value):
    """``value`` to 6 significant digits; None for None or a value that is not finite."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def _reason(row):
    """Why a pair has no value: its reason, or None when its status is "ok"."""
    if row is None:
        return "not in the table"
    if row["status"] == "ok":
        return None
    return row["reason"] or row["status"]


def _view(values, label, grey):
    """One colouring of the cells: viridis over the range of ``values``, None grey."""
    known = [v for v in values if v is not None]
    norm = Normalize(min(known), max(known)) if known else Normalize(0.0, 1.0)
    # one call of the colour map for every value: a call per value took 0.4 s for 60 names
    rgb = matplotlib.colormaps["viridis"](norm(np.array(known, dtype=float)))[:, :3]
    hexes = iter(_hex(rgb))
    colors = [to_hex(MISSING_COLOR) if v is None else next(hexes) for v in values]
    return {"label": label, "grey": grey, "low": norm.vmin, "high": norm.vmax, "colors": colors}


def _hex(rgb):
    """``#rrggbb`` of each row of ``rgb`` (floats in [0, 1]), rounded as `to_hex` rounds."""
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in np.round(rgb * 255).astype(int).tolist()]


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{title}}</title>
<style>{{style}}</style>
</head>
<body>
<h1>{{title}}</h1>
<p class="subtitle">{{subtitle}}</p>
<noscript><p>This heatmap is drawn by JavaScript; the PNG beside it shows the same matrix.</p>
</noscript>
<form id="controls">
<fieldset><legend>Order</legend>
<label><input type="radio" name="order" value="model"> models, layers by depth</label>
<label><input type="radio" name="order" value="cluster"> hierarchical clustering</label>
</fieldset>
<fieldset id="values" hidden><legend>Values</legend>
<label><input type="radio" name="view" value="raw" checked> raw</label>
<label><input type="radio" name="view" value="calibrated"> calibrated</label>
</fieldset>
</form>
<svg id="heatmap" xmlns="http://www.w3.org/2000/svg"></svg>
<div id="tip" hidden></div>
<script type="application/json" id="heatmap-data">{{data}}</script>
<script>{{script}}</script>
</body>
</html>
"""

_STYLE = """
[hidden] { display: none !important; }
body { font: 14px sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0; }
.subtitle { margin: 4px 0; color: #555; }
fieldset { display: inline-block; margin: 4px 8px 12px 0; border: 1px solid #ccc; }
#heatmap text { fill: #222; dominant-baseline: central; }
#heatmap text.name { text-anchor: end; }
#cells rect { shape-rendering: crispEdges; }
#cells rect:hover { stroke: #000; stroke-width: 1.5; }
#separators path { stroke: #fff; stroke-width: 2; fill: none; pointer-events: none; }
#tip { position: fixed; pointer-events: none; background: #fff; border: 1px solid #888;
       padding: 6px 8px; font-size: 13px; box-shadow: 0 2px 6px rgba(0, 0, 0, 0.25); }
#tip .rep { font-weight: bold; }
#tip th { text-align: left; font-weight: normal; color: #555; padding-right: 12px; }
"""

_SCRIPT = """
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("heatmap-data").textContent);
  const svg = document.getElementById("heatmap");
  const tip = document.getElementById("tip");
  const n = data.names.length, size = data.cell, side = n * size, strip = 6, gap = 4;
  svg.style.fontSize = Math.min(12, size - 2) + "px";

  function add(parent, tag, attributes) {
    const element = document.createElementNS(svg.namespaceURI, tag);
    set(element, attributes);
    parent.appendChild(element);
    return element;
  }
  function set(element, attributes) {
    for (const key in attributes) element.setAttribute(key, attributes[key]);
  }
  function format(x) {
    return x === null ? "\\u2014" : x.toPrecision(4);
  }

  // labels first: their width sets the margins
  const rowLabels = [], columnLabels = [], rowStrips = [], columnStrips = [];
  data.names.forEach(function (name, i) {
    for (const labels of [rowLabels, columnLabels]) {
      const text = add(svg, "text", {class: "name"});
      text.textContent = name;
      labels.push(text);
    }
    rowStrips.push(add(svg, "rect", {width: strip, height: size, fill: data.model_colors[i]}));
    columnStrips.push(add(svg, "rect", {width: size, height: strip, fill: data.model_colors[i]}));
  });
  const widest = Math.ceil(Math.max.apply(null, rowLabels.map(t => t.getComputedTextLength())));
  const left = widest + strip + 3 * gap, top = gap, below = top + side + strip + 2 * gap;

  const cellGroup = add(svg, "g", {id: "cells"});
  const cells = data.cells.map((_, k) =>
    add(cellGroup, "rect", {class: "cell", width: size, height: size, "data-k": k}));
  const separators = add(svg, "g", {id: "separators"});
  for (const b of data.boundaries) {
    add(separators, "path",
        {d: `M${left},${top + b * size}H${left + b * size}V${top + side}`});
  }

  // the colour bar, right of the matrix
  const barX = left + side + 24, barHeight = Math.max(120, Math.min(side, 320));
  const gradient = add(add(svg, "defs", {}), "linearGradient",
                       {id: "viridis", x1: 0, y1: 1, x2: 0, y2: 0});
  data.stops.forEach((color, i) =>
    add(gradient, "stop", {offset: i / (data.stops.length - 1), "stop-color": color}));
  add(svg, "rect", {x: barX, y: top, width: 14, height: barHeight, fill: "url(#viridis)"});
  const high = add(svg, "text", {x: barX + 20, y: top + 6});
  const low = add(svg, "text", {x: barX + 20, y: top + barHeight - 6});
  const barLabel = add(svg, "text", {id: "bar-label", x: barX, y: top + barHeight + 16});
  add(svg, "rect", {x: barX, y: top + barHeight + 30, width: 14, height: 14,
                    fill: data.missing_color});
  const greyLabel = add(svg, "text", {x: barX + 20, y: top + barHeight + 37});
  svg.setAttribute("width", barX + 200);
  svg.setAttribute("height", Math.max(below + widest + gap, top + barHeight + 50));

  function place(order) {
    const position = [];
    data.orders[order].forEach((name, p) => { position[name] = p; });
    data.names.forEach(function (_, i) {
      const start = position[i] * size, x = left + start + size / 2;
      set(rowLabels[i], {x: left - strip - 2 * gap, y: top + start + size / 2});
      set(columnLabels[i], {x: x, y: below, transform: `rotate(-90 ${x} ${below})`});
      set(rowStrips[i], {x: left - strip - gap, y: top + start});
      set(columnStrips[i], {x: left + start, y: top + side + gap});
    });
    data.cells.forEach(function (pair, k) {
      const a = position[pair[0]], b = position[pair[1]];
      set(cells[k], {x: left + Math.min(a, b) * size, y: top + Math.max(a, b) * size});
    });
    separators.style.display = order === "model" ? "" : "none";
  }

  function paint(name) {
    const view = data.views[name];
    cells.forEach((rect, k) => rect.setAttribute("fill", view.colors[k]));
    high.textContent = format(view.high);
    low.textContent = format(view.low);
    barLabel.textContent = view.label;
    greyLabel.textContent = view.grey;
  }

  function show(k) {
    const pair = data.cells[k];
    tip.replaceChildren();
    for (const i of pair) {
      const line = document.createElement("div");
      line.className = "rep";
      line.textContent = data.names[i];
      tip.appendChild(line);
    }
    const table = document.createElement("table");
    const rows = data.columns.map(column => [column[0], format(column[1][k])]);
    if (data.reasons[k] !== null) rows.push(["missing", data.reasons[k]]);
    for (const [label, text] of rows) {
      const row = table.insertRow();
      const head = document.createElement("th");
      head.textContent = label;
      row.appendChild(head);
      row.insertCell().textContent = text;
    }
    tip.appendChild(table);
  }

  let shown = null;
  svg.addEventListener("mousemove", function (event) {
    const k = event.target.dataset.k;
    if (k === undefined) {
      tip.hidden = true;
      shown = null;
      return;
    }
    if (shown !== k) show(Number(k));
    shown = k;
    tip.hidden = false;
    const x = event.clientX + 14, y = event.clientY + 14;
    tip.style.left = Math.min(x, window.innerWidth - tip.offsetWidth - 4) + "px";
    tip.style.top = (y + tip.offsetHeight > window.innerHeight ?
                     event.clientY - tip.offsetHeight - 8 : y) + "px";
  });
  svg.addEventListener("mouseleave", function () { tip.hidden = true; shown = null; });

  const controls = document.getElementById("controls");
  document.getElementById("values").hidden = !("calibrated" in data.views);
  controls.elements.order.value = data.order;
  controls.addEventListener("change", function () {
    place(controls.elements.order.value);
    paint(controls.elements.view.value);
  });
  place(data.order);
  paint("raw");
})();
"""
