"""Exact, in-memory alignment measures between representations (docs/design.md §3).

Every function takes two representations, numpy arrays, torch tensors or anything
array-like, computes in float64, and raises a `repalign.errors.RepalignError` (a
``ValueError``) for input it cannot measure.
"""

from repalign.measures.alignment import cka, hsic, kernel_alignment
from repalign.measures.cca import cca, svcca
from repalign.measures.distance import distance_alignment
from repalign.measures.kernels import linear_gram, median_sigma, rbf_gram
from repalign.measures.mmd import mmd2
from repalign.measures.neighbors import cknna, mutual_knn
from repalign.measures.procrustes import procrustes, procrustes_distance

__all__ = [
    "cca",
    "cka",
    "cknna",
    "distance_alignment",
    "hsic",
    "kernel_alignment",
    "linear_gram",
    "median_sigma",
    "mmd2",
    "mutual_knn",
    "procrustes",
    "procrustes_distance",
    "rbf_gram",
    "svcca",
]
