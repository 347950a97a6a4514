"""repalign: how alike are the representations of many models?

The measures of the paper "Towards a Learning Theory of Representation Alignment" (Insulla,
Huang & Rosasco, ICLR 2025) and their usual companions, exact in memory here, and at scale in
the jobs of the ``jobs`` package.
"""

from repalign.bounds import (
    bures_wasserstein_squared,
    cumulative_power,
    gaussian_mutual_information,
    gcv,
    independence_wasserstein_squared,
    kare,
    kare_sweep,
    kta_risk_bound,
    lemma1_interval,
    lemma1_radius,
)
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


def __getattr__(name):
    """`repalign.pairwise` (`repalign.all_pairs`), imported when first used: it needs the
    spec's pydantic models, which a plain ``import repalign`` does not load."""
    if name == "pairwise":
        from repalign.all_pairs import pairwise

        return pairwise
    raise AttributeError(f"module 'repalign' has no attribute {name!r}")


__all__ = [
    "__version__",
    "bures_wasserstein_squared",
    "cca",
    "cka",
    "cknna",
    "cumulative_power",
    "distance_alignment",
    "gaussian_mutual_information",
    "gcv",
    "hsic",
    "independence_wasserstein_squared",
    "kare",
    "kare_sweep",
    "kernel_alignment",
    "kta_risk_bound",
    "lemma1_interval",
    "lemma1_radius",
    "linear_gram",
    "median_sigma",
    "mmd2",
    "mutual_knn",
    "pairwise",
    "procrustes",
    "procrustes_distance",
    "rbf_gram",
    "svcca",
]
