"""What measures exist: one entry per measure, and the columns of the table a job writes.

Every other place reads this module (docs/design.md §11): the job spec (`repalign.spec`) takes its
allowed names, kernels, estimators and approximations from it, the measures their option
lists, the engine (`jobs.alignment`) the pass that computes each configuration, the plots and
the tracking the result columns, and the service's OpenAPI schema, through the spec models,
the names. Adding a measure is one entry here plus its module in `repalign.measures`.

Passes (docs/design.md §4), each a module of `jobs.passes` of the same name:

    moments    second moments of all representations at once (`repalign.stats.GramState`):
               every linear-kernel measure of every pair
    rbf        exact RBF kernels, b×b tiles of every Gram matrix at once (`repalign.tiles`)
    features   random features (RFF or Nyström) of each RBF kernel, then their second moments
    neighbors  exact top-k cosine neighbours of every row
    mmd        two-sample kernel sums of MMD² (exact tiles, or random-feature mean embeddings)
"""

from dataclasses import dataclass, field

import pyarrow as pa

PASSES = ("moments", "rbf", "features", "neighbors", "mmd")
"""The passes of an alignment job, in the order the job runs them; the names are those of the
summary's ``pass_seconds``."""

APPROXIMATIONS = {"rff": "random Fourier features", "nystrom": "Nyström features"}
"""The ways an RBF kernel may be approximated (`repalign.approx`), and what each is called."""

PARAMETERS = {
    "sigma": "median",
    "approx": "none",
    "features": 1024,
    "seed": 0,
    "k": 10,
    "variance": 0.99,
    "squared": False,
    "against": None,
}
"""Every option a measure configuration may set beside name, kernel and estimator, with its
default: the RBF bandwidth (a float or "median"), the approximation ("none" or one of
`APPROXIMATIONS`) with its number of features and seed, the neighbours of k-NN measures,
the variance SVCCA keeps, whether CCA is squared, and another store MMD² compares with. The
defaults are those of the library functions (tests/test_registry.py)."""


@dataclass(frozen=True)
class MeasureDefinition:
    """One measure: how it may be configured and which pass of a job computes it.

    Attributes
    ----------
    name : str
        The name in specs and tables (the ``measure`` column).
    function : str
        The function of `repalign.measures` that defines the value, in memory.
    passes : dict of str to str
        Kernel -> the pass that computes the exact value with it. Its keys are the measure's
        kernels; the first is the default.
    estimators : tuple
        The estimators, the first being the default; ``(None,)`` for a measure without one.
    approximations : dict of str to tuple, default={}
        Approximation of the RBF kernel -> the estimators it applies to.
    approximate_pass : str or None, default=None
        The pass that computes an approximated value.
    parameters : tuple of str, default=()
        The options of `PARAMETERS` that change this measure's value.
    constants : bool, default=False
        Whether a constant representation (a point mass) has a value, as it has an MMD². For
        the other measures its pairs are recorded as missing.
    """

    name: str
    function: str
    passes: dict
    estimators: tuple
    approximations: dict = field(default_factory=dict)
    approximate_pass: str | None = None
    parameters: tuple = ()
    constants: bool = False

    @property
    def kernels(self):
        """The kernels, the default first."""
        return tuple(self.passes)

    def pass_of(self, kernel, approx="none"):
        """The pass that computes this measure with ``kernel`` and ``approx``."""
        return self.passes[kernel] if approx == "none" else self.approximate_pass


_RBF_OPTIONS = ("sigma", "approx", "features", "seed")


def _kernel_measure(name, function, estimators, approximated):
    """A measure of two kernels: linear from the moments, RBF from exact tiles or features."""
    return MeasureDefinition(
        name,
        function,
        passes={"linear": "moments", "rbf": "rbf"},
        estimators=estimators,
        approximations=dict.fromkeys(APPROXIMATIONS, approximated),
        approximate_pass="features",
        parameters=_RBF_OPTIONS,
    )


MEASURES = {
    measure.name: measure
    for measure in (
        _kernel_measure("ka", "kernel_alignment", (None,), (None,)),
        _kernel_measure("cka", "cka", ("biased", "song", "lange"), ("biased",)),
        _kernel_measure("hsic", "hsic", ("biased", "unbiased"), ("biased",)),
        MeasureDefinition(
            "mmd2",
            "mmd2",
            passes={"rbf": "mmd", "linear": "mmd"},
            estimators=("unbiased", "biased", "linear"),
            approximations={"rff": ("biased", "unbiased")},
            approximate_pass="mmd",
            parameters=(*_RBF_OPTIONS, "against"),
            constants=True,
        ),
        MeasureDefinition("procrustes", "procrustes", {"linear": "moments"}, (None,)),
        MeasureDefinition("cca", "cca", {"linear": "moments"}, (None,), parameters=("squared",)),
        MeasureDefinition(
            "svcca", "svcca", {"linear": "moments"}, (None,), parameters=("variance",)
        ),
        MeasureDefinition(
            "mutual_knn", "mutual_knn", {"linear": "neighbors"}, (None,), parameters=("k",)
        ),
        MeasureDefinition("cknna", "cknna", {"linear": "neighbors"}, (None,), parameters=("k",)),
    )
}
"""Every measure by name, in the order specs list them."""

KERNELS = tuple(dict.fromkeys(k for m in MEASURES.values() for k in m.kernels))
"""Every kernel some measure takes."""


def pass_of(config):
    """The pass that computes a measure configuration (a `repalign.spec.Measure`)."""
    return MEASURES[config.name].pass_of(config.kernel, config.approx)


RESULT_SCHEMA = pa.schema(
    [
        ("rep_a", pa.string()),  # representation names <model>.<layer>
        ("rep_b", pa.string()),
        ("measure", pa.string()),  # a name of MEASURES
        ("kernel", pa.string()),
        ("estimator", pa.string()),  # "" for a measure without estimators
        ("value", pa.float64()),  # null when the pair is missing
        ("n", pa.int64()),  # rows the pair was computed on
        ("std_err", pa.float64()),  # null when the value is exact
        ("lower", pa.float64()),  # the Lemma 1 interval of exact RBF KA; null for other rows
        ("upper", pa.float64()),
        ("null_mean", pa.float64()),  # the value's permutation null; null where it has none
        ("null_std", pa.float64()),
        ("p_value", pa.float64()),  # P(value under the null ≥ value)
        ("q_value", pa.float64()),  # Benjamini–Hochberg, over the configuration's pairs
        ("calibrated", pa.float64()),  # (value − null_mean) / (1 − null_mean): KA and CKA
        ("status", pa.string()),  # "ok", or "missing" with the reason
        ("reason", pa.string()),
    ]
)
"""The long table of an alignment job (``alignment.parquet``): one row per unordered pair of
representations, the diagonal included, and per measure configuration."""

INTERVAL_COLUMNS = ("lower", "upper")
NULL_COLUMNS = ("null_mean", "null_std", "p_value", "q_value", "calibrated")
LATER_COLUMNS = INTERVAL_COLUMNS + NULL_COLUMNS
"""Columns that tables written before the Lemma 1 interval or the permutation null lack;
readers do without them."""
