"""Matrices from MLflow, and the stores the service may read."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from repalign.alignment_tables import square_matrix
from repalign.errors import RepalignError
from repalign.models import model_table
from repalign.store import open_store
from repalign.tracking import latest_run, load_alignment_table
from services.api.deps import StateDep, require_token
from services.security import StoreAccessError, resolve_store

router = APIRouter(tags=["results"], dependencies=[Depends(require_token)])


@dataclass
class Selection:
    """Which run and measure configuration a result route reads: the run ``run_id``, or the
    latest finished alignment run of ``experiment``."""

    experiment: str | None = None
    run_id: str | None = None
    measure: str = "cka"
    kernel: str = "linear"
    estimator: str = Query("biased", description="'' for a measure without estimators")

    def configuration(self):
        return {"measure": self.measure, "kernel": self.kernel, "estimator": self.estimator}


SelectionDep = Annotated[Selection, Depends()]


@router.get("/matrices")
def matrix(state: StateDep, selection: SelectionDep):
    """The alignment matrix of one measure configuration, as a square table."""
    run_id, table = _table(state, selection.experiment, selection.run_id)
    try:
        names, values = square_matrix(table, **selection.configuration())
    except RepalignError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    rows = [[None if v != v else float(v) for v in row] for row in values]
    return {"run_id": run_id, **selection.configuration(), "names": names, "values": rows}


@router.get("/models")
def models(state: StateDep, selection: SelectionDep):
    """The model-level matrix of one measure configuration (`repalign.models.model_table`):
    per pair of models, the best layer pair's value and layers, a p-value for that maximum,
    and the mean along matched depth."""
    run_id, table = _table(state, selection.experiment, selection.run_id)
    try:
        rows = model_table(table, **selection.configuration())
    except RepalignError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return {"run_id": run_id, **selection.configuration(), "models": rows.to_pylist()}


def _table(state, experiment, run_id):
    """(run id, alignment table) of the run ``run_id``, or of the latest finished alignment run
    of ``experiment``; 422 without either, 404 for no such run."""
    uri = state.settings.tracking
    if run_id is None:
        if experiment is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "give experiment or run_id")
        run_id = latest_run(experiment, tracking_uri=uri)
        if run_id is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no finished run in {experiment!r}")
    try:
        return run_id, load_alignment_table(run_id, tracking_uri=uri)
    except Exception as exc:  # MLflow's own errors for an unknown run id
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id!r}: {exc}") from None


@router.get("/stores")
def stores(state: StateDep):
    """The stores under each root (folders holding representations), with their sizes."""
    found = []
    for root in state.settings.store_roots:
        for folder in sorted(p for p in [root, *root.iterdir()] if p.is_dir()):
            try:
                store = open_store(folder)
            except RepalignError:
                continue
            if store.representations:
                name = "." if folder == root else folder.name
                found.append({"name": name, "root": str(root), "path": str(folder),
                              "representations": len(store.representations)})  # fmt: skip
    return found


@router.get("/stores/{name:path}/representations")
def representations(state: StateDep, name: str):
    try:
        path = resolve_store(name, state.settings.store_roots)
    except StoreAccessError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    try:
        store = open_store(path)
    except RepalignError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return [{"name": r.name, "dim": r.dim, "rows": r.rows} for r in store.representations.values()]
