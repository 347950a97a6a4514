"""Kernel alignment, CKA and HSIC of two paired representations (docs/design.md §3).

All three are ratios or scalings of inner products of the kernel matrices K (of X) and L (of Y);
`repalign.measures.kernel_products` computes those products from Gram matrices or, for the
linear kernel when it is cheaper, from d×d second moments.
"""

import numpy as np

from repalign.errors import ZeroVarianceError
from repalign.measures.kernel_products import kernel_products
from repalign.registry import MEASURES
from repalign.validation import check_option, check_pair, check_sigma

KERNELS = MEASURES["ka"].kernels  # those of cka and hsic as well
CKA_ESTIMATORS = MEASURES["cka"].estimators
HSIC_ESTIMATORS = MEASURES["hsic"].estimators


def kernel_alignment(X, Y, *, kernel="linear", sigma="median"):
    """Kernel alignment (KA) of two paired representations, uncentered.

        KA = ⟨K, L⟩_F / sqrt(⟨K, K⟩_F ⟨L, L⟩_F)

    For the linear kernel this is eq. (1) of Insulla, Huang & Rosasco (2025),
    KA = ‖Σ̂₁₂‖²_F / (‖Σ̂₁₁‖_F ‖Σ̂₂₂‖_F) with Σ̂ₐᵦ = Zₐᵀ Zᵦ / n, the alignment of
    Cristianini et al. (2001). It is not invariant to translation; `cka` is.

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
        Paired: row i of X and row i of Y describe the same sample.
    kernel : {"linear", "rbf"}, default="linear"
    sigma : float or "median", default="median"
        RBF bandwidth; "median" takes each representation's median heuristic
        (`repalign.median_sigma`). Ignored by the linear kernel.

    Returns
    -------
    float
        In [0, 1] for these positive semi-definite kernels.

    Notes
    -----
    Linear kernel: O(n·(d_x + d_y)²) time and O((d_x + d_y)²) memory from second moments, or
    the n×n Gram matrices when n < d_x + d_y + 2. RBF: O(n²·d) time, O(n²) memory.

    References
    ----------
    Insulla, Huang & Rosasco (2025). Towards a Learning Theory of Representation Alignment,
    eq. (1). Cristianini, Shawe-Taylor, Elisseeff & Kandola (2001). On Kernel-Target Alignment.
    """
    products = _products(X, Y, kernel, sigma, min_rows=2, norms=False)
    return kernel_measure(products, "ka", None)


def cka(X, Y, *, kernel="linear", estimator="biased", sigma="median"):
    """Centered kernel alignment (CKA) of two paired representations.

        biased  CKA = HSIC_b(K, L) / sqrt(HSIC_b(K, K) HSIC_b(L, L))   (Kornblith et al. 2019)
        song    the same ratio of unbiased HSIC_u                     (Song et al. 2012)
        lange   cos(K', L'),  K' = H K H with its diagonal set to 0    (Lange et al. 2022)

    with H = I − 11ᵀ/n. ``biased`` equals KA of the centred kernels, [E4] of Insulla et al.

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
        Paired: row i of X and row i of Y describe the same sample.
    kernel : {"linear", "rbf"}, default="linear"
    estimator : {"biased", "song", "lange"}, default="biased"
        "song" needs n_samples >= 4.
    sigma : float or "median", default="median"
        RBF bandwidth per representation; ignored by the linear kernel.

    Returns
    -------
    float
        "biased" lies in [0, 1]; "song" and "lange" may fall slightly below 0 and are returned
        as computed, never clipped.

    Notes
    -----
    Cost as for `kernel_alignment`: the linear kernel never builds an n×n matrix when
    n ≥ d_x + d_y + 2.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019). Similarity of Neural Network Representations
    Revisited. Song, Smola, Gretton, Bedo & Borgwardt (2012). Feature Selection via Dependence
    Maximization, JMLR 13. Lange, Kwok, Matelsky, Wang, Rolnick & Kording (2022). Neural
    Networks as Paths through the Space of Representations, arXiv:2206.10999.
    """
    check_option(estimator, name="estimator", allowed=CKA_ESTIMATORS)
    min_rows = 4 if estimator == "song" else 2
    products = _products(X, Y, kernel, sigma, min_rows=min_rows, norms=estimator != "biased")
    return kernel_measure(products, "cka", estimator)


