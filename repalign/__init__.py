"""repalign: how alike are the representations of many models?

The measures of the paper "Towards a Learning Theory of Representation Alignment" (Insulla,
Huang & Rosasco, ICLR 2025) and their usual companions, exact in memory here, and at scale in
the jobs of the ``jobs`` package.
"""

from repalign.measures import (
    cca,
    cka,
    cknna,
    distance_alignment,
    hsic,
    kernel_alignment,
    linear_gram,
    median_sigma,
    mmd2,
    mutual_knn,
    procrustes,
    procrustes_distance,
    rbf_gram,
    svcca,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
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
