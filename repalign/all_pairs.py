"""Every pair of many representations in one call, in this process: the library's counterpart of
an alignment job (docs/design.md §3, §4), for notebooks. No Ray, no MLflow, nothing written.

`pairwise` returns the job's long table (`repalign.registry.RESULT_SCHEMA`, built by
`repalign.results.Values`). Where each value comes from:

- every linear-kernel measure (KA, CKA, HSIC, Procrustes, CCA, SVCCA) of every pair: ONE
  `repalign.stats.GramState` of all the representations, accumulated row block by row block
  (one pass for the column means, one for the products: memory O(D²) beyond the inputs, flat
  in n), read by `repalign.measures.moments.moment_value` as a job reads its moments pass;
- RBF kernels, k-NN measures (mutual k-NN, CKNNA) and MMD²: the per-pair library functions of
  `repalign.measures`, on each pair in memory, at their cost (O(n²) for RBF and exact MMD²).

As in a job, a constant representation has its pairs recorded as missing with the reason (but
for MMD², defined on point masses), and so has a pair whose measure raises a
`repalign.errors.RepalignError`; MMD² of representations of different widths is missing too.
Bad input (not numeric, not 2-D, NaN or Inf, different row counts, a misaligned store) raises,
naming the representation. The Lemma 1 interval of exact RBF KA (columns ``lower``, ``upper``)
is a job's: here those columns are null. Approximations (``approx``) and MMD² against another
store (``against``) are a job's too, and are refused.
"""

from functools import cache, partial
from itertools import combinations_with_replacement
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from repalign import measures as library
from repalign.errors import InvalidParameterError, NonFiniteError, RowMismatchError
from repalign.measures.jackknife import (
    add_rows_by_group,
    group_bounds,
    jackknife_std_errs,
    total_of,
)
from repalign.measures.moments import record_pairs
from repalign.measures.permutation import UNPAIRED, PermutationDraws, read_permuted
from repalign.measures.spectra import principal_axes
from repalign.registry import MEASURES, pass_of
from repalign.results import Values
from repalign.spec import Measure, SpecError, parse_measure
from repalign.stats import GramState, MomentRows
from repalign.store import Store, open_store
from repalign.validation import check_option, check_representation

VALUE_OPTIONS = ("sigma", "k", "variance", "squared")
"""The options of a configuration (`repalign.registry.PARAMETERS`) that the library functions
take as keyword arguments."""
MMD_WIDTHS = "MMD² compares samples of one space"
"""Why MMD² of representations of different widths is missing (a job's words)."""


def pairwise(
    representations, measures=("cka",), *, null="analytic", permutations=100, jackknife=None
):
    """Every measure configuration for every pair of ``representations``, the diagonal included.

    Parameters
    ----------
    representations : dict of str to array-like, or a store
        {name: array of shape (n_samples, n_features)} with rows paired across arrays, or an
        embedding store (its path, or a `repalign.store.Store`), all its representations.
    measures : sequence, default=("cka",)
        Measure configurations as a job spec takes them: `repalign.spec.Measure`, dicts such
        as ``{"name": "cka", "kernel": "rbf"}``, or strings ``name[:kernel[:estimator]]``
        with ``,key=value`` options (``"cka"``, ``"mutual_knn,k=5"``).
    null : {"analytic", "permutation", "none"}, default="analytic"
        Each pair's permutation null, as a job's spec key ``null``: the columns null_mean,
        null_std, p_value, q_value and calibrated. "analytic": in closed form for linear KA,
        biased CKA and biased HSIC (`repalign.measures.nulls`), none for other configurations.
        "permutation": for every configuration but MMD², from the measures recomputed on
        ``permutations`` random re-pairings of the rows (`repalign.measures.permutation`),
        the same draws as a job's.
    permutations : int, default=100
        The draws B of ``null="permutation"``; its smallest p-value is 1/(B + 1).
    jackknife : int, default=None
        Give each linear-kernel value a ``std_err`` by the delete-one-group jackknife over this
        many contiguous groups of rows (`repalign.measures.jackknife`; 16 is usual). It holds
        that many more moment matrices in memory; each pair then costs a few products per group
        (KA, CKA, HSIC), or one gradient (Procrustes, CCA, SVCCA).

    Returns
    -------
    pyarrow.Table
        With the columns of `repalign.registry.RESULT_SCHEMA`: one row per configuration and
        unordered pair (rep_a, rep_b), in the order of the inputs.

    Raises
    ------
    SpecError
        A measure configuration that a job would refuse, or an approximation.
    RepalignError
        Bad input, with the name of the representation (see the module docstring).
    """
    check_option(null, name="null", allowed=("analytic", "permutation", "none"))
    if not (isinstance(permutations, int) and permutations >= 1):
        raise InvalidParameterError(
            f"permutations must be a whole number of draws of at least 1; got {permutations!r}."
        )
    if jackknife is not None and not (isinstance(jackknife, int) and jackknife >= 2):
        raise InvalidParameterError(
            f"jackknife must be None or a number of groups of at least 2; got {jackknife!r}."
        )
    configs = _configs(measures)
    source = _source(representations)
    values = Values(source.names, dict.fromkeys(source.names, ""))
    means, constant = _column_summary(source)
    for name, is_constant in zip(source.names, constant, strict=True):
        if is_constant:
            values.constant[name] = f"{name} is constant (zero variance)"
    _record_values(values, configs, source, means, "none" if null == "permutation" else null,
                   jackknife)  # fmt: skip
    if null == "permutation":
        _record_permutation_null(values, configs, source, means, permutations)
    return values.table(configs, source.n)


