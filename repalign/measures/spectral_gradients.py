"""First-order changes of Procrustes, CCA and SVCCA in the centred second moments of a pair
(docs/theory.md §2.11, [E39]): the gradients from which the jackknife forms the linearised value
of each statistic without a group, instead of a new SVD and eigendecomposition per group.

Each measure θ is a function of the centred blocks C_xx = X̃ᵀX̃, C_xy = X̃ᵀỸ and C_yy = ỸᵀỸ
(`repalign.measures.spectra.FeatureSpectra`), and its first-order change is

    dθ = ⟨G_xx, dC_xx⟩ + ⟨G_xy, dC_xy⟩ + ⟨G_yy, dC_yy⟩.

All three are unchanged when the three blocks are scaled together, so ⟨G, C⟩ = 0 (Euler's
theorem for functions homogeneous of degree 0): the gradient at the whole statistic, applied to
the statistic without a group, gives the change from the whole up to the same constant for every
group.
"""

from typing import NamedTuple

import numpy as np


class MomentGradient(NamedTuple):
    """∂θ/∂C_xx (d_x × d_x), ∂θ/∂C_xy (d_x × d_y) and ∂θ/∂C_yy (d_y × d_y); a number c for
    ∂θ/∂C_xx or ∂θ/∂C_yy stands for c·I."""

    xx: np.ndarray | float
    xy: np.ndarray
    yy: np.ndarray | float


def procrustes_gradient(spectra):
    """Of θ = ‖C_xy‖_* / sqrt(tr C_xx · tr C_yy) (`repalign.measures.procrustes`), with
    C_xy = U S Vᵀ: d‖C_xy‖_* = ⟨UVᵀ, dC_xy⟩ where the singular values are positive (Watson
    1992), so

        G_xy = θ · UVᵀ / ‖C_xy‖_*,   G_xx = −θ / (2 tr C_xx) · I,   G_yy = −θ / (2 tr C_yy) · I

    (G_xx and G_yy as the numbers that multiply I).

    None where θ is not differentiable: a side without variance, or C_xy = 0.
    """
    total_x, total_y = spectra.total_variances()
    U, singular, Vt = thin_svd(spectra.cross)
    nuclear = singular.sum()
    if not (total_x > 0 and total_y > 0 and nuclear > 0):
        return None
    value = nuclear / np.sqrt(total_x * total_y)
    return MomentGradient(
        xx=-value / (2 * total_x), xy=(value / nuclear) * (U @ Vt), yy=-value / (2 * total_y)
    )