def hsic(X, Y, *, kernel="linear", estimator="biased", sigma="median"):
    """Hilbert–Schmidt independence criterion of two paired representations.

        biased    HSIC_b = Tr(K H L H) / (n − 1)²                       (Gretton et al. 2005)
        unbiased  HSIC_u = [Tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2·1ᵀK̃L̃1/(n−2)] / (n(n−3))
                  with K̃, L̃ the kernels with zero diagonals             (Song et al. 2012)

    Parameters
    ----------
    X, Y : array-like of shapes (n_samples, n_features_x), (n_samples, n_features_y)
    kernel : {"linear", "rbf"}, default="linear"
    estimator : {"biased", "unbiased"}, default="biased"
        "unbiased" needs n_samples >= 4.
    sigma : float or "median", default="median"
        RBF bandwidth per representation; ignored by the linear kernel.

    Returns
    -------
    float
        Not normalised: it scales with the kernels. The unbiased estimate may be negative and
        is returned as computed.

    Notes
    -----
    Some libraries divide the biased form by n² instead of (n − 1)²; the ratio (CKA) is the
    same. Cost as for `kernel_alignment`.

    References
    ----------
    Gretton, Bousquet, Smola & Schölkopf (2005). Measuring Statistical Dependence with
    Hilbert-Schmidt Norms. Song et al. (2012), eq. (5).
    """
    check_option(estimator, name="estimator", allowed=HSIC_ESTIMATORS)
    min_rows = 4 if estimator == "unbiased" else 2
    products = _products(X, Y, kernel, sigma, min_rows=min_rows, norms=estimator != "biased")
    return kernel_measure(products, "hsic", estimator)


def kernel_measure(products, name, estimator):
    """KA, CKA or HSIC from kernel products (`repalign.measures.kernel_products` or any
    object with the same ``raw``, ``centered``, ``song``, ``lange`` methods and ``n``).

    ``name`` is "ka", "cka" or "hsic", with the estimator names of `cka` and `hsic`.
    """
    if name == "hsic":
        if estimator == "unbiased":
            return float(products.song(0, 1))
        return float(products.centered(0, 1) / (products.n - 1) ** 2)
    if name == "ka":
        return _ratio(products.raw, "kernel alignment")
    product = {"biased": "centered", "song": "song", "lange": "lange"}[estimator]
    return _ratio(getattr(products, product), f"CKA ({estimator})")


def _products(X, Y, kernel, sigma, *, min_rows, norms):
    """Checked products; ``norms`` says whether the estimator reads squared-norm columns."""
    check_option(kernel, name="kernel", allowed=KERNELS)
    sigma = check_sigma(sigma)
    # The linear kernel's pass of column means checks for NaN and Inf (`kernel_products`).
    X, Y = check_pair(X, Y, min_rows=min_rows, finite=kernel != "linear")
    return kernel_products(X, Y, kernel=kernel, sigma=sigma, norms=norms)


def _ratio(product, what):
    """product(0, 1) / sqrt(product(0, 0) · product(1, 1)), refusing a degenerate norm."""
    norms = product(0, 0), product(1, 1)
    for value, name in zip(norms, ("X", "Y"), strict=True):
        if not value > 0:
            raise ZeroVarianceError(
                f"{what} is undefined: the kernel of {name} has no variation this estimator "
                f"can measure (its self-product is {value:.3g})."
            )
    return float(product(0, 1) / np.sqrt(norms[0] * norms[1]))
