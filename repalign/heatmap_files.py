"""The heatmaps of an alignment table as files: what an alignment run logs under heatmaps/
(`repalign.tracking.log_alignment_run`). For each measure configuration:

    <configuration>.png             its heatmap (`repalign.plots.alignment_heatmap`)
    <configuration>.html            the same as an interactive page (`repalign.heatmap_html`)
    <configuration>-calibrated.png  its calibrated scores, q ≥ 0.05 grey, where it has them
    <configuration>-models.png      its model-level matrix (`repalign.models`), where the table
                                    holds several models

``<configuration>`` is ``<measure>-<kernel>[-<estimator>]``. A job command draws them into
OUT/heatmaps/ while its logging child imports MLflow (`jobs.uploader`), and the run logs that
folder as it is.
"""

import shutil
from pathlib import Path

from repalign.alignment_tables import (
    CONFIGURATION,
    as_alignment_table,
    configuration_rows,
    configurations,
)
from repalign.contract import CALIBRATED_SUFFIX, MODELS_SUFFIX
from repalign.heatmap_html import heatmap_html
from repalign.models import model_table
from repalign.plots import alignment_heatmap, model_heatmap


def write_heatmaps(table, folder, *, cluster=False):
    """Write the heatmaps of the alignment ``table`` into ``folder`` (made, or emptied first);
    ``cluster`` orders them by hierarchical clustering (`repalign.plots.alignment_heatmap`).
    Returns the folder."""
    table = as_alignment_table(table)
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for values in configurations(table):
        config = dict(zip(CONFIGURATION, values, strict=True))
        name = "-".join(part for part in values if part)
        alignment_heatmap(table, **config, cluster=cluster).savefig(folder / f"{name}.png")
        page = heatmap_html(table, **config, cluster=cluster)
        (folder / f"{name}.html").write_text(page, encoding="utf-8")
        if has_calibrated(table, **config):
            figure = alignment_heatmap(table, **config, cluster=cluster, calibrated=True)
            figure.savefig(folder / f"{name}{CALIBRATED_SUFFIX}.png")
        models = model_table(table, **config)
        if models.num_rows:
            title = f"best layer pair of each pair of models\n{name}"
            figure = model_heatmap(models, title=title, label=config["measure"])
            figure.savefig(folder / f"{name}{MODELS_SUFFIX}.png")
    return folder


def has_calibrated(table, measure, kernel, estimator):
    """Whether the table has calibrated scores of the configuration (tables written before
    them have no such column)."""
    if "calibrated" not in table.column_names:
        return False
    rows = configuration_rows(table, measure, kernel, estimator)
    return rows["calibrated"].null_count < rows.num_rows
