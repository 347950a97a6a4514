"""Distance alignment of two paired representations (Insulla et al. 2025, §3.2)."""

import numpy as np

from repalign.measures.kernels import _squared_distances
from repalign.measures.pair_moments import pair_statistic
from repalign.validation import check_pair, checked_column_means


def distance_alignment(X, Y):
    """Distance alignment D̂: how far apart the squared-distance matrices of X and Y are.

        D̂ = (1/n²) Σᵢⱼ (‖xᵢ − xⱼ‖² − ‖yᵢ − yⱼ‖²)²

    the empirical form of D(d₁, d₂) = ∫∫ (d₁²(x,x') − d₂²(x,x'))² dµ(x) dµ(x'), eq. [E13] of
    docs/theory.md §2.7, with Euclidean distances of the rows. 0 means the two representations
    are isometric. With ℓ₂-normalised rows and K the linear kernels,
    D̂ = 4(‖K₁‖² + ‖K₂‖² − 2‖K₁‖‖K₂‖·KA), ‖K‖ = ‖K‖_F / n. (The paper's 8C(1 − A) is off by a
    square: with ‖K₁‖ = ‖K₂‖ = C it is 8C²(1 − A).)

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
        Paired: row i of X and row i of Y describe the same sample.

    Returns
    -------
    float
        ≥ 0 up to round-off; a distance, not a similarity, and it scales with the data.

    Notes
    -----
    With aᵢ = ‖x̃ᵢ‖², bᵢ = ‖ỹᵢ‖² on centred rows and c = a − b, the squared-distance matrices
    are a1ᵀ + 1aᵀ − 2K, so
    n²D̂ = 2n Σcᵢ² + 2(Σcᵢ)² + 4‖K − L‖²_F − 8 cᵀ(K − L)1, and ‖K − L‖²_F =
    ‖X̃ᵀX̃‖² + ‖ỸᵀỸ‖² − 2‖X̃ᵀỸ‖²: O(n·(d_x + d_y)²) from second moments when
    n ≥ d_x + d_y + 2, else O(n²·d) from the distance matrices.

    References
    ----------
    Insulla, Huang & Rosasco (2025). Towards a Learning Theory of Representation Alignment,
    §3.2.
    """
    X, Y = check_pair(X, Y, min_rows=2, finite=False)  # the pass of column means checks
    means = [checked_column_means(A, name=name) for A, name in ((X, "X"), (Y, "Y"))]
    n = X.shape[0]
    if n < X.shape[1] + Y.shape[1] + 2:
        difference = _squared_distances(np.asarray(X, np.float64)) - _squared_distances(
            np.asarray(Y, np.float64)
        )
        return float(np.vdot(difference, difference) / n**2)
    m = pair_statistic(X, Y, means, norms=True).pair(0, 1, center=True)
    squares = m.norm_products(0, 0) + m.norm_products(1, 1) - 2.0 * m.norm_products(0, 1)
    total = m.norm_sum(0) - m.norm_sum(1)
    kernel_gap = sum(
        sign * np.vdot(m.cross(r, s), m.cross(r, s))
        for sign, (r, s) in ((1.0, (0, 0)), (1.0, (1, 1)), (-2.0, (0, 1)))
    )
    c_kernel_ones = sum(
        sign * (m.features_times_norms(r, 0) - m.features_times_norms(r, 1)) @ m.feature_sums(r)
        for sign, r in ((1.0, 0), (-1.0, 1))
    )
    return float((2 * n * squares + 2 * total**2 + 4 * kernel_gap - 8 * c_kernel_ones) / n**2)
