"""repalign: how alike are the representations of many models?

The measures of the paper "Towards a Learning Theory of Representation Alignment" (Insulla,
Huang & Rosasco, ICLR 2025) and their usual companions, exact in memory here, and at scale in
the jobs of the ``jobs`` package.
"""

import importlib
import importlib.util

__version__ = "0.1.0"

_PUBLIC = {
    "repalign.bounds": (
        "bures_wasserstein_squared",
        "cumulative_power",
        "gaussian_mutual_information",
        "gcv",
        "independence_wasserstein_squared",
        "kare",
        "kare_sweep",
        "kta_risk_bound",
        "lemma1_interval",
        "lemma1_radius",
    ),
    "repalign.measures": (
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
    ),
    "repalign.all_pairs": ("pairwise",),
}
"""The public functions, by the module that defines them."""
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}


def __getattr__(name):
    """A public function, or a submodule (``repalign.measures``), imported when first used (PEP
    562): ``import repalign``, which every ``repalign`` command and the jobs' processes do
    first, then loads neither scipy nor the spec's pydantic models until a command needs
    them."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    elif importlib.util.find_spec(f"repalign.{name}") is not None:
        value = importlib.import_module(f"repalign.{name}")
    else:
        raise AttributeError(f"module 'repalign' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_MODULE_OF])


__all__ = ["__version__", *sorted(_MODULE_OF)]