def _record_values(values, configs, source, means, null, jackknife):
    """Every pair's value of ``configs``, with the analytic ``null`` and ``jackknife`` errors."""
    linear = [c for c in configs if pass_of(c) == "moments"]
    if linear:
        _record_moments(values, linear, source, means, null, jackknife)
    for config in configs:
        if pass_of(config) != "moments":
            _record_library(values, config, source)


def _record_permutation_null(values, configs, source, means, permutations):
    """Every pair's Monte Carlo permutation null under ``configs`` (but MMD²): the values
    recomputed on ``permutations`` permuted pairings of the rows (`PermutedSource`)."""
    paired = [c for c in configs if c.name not in UNPAIRED]
    draws = PermutationDraws()
    for draw in range(permutations):
        found = Values(source.names, values.unusable)
        found.constant = values.constant
        _record_values(found, paired, PermutedSource(source, draw), means, "none", None)
        draws.add(found.found)
    draws.record(values, paired)


def _configs(measures):
    """`repalign.spec.Measure` of each item, refused as a job spec would refuse it."""
    if isinstance(measures, str | dict | Measure):
        measures = [measures]
    configs, seen = [], {}
    for index, item in enumerate(measures):
        content = parse_measure(item) if isinstance(item, str) else item
        try:
            config = content if isinstance(content, Measure) else Measure.model_validate(content)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'measure'}: {e['msg']}"
                for e in exc.errors()
            )
            raise SpecError(f"measures[{index}] ({item!r}): {problems}") from None
        if config.approx != "none" or config.against is not None:
            raise SpecError(
                f"measures[{index}] ({config.label}): approximations and MMD² against another "
                "store are computed by an alignment job (repalign run), not by pairwise."
            )
        key = (config.name, config.kernel, config.estimator)
        if key in seen:
            raise SpecError(
                f"measures {seen[key]} and {config.label} share name, kernel and estimator."
            )
        seen[key] = config.label
        configs.append(config)
    return configs


def _source(representations):
    if isinstance(representations, str | Path | Store):
        store = representations if isinstance(representations, Store) else None
        return StoreSource(store or open_store(representations))
    if isinstance(representations, dict):
        return ArraySource(representations)
    raise InvalidParameterError(
        "representations must be a dict {name: array} or an embedding store (its path or a "
        f"repalign.store.Store); got {type(representations).__name__}."
    )


class ArraySource:
    """Representations in memory: {name: array}, checked but for NaN and Inf (the pass of
    column means finds those)."""

    def __init__(self, arrays):
        if not arrays:
            raise InvalidParameterError("representations is empty: give at least one array.")
        self.names = [str(name) for name in arrays]
        self._arrays = {
            str(name): check_representation(A, name=str(name), constant_ok=True, finite=False)
            for name, A in arrays.items()
        }
        first = self.names[0]
        self.n = self._arrays[first].shape[0]
        for name, A in self._arrays.items():
            if A.shape[0] != self.n:
                raise RowMismatchError(
                    f"the representations must have one row per sample; {first!r} has "
                    f"{self.n} rows and {name!r} has {A.shape[0]}."
                )
        self.dims = [self._arrays[name].shape[1] for name in self.names]

    def blocks(self, rows):
        """Row blocks of ``rows`` rows (the last may be shorter): one array per name."""
        arrays = [self._arrays[name] for name in self.names]
        for start in range(0, self.n, rows):
            yield [A[start : start + rows] for A in arrays]

    def array(self, name):
        return self._arrays[name]

    def read(self, name, start, stop):
        return self._arrays[name][start:stop]


