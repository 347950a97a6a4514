"""What a job or `repalign.pairwise` has found for each pair: a value with its standard error
and its permutation null, or the reason it is missing; and the long table
(`repalign.registry.RESULT_SCHEMA`) built from them."""

from itertools import combinations_with_replacement

import numpy as np
import pyarrow as pa

from repalign.arrow_rows import table_from_rows
from repalign.errors import RepalignError
from repalign.measures.nulls import calibrated
from repalign.registry import MEASURES, RESULT_SCHEMA


class Values:
    """The values of every (configuration, pair) of a run, keyed by (label, rep_a, rep_b).

    ``unusable[name]`` says why no measure can use a representation (NaN or Inf rows), ""
    when it can; ``constant[name]`` why a constant one has no value but for measures defined
    on point masses (the moments find them, else a pass of column ranges).

    A pair is computed and kept in the order of ``names``; the table lists the pairs in the
    order of ``listed`` (default ``names``), so that a run that computed them in another order
    (an incremental one, the old representations first) gives the table of a full run.
    """

    def __init__(self, names, unusable, listed=None):
        self.names = names
        self.listed = names if listed is None else listed
        self._position = {name: i for i, name in enumerate(names)}
        self.unusable = unusable
        self.constant = {}
        self.found = {}  # (label, a, b) -> (value, std_err, reason)
        self.intervals = {}  # (label, a, b) -> KAInterval, for exact RBF KA
        self.nulls = {}  # (label, a, b) -> NullDistribution, for a ≠ b

    def usable(self):
        """Representations every measure can use: finite and not constant."""
        return [n for n in self.names if not self.unusable[n] and n not in self.constant]

    def reason(self, config, a, b):
        """Why the pair (a, b) has no value under ``config`` before anything is computed."""
        for name in (a, b):
            if self.unusable[name]:
                return self.unusable[name]
            if name in self.constant and not MEASURES[config.name].constants:
                return self.constant[name]
        return ""

    def part(self):
        """An empty `Values` of the same representations, for some of the pairs, to `merge`
        back."""
        part = Values(self.names, self.unusable, self.listed)
        part.constant = self.constant
        return part

    def missing(self, config, a, b, reason):
        self.found[config.label, a, b] = (None, None, reason)

    def record(self, config, a, b, function, *args):
        """Record ``function(*args)`` (a value, or a value and its standard error) as the
        pair's value, or the reason it has none."""
        reason = self.reason(config, a, b)
        if reason:
            self.missing(config, a, b, reason)
            return
        try:
            value = function(*args)
        except RepalignError as exc:
            self.missing(config, a, b, str(exc))
            return
        std_err = None
        if isinstance(value, tuple):
            value, std_err = value
        if not np.isfinite(value):
            self.missing(config, a, b, "the value is not finite")
        else:
            self.found[config.label, a, b] = (float(value), std_err, "")

    def record_std_err(self, config, a, b, std_err):
        """Give the pair's recorded value the standard error ``std_err`` (None: none)."""
        value, _, reason = self.found.get((config.label, a, b), (None, None, ""))
        if value is not None and std_err is not None:
            self.found[config.label, a, b] = (value, std_err, reason)

    def record_null(self, config, a, b, function, *args):
        """Record ``function(value, *args)`` (a `repalign.measures.nulls.NullDistribution`, or
        None) as the null of the pair's recorded value. A representation against itself, or a
        pair without a value, has none."""
        value = self.found.get((config.label, a, b), (None,))[0]
        if a == b or value is None:
            return
        null = function(value, *args)
        if null is not None:
            self.nulls[config.label, a, b] = null

    def merge(self, part):
        """Take in what ``part`` (the `Values` of some of the pairs, such as a tile owner's)
        found: its values, nulls and constant representations."""
        self.found.update(part.found)
        self.nulls.update(part.nulls)
        self.constant.update(part.constant)

    def fail(self, configs, name, reason):
        """Record every pair of ``name`` as missing (pairs of unusable representations keep
        their own reason)."""
        for config in configs:
            for other in self.usable():
                a, b = sorted((name, other), key=self._position.__getitem__)
                self.missing(config, a, b, reason)

    def table(self, configs, n):
        """The long table: each configuration's pairs, the diagonal included (only the diagonal
        for MMD² against another store). Built one configuration at a time, so that the rows
        as Python objects (about 1 kB each) are held for one configuration only."""
        return pa.concat_tables([self._table_of(config, n) for config in configs])

    def _table_of(self, config, n):
        """The rows of one configuration (see `table`)."""
        rows = []
        pairs = list(combinations_with_replacement(self.listed, 2))
        if config.against is not None:
            pairs = [(name, name) for name in self.listed]
        q_values = self._q_values(config)
        for a, b in pairs:
            kept = (config.label, *sorted((a, b), key=self._position.__getitem__))
            value, std_err, reason = self.found.get(
                kept, (None, None, self.reason(config, a, b) or "not computed")
            )
            interval = self.intervals.get(kept)
            null = self.nulls.get(kept)
            score = None if null is None else calibrated(config.name, value, null)
            rows.append(
                {
                    "rep_a": a,
                    "rep_b": b,
                    "measure": config.name,
                    "kernel": config.kernel,
                    "estimator": config.estimator or "",
                    "value": value,
                    "n": n,
                    "std_err": std_err,
                    "lower": None if interval is None else interval.lower,
                    "upper": None if interval is None else interval.upper,
                    "null_mean": None if null is None else null.mean,
                    "null_std": None if null is None else null.std,
                    "p_value": None if null is None else null.p_value,
                    "q_value": q_values.get(kept[1:]),
                    "calibrated": score,
                    "status": "ok" if reason == "" else "missing",
                    "reason": reason,
                }
            )
        return table_from_rows(rows, RESULT_SCHEMA)

    def _q_values(self, config):
        """Benjamini–Hochberg q-values of ``config``'s p-values, over its pairs that have one
        (never a representation against itself): {(a, b): q}."""
        pairs = [(a, b) for label, a, b in self.nulls if label == config.label]
        if not pairs:
            return {}
        p_values = [self.nulls[config.label, a, b].p_value for a, b in pairs]
        return dict(zip(pairs, benjamini_hochberg(p_values).tolist(), strict=True))


def benjamini_hochberg(p_values):
    """Benjamini–Hochberg adjusted p-values (q-values) of m p-values (Benjamini & Hochberg
    1995; docs/theory.md §2.10, "Columns of the table").

    With p₍₁₎ ≤ … ≤ p₍ₘ₎ sorted, q₍ᵢ₎ = min over j ≥ i of min(1, m·p₍ⱼ₎ / j), returned in the
    order given. Rejecting every q < α is the step-up procedure at false discovery rate α. A
    p-value that is not a number (NaN) has a NaN q-value and is not counted in m.

    The definition of `scipy.stats.false_discovery_control`, written here because importing
    scipy.stats cost every job and `repalign.pairwise` half a second.
    """
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full_like(p, np.nan)
    known = np.flatnonzero(~np.isnan(p))
    order = known[np.argsort(p[known], kind="stable")]
    ranks = np.arange(1, order.size + 1)
    stepped = np.minimum.accumulate((p[order] * order.size / ranks)[::-1])[::-1]
    q[order] = np.minimum(stepped, 1.0)
    return q
