"""How often Nyström's 95% interval covers the exact RBF value (issue 15): KA, CKA and HSIC of
strongly (`tests.test_approx.related_pair`) and weakly (`weakly_related_pair`) related pairs in
turn, each estimated by `repalign.approx.Nystrom` with probes and compared with the exact value
from the n×n kernels of the same sample.

    .venv/bin/python benchmarks/nystrom_coverage.py --rows 800 --features 160 --samples 200

prints, per measure, the share of samples whose value ± t₀.₉₇₅,ₚ₋₁ · std_err covers the exact
value, for the strong and the weak pairs apart, and the standard deviation of error ÷ std_err
(1 when the std_err is the error's spread). ``--first 0`` with 800 rows and 160 columns gives
the samples of tests/test_approx.py's coverage test.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import repalign
from repalign.approx import Nystrom, approximate_products, nystrom_rows
from tests.test_approx import feature_state, related_pair, weakly_related_pair

MEASURES = ("ka", "cka", "hsic")


def exact_values(X, Y, sigmas):
    """KA, CKA and HSIC of the RBF kernels, from the explicit n×n matrices."""
    kernels = []
    for A, sigma in zip((X, Y), sigmas, strict=True):
        scaled = A / sigma
        norms = np.einsum("ij,ij->i", scaled, scaled)
        distances = np.maximum(norms[:, None] + norms[None, :] - 2 * scaled @ scaled.T, 0.0)
        kernels.append(np.exp(-0.5 * distances))
    K, L = kernels
    n = len(K)
    H = np.eye(n) - 1.0 / n
    Kc, Lc = H @ K @ H, H @ L @ H
    return {
        "ka": np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L)),
        "cka": np.sum(Kc * Lc) / np.sqrt(np.sum(Kc * Kc) * np.sum(Lc * Lc)),
        "hsic": np.sum(Kc * Lc) / (n - 1) ** 2,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--features", type=int, default=160, help="landmarks and probes")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--first", type=int, default=0, help="the first sample's seed")
    options = parser.parse_args()
    rng = np.random.default_rng(11 + options.first)
    covered = {(name, strong): [] for name in MEASURES for strong in (True, False)}
    standardised = []
    for sample in range(options.first, options.first + options.samples):
        strong = sample % 2 == 0
        if strong:
            X, Y = related_pair(sample, options.rows, d=8)
        else:
            X, Y = weakly_related_pair(rng, options.rows)
        sigmas = repalign.median_sigma(X), repalign.median_sigma(Y)
        exact = exact_values(X, Y, sigmas)
        rows = nystrom_rows(options.rows, options.features, sample)
        maps = [
            Nystrom(A[rows.landmarks], A[rows.probes], s)
            for A, s in zip((X, Y), sigmas, strict=True)
        ]
        products = approximate_products(feature_state(maps, (X, Y)), 0, 1, *maps)
        quantile = stats.t.ppf(0.975, len(rows.probes) - 1)
        for name in MEASURES:
            estimate = getattr(products, name)
            error = estimate.value - exact[name]
            covered[name, strong].append(abs(error) <= quantile * estimate.std_err)
            if name == "cka":
                standardised.append(error / estimate.std_err)
    print(
        f"n = {options.rows}, {options.features} columns "
        f"({len(rows.landmarks)} landmarks, {len(rows.probes)} probes), "
        f"samples {options.first}–{options.first + options.samples - 1}"
    )
    print("| measure | strong | weak | all |")
    print("|:---|---:|---:|---:|")
    for name in MEASURES:
        strong, weak = covered[name, True], covered[name, False]
        shares = (np.mean(strong), np.mean(weak), np.mean(strong + weak))
        print(f"| {name} | " + " | ".join(f"{share:.3f}" for share in shares) + " |")
    print(f"sd of CKA error ÷ std_err: {np.std(standardised):.2f}")


if __name__ == "__main__":
    main()