class StoreSource:
    """The representations of an embedding store, read in aligned row blocks."""

    def __init__(self, store):
        self.store = store
        self.names = store.select()
        if not self.names:
            raise InvalidParameterError(f"store {store.path} holds no representation.")
        self.n = store[self.names[0]].rows
        self.dims = [store[name].dim for name in self.names]

    def blocks(self, rows):
        for _, block in self.store.blocks(self.names, block_rows=rows):
            yield block

    def array(self, name):
        return self.store.read(name)[1]

    def read(self, name, start, stop):
        return self.store[name].read_values(start, stop)


class PermutedSource:
    """The representations of ``source`` with the rows of each permuted as the ``draw``-th
    draw of the permutation null permutes them (`repalign.measures.permutation`)."""

    def __init__(self, source, draw):
        self.source, self.draw = source, draw
        self.names, self.n, self.dims = source.names, source.n, source.dims

    def blocks(self, rows):
        for start in range(0, self.n, rows):
            stop = min(start + rows, self.n)
            yield [self.read(name, start, stop) for name in self.names]

    def array(self, name):
        return self.read(name, 0, self.n)

    def read(self, name, start, stop):
        unpermuted = partial(self.source.read, name)
        return read_permuted(unpermuted, name, self.draw, start, stop, self.n)


def _block_rows(source):
    """Rows of the blocks both passes read: those `GramState.from_arrays` would take (its
    layout alone, without allocating the state's D × D matrix)."""
    return next(MomentRows(source.dims).row_blocks(source.n)).stop


def _column_summary(source):
    """Each representation's float64 column means and whether it is constant (every column's
    range 0), from one pass of row blocks that also refuses NaN and Inf."""
    sums = [np.zeros(d) for d in source.dims]
    low = [np.full(d, np.inf) for d in source.dims]
    high = [np.full(d, -np.inf) for d in source.dims]
    start = 0
    for block in source.blocks(_block_rows(source)):
        for k, (name, B) in enumerate(zip(source.names, block, strict=True)):
            sums[k] += B.sum(axis=0, dtype=np.float64)
            if not np.isfinite(sums[k]).all():
                _refuse_non_finite(name, B, start)
            np.minimum(low[k], B.min(axis=0), out=low[k])
            np.maximum(high[k], B.max(axis=0), out=high[k])
        start += len(block[0])
    means = [total / source.n for total in sums]
    return means, [bool(np.all(lo == hi)) for lo, hi in zip(low, high, strict=True)]


def _refuse_non_finite(name, block, start):
    bad = ~np.isfinite(block)
    if bad.any():  # else finite values overflowed the float64 sum, which is no error
        row, column = (int(i[0]) for i in np.nonzero(bad))
        raise NonFiniteError(
            f"{name} holds NaN or infinite values, the first at row {start + row}, column {column}."
        )


def _record_moments(values, configs, source, means, null, jackknife):
    """The linear-kernel ``configs`` of every pair from one `GramState` of all the
    representations, shifted by their exact means; with ``null`` "analytic", their permutation
    nulls; with ``jackknife`` groups, their standard errors."""
    if jackknife is None:
        state = GramState(source.dims, means)
        for block in source.blocks(_block_rows(source)):
            state.add_block(block)
    else:
        bounds = group_bounds(source.n, jackknife)
        groups = [GramState(source.dims, means) for _ in bounds]
        start = 0
        for block in source.blocks(_block_rows(source)):
            add_rows_by_group(groups, bounds, start, block)
            start += len(block[0])
        state = total_of(groups)
    pairs = list(combinations_with_replacement(source.names, 2))
    index = {name: k for k, name in enumerate(source.names)}
    axes = cache(lambda k: principal_axes(state, k))
    std_errs = None
    if jackknife is not None:
        std_errs = jackknife_std_errs(state, groups, configs, pairs, index, axes)
    record_pairs(values, configs, state, pairs, index, axes, null=null, std_errs=std_errs)


def _record_library(values, config, source):
    """``config`` of every pair from its per-pair library function."""
    definition = MEASURES[config.name]
    function = getattr(library, definition.function)
    options = {p: getattr(config, p) for p in definition.parameters if p in VALUE_OPTIONS}
    if len(definition.kernels) > 1:
        options["kernel"] = config.kernel
    if config.estimator is not None:
        options["estimator"] = config.estimator
    arrays = cache(source.array)
    for a, b in combinations_with_replacement(source.names, 2):
        dims = source.dims[source.names.index(a)], source.dims[source.names.index(b)]
        if config.name == "mmd2" and dims[0] != dims[1]:
            reason = (
                f"different widths ({dims[0]} and {dims[1]}): MMD² compares samples of one space"
            )
            values.missing(config, a, b, reason)
            continue
        values.record(config, a, b, lambda x, y: function(arrays(x), arrays(y), **options), a, b)