def canonical_gradient(spectra, kx, ky, *, squared):
    """Of the mean canonical correlation θ = (1/m) Σ f(ρₖ) over the leading kx and ky principal
    directions (`repalign.measures.cca`: CCA with kx, ky the ranks, SVCCA with the components it
    keeps), f(ρ) = ρ or ρ², m = min(kx, ky); kx and ky are held fixed.

    With T = Λₓ^{-½} Pₓᵀ C_xy P_y Λ_y^{-½} = U diag(ρ) Vᵀ (`whitened_cross`) and the canonical
    vectors aₖ = Pₓ Λₓ^{-½} uₖ, bₖ = P_y Λ_y^{-½} vₖ (aₖᵀ C_xx aₖ = bₖᵀ C_yy bₖ = 1), each ρₖ is
    a stationary value of aᵀC_xy b / sqrt(aᵀC_xx a · bᵀC_yy b) over the kept directions, so

        dρₖ = aₖᵀ dC_xy bₖ − ρₖ/2 (aₖᵀ dC_xx aₖ + bₖᵀ dC_yy bₖ) + (rotation of the kept directions)

    (the derivative of a stationary value is the partial one at the stationary point). A kept
    direction pᵢ (variance λᵢ) turns towards a dropped one vⱼ (λⱼ) by vⱼᵀ dC_xx pᵢ / (λᵢ − λⱼ)
    (first-order eigenvector perturbation), which moves aₖ within the new span and adds

        Σₖ f′(ρₖ) (dPₓ Λₓ^{-½} uₖ)ᵀ C_xy bₖ = ⟨dC_xx, Vₓ (M ⊘ Δλ) Pₓᵀ⟩,
        M = Vₓᵀ C_xy (Σₖ f′(ρₖ) bₖ uₖᵀ) Λₓ^{-½},   Δλⱼᵢ = λᵢ − λⱼ,

    with Vₓ the dropped directions; the same on the y side. For CCA the dropped directions have
    no variance and the term is zero up to round-off; for SVCCA it is the change of the kept
    subspace itself.

    None where θ is not differentiable: a side without variance (kx or ky is 0), or every
    canonical correlation 0.
    """
    if min(kx, ky) == 0:
        return None
    bases, variances = spectra.bases, spectra.variances
    U, rho, Vt = thin_svd(spectra.whitened_cross(kx, ky))
    if len(rho) == 0:
        return None
    m = min(kx, ky)
    slope = 2.0 * rho if squared else np.ones_like(rho)  # f′(ρ)
    scale_x, scale_y = 1.0 / np.sqrt(variances[0][:kx]), 1.0 / np.sqrt(variances[1][:ky])
    A = bases[0][:, :kx] @ (scale_x[:, None] * U)  # canonical vectors, columns aₖ
    B = bases[1][:, :ky] @ (scale_y[:, None] * Vt.T)
    # −Σₖ f′(ρₖ) ρₖ/2 aₖaₖᵀ as one symmetric product (numpy's dsyrk): f′(ρₖ) ρₖ ≥ 0
    root = np.sqrt(slope * rho / 2)
    weighted_a, weighted_b = A * root, B * root
    xx, yy = -(weighted_a @ weighted_a.T), -(weighted_b @ weighted_b.T)
    cross = spectra.cross
    if kx < len(variances[0]):  # Vₓᵀ C_xy Σₖ f′(ρₖ) bₖ uₖᵀ, Vₓ the dropped directions
        pulled = np.linalg.multi_dot([bases[0][:, kx:].T, cross, B * slope, U.T])
        xx += _turning(bases[0], variances[0], kx, pulled)
    if ky < len(variances[1]):
        pulled = np.linalg.multi_dot([bases[1][:, ky:].T, cross.T, A * slope, Vt])
        yy += _turning(bases[1], variances[1], ky, pulled)
    return MomentGradient(xx=xx / m, xy=(A * slope) @ B.T / m, yy=yy / m)


def _turning(basis, variances, kept, pulled):
    """⟨dC, ·⟩ of the turn of the ``kept`` leading directions of ``basis`` towards the dropped
    ones (there are some), where ``pulled`` ((d − kept) × kept) is Vᵀ C_xy Σₖ f′(ρₖ) bₖ uₖᵀ
    (or its y-side mirror), V the dropped directions. The products, this one's and the
    caller's, are taken in the order that keeps them narrow (`numpy.linalg.multi_dot`): SVCCA
    drops a few directions of many, or keeps a few."""
    gaps = variances[None, :kept] - variances[kept:, None]
    turn = pulled / np.sqrt(variances[None, :kept]) / gaps
    return np.linalg.multi_dot([basis[:, kept:], turn, basis[:, :kept].T])


def thin_svd(M):
    """U, s, Vᵀ of M over its singular values above ε^{1/4} s_max, from the eigendecomposition
    of the smaller Gram matrix, MMᵀ or MᵀM: a third of the time of an SVD with vectors at
    512 × 512. An eigenvalue λ = s² is exact to about d·ε·λ_max, so each kept s is accurate to a
    relative 1e-5, ample for a gradient whose use, a standard error, is itself a statistical
    estimate. The dropped singular values are zero up to rounding, or too small for the measure
    to be differentiable at the scale of the groups' changes; M = 0 keeps none."""
    wide = M.shape[0] <= M.shape[1]
    values, vectors = np.linalg.eigh(M @ M.T if wide else M.T @ M)
    kept = values > np.sqrt(np.finfo(float).eps) * values.max(initial=0.0)
    singular, vectors = np.sqrt(values[kept]), vectors[:, kept]
    if wide:
        return vectors, singular, (vectors.T @ M) / singular[:, None]
    return (M @ vectors) / singular, singular, vectors.T
