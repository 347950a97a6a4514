"""Stitching: the alignment residual, the bounds it gives, and a trained stitcher (paper §4).

A stitched model runs model 1's representation f₁ through a stitcher S into model 2's head g₂:
h₁,₂ = g₂ ∘ S ∘ f₁ (docs/theory.md §4.1). With the squared loss R(h) = E‖h(x) − y‖²:

- the **alignment residual** Ã₂ = min_S E‖S f₁ − f₂‖² = Tr Σ₂₂ − Tr(Σ₂₁ Σ₁₁⁺ Σ₁₂) ([E25]) is the
  residual of the uncentred, intercept-free least-squares regression of f₂ on f₁, minimised at
  S* = Σ₂₁ Σ₁₁⁺ (`least_squares_map`). It comes from the same second moments as every linear
  measure (`repalign.stats.GramState`), so it scales like them: O(n·(d₁ + d₂)²) in one pass;
- **Theorem 1** ([E24]): for a κ₂-Lipschitz head, min_S R(g₂∘S∘f₁) ≤ (√R₂ + κ₂√Ã₂)²
  (`theorem1_bound`); the proof gives the same inequality for every fixed S ([E26]) on any
  distribution, so at S = S* it holds deterministically on the sample S* was fitted on;
- **Lemma 2** ([E21]–[E22], corrected): with linear heads the best stitcher reaches model 1's own
  linear-probe risk plus a rank defect (`linear_head_stitching_risk`);
- **Theorem 2** ([E27]) and Remark 6 ([E29], corrected): the same excess term bounds the risk
  gap R(H₁) − R(H₂) when the stitched class lies inside model 1's (`theorem2_gap_bound`,
  `risk_gap_bound`);
- `lipschitz_bound` gives κ₂ for a torch head: the spectral norm of a linear map, and for a
  chain the product of its affine pieces' spectral norms and its activations' constants;
- `train_stitcher` fits S (linear or affine) with the head frozen, by full-batch L-BFGS or
  Adam, with early stopping on validation rows.
"""

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from repalign.errors import InvalidParameterError, RowMismatchError, ShapeError
from repalign.stats import GramState
from repalign.validation import check_option, check_pair, check_representation

ACTIVATION_LIPSCHITZ = {
    nn.ReLU: 1.0,
    nn.Tanh: 1.0,
    nn.Sigmoid: 0.25,
    nn.Softmax: 0.5,
}
"""Lipschitz constants (ℓ₂) of elementwise activations and of the softmax.

ReLU and tanh: 1. Sigmoid: max σ' = 1/4. Softmax: its Jacobian diag(p) − ppᵀ is symmetric with
row i's absolute sum 2pᵢ(1 − pᵢ) ≤ 1/2, so its spectral norm is at most 1/2 (Gershgorin)."""
AFFINE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Flatten, nn.Unflatten, nn.Identity)
OPTIMIZERS = ("lbfgs", "adam")


# -- the least-squares stitcher and the alignment residual -------------------------------------


@dataclass(frozen=True)
class LinearMap:
    """z ↦ W z + b, applied to rows: Z Wᵀ + b.

    Attributes
    ----------
    weight : ndarray of shape (d₂, d₁)
    bias : ndarray of shape (d₂,)
        Zeros for a linear (intercept-free) map.
    residual : float or None
        For a least-squares map, mean ‖W z₁ + b − z₂‖² on the rows it was fitted on (Ã₂).
    rounding : float or None
        For a least-squares map, an upper bound on the absolute float64 rounding error of
        ``residual`` (`residual_rounding`).
    """

    weight: np.ndarray
    bias: np.ndarray
    residual: float | None = None
    rounding: float | None = None

    def __call__(self, Z):
        return np.asarray(Z, dtype=np.float64) @ self.weight.T + self.bias


def least_squares_map(Z1, Z2, *, affine=False):
    """The stitcher S* that maps f₁ onto f₂ best in mean square, and its residual Ã₂.

        S* = Σ₂₁ Σ₁₁⁺,   Ã₂ = Tr Σ₂₂ − Tr(Σ₂₁ Σ₁₁⁺ Σ₁₂)                (docs/theory.md [E25])

    with Σ the uncentred second moments (1/n) Σᵢ zᵢzᵢᵀ, as in the paper (no intercept). With
    ``affine=True`` the map has an intercept b = μ₂ − S*μ₁, and Σ are the centred moments: the
    residual of the affine class, which Remark 3 allows in the bound.

    Parameters
    ----------
    Z1, Z2 : array-like of shapes (n_samples, d₁), (n_samples, d₂)
        Paired rows of the source and target representations.
    affine : bool, default=False

    Returns
    -------
    LinearMap
        ``weight`` S* (d₂ × d₁), ``bias``, ``residual`` Ã₂.

    Notes
    -----
    Computed from `repalign.stats.GramState` (one pass, O(n·(d₁ + d₂)²) time, O((d₁ + d₂)²)
    memory), as the all-pairs job computes it. Σ₁₁⁺ drops eigenvalues below d₁·ε·λ_max, so a
    rank-deficient f₁ gives the minimum-norm S*.
    """
    Z1, Z2 = check_pair(Z1, Z2, min_rows=2, names=("Z1", "Z2"))
    return least_squares_map_from_state(GramState.from_arrays([Z1, Z2]), 0, 1, affine=affine)


def alignment_residual(Z1, Z2, *, affine=False):
    """Ã₂: how much of f₂ no linear (or affine) map of f₁ explains, in mean square ([E25]).

    Zero when Z2 = Z1 M for some M; invariant to invertible linear maps of Z1 and orthogonal
    maps of Z2; multiplied by c² when Z2 is; not symmetric in its arguments (docs/theory.md §4.3).
    See `least_squares_map`.
    """
    return least_squares_map(Z1, Z2, affine=affine).residual


def least_squares_map_from_state(state, i, j, *, affine=False):
    """`least_squares_map` of representation i onto j of a `GramState` (an all-pairs job's)."""
    moments = state.pair(i, j, center=affine)
    n = moments.n
    values, vectors = np.linalg.eigh(moments.cross(0, 0))
    keep = values > len(values) * np.finfo(float).eps * max(values[-1], 0.0)
    projected = vectors[:, keep].T @ moments.cross(0, 1)  # Vᵀ Σ₁₂, kept directions
    coefficients = vectors[:, keep] @ (projected / values[keep, None])  # Σ₁₁⁺ Σ₁₂ = S*ᵀ
    explained = float(np.sum(projected**2 / values[keep, None]))
    residual = max(float(np.trace(moments.cross(1, 1))) - explained, 0.0) / float(n)
    weight = np.ascontiguousarray(coefficients.T)
    bias = state.mean(j) - weight @ state.mean(i) if affine else np.zeros(weight.shape[0])
    rounding = residual_rounding(
        weight, n, _uncentred_moment(state, i), _uncentred_moment(state, j)
    )
    return LinearMap(weight, bias, residual, rounding)


def residual_rounding(weight, n, source_moment, target_moment):
    """An upper bound δ on how far the fitted map's residual can be from the computed Ã₂.

        δ = ε · [ (n + d₂)·m₂ + 2n·‖Ŝ‖_F·√(m₁m₂) + (n + d₁)·m₁·‖Ŝ‖²_F ],   ε = 2⁻⁵² (float64)

    with mᵢ = E‖zᵢ‖² (uncentred: centred moments are taken from uncentred sums) and Ŝ the
    fitted weight (d₂ × d₁). Ã₂ = Tr Σ₂₂ − Tr(Σ₂₁ Σ₁₁⁺ Σ₁₂) is a difference of two terms of
    size up to m₂, so its error is absolute, not relative to Ã₂. A first-order worst-case
    analysis, term by term: Tr Σ₂₂, a sum over n rows and d₂ entries, is good to (n + d₂)·ε·m₂;
    an error F in Σ₁₂ (each entry a sum of n products, so ‖F‖_F ≤ n·ε·√(m₁m₂) by
    Cauchy–Schwarz) moves the explained part by 2⟨Ŝ, F⟩; an error E in Σ₁₁ (its sums, ≤ n·ε·m₁
    in norm, plus the eigensolver's backward error, ≤ d₁·ε·λ_max ≤ d₁·ε·m₁) moves it by
    Tr(Ŝ E Ŝᵀ) ≤ ‖E‖₂·‖Ŝ‖²_F. The last term grows with the conditioning of Σ₁₁, through ‖Ŝ‖.

    Near Ã₂ = 0 (a representation stitched onto itself) the computed Ã₂ may be clipped to 0
    while the fitted Ŝ is the identity only up to rounding, and √Ã₂ in Theorem 1 magnifies δ
    to √δ; `rounded_theorem1_bound` widens the bound by δ.
    """
    d2, d1 = weight.shape
    norm = float(np.linalg.norm(weight))
    return np.finfo(np.float64).eps * (
        (n + d2) * target_moment
        + 2.0 * n * norm * math.sqrt(source_moment * target_moment)
        + (n + d1) * source_moment * norm**2
    )


# -- the bounds ---------------------------------------------------------------------------------


def theorem1_bound(risk2, residual, kappa2):
    """Theorem 1 of Insulla et al.: min_S R(g₂∘S∘f₁) ≤ (√R₂ + κ₂√Ã₂)²  ([E24]).

    Equal to R₂ + κ₂²Ã₂ + 2κ₂√(Ã₂R₂). The proof's per-S form ([E26]) bounds R(g₂∘S∘f₁) for any
    fixed S by the same expression with Ã₂ replaced by E‖S f₁ − f₂‖², on any distribution:
    with S = S* fitted on a sample, the bound holds on that sample exactly.

    Parameters
    ----------
    risk2 : float
        R₂ = E‖g₂(f₂(x)) − y‖², model 2's own risk (≥ 0).
    residual : float
        Ã₂ (≥ 0), e.g. from `alignment_residual`.
    kappa2 : float
        A Lipschitz constant of g₂ (≥ 0), e.g. from `lipschitz_bound`.
    """
    risk2, residual, kappa2 = _non_negative(risk2=risk2, residual=residual, kappa2=kappa2)
    return (math.sqrt(risk2) + kappa2 * math.sqrt(residual)) ** 2


def rounded_theorem1_bound(risk2, residual, kappa2, *, rounding, terms):
    """`theorem1_bound` widened by float64 rounding, to check a computed risk against it.

        (√R₂ + κ₂√(Ã₂ + δ))² · (1 + 2·m·ε)

    A risk computed as the mean of m = ``terms`` squared errors carries a relative rounding
    error of at most m·ε (recursive summation, first order), and so does R₂; Ã₂ carries the
    absolute error δ = ``rounding`` (`residual_rounding`, or m·ε·Ã₂ for a residual computed
    directly as a mean of m squares). A computed risk that obeys Theorem 1 in exact
    arithmetic is therefore at most this value on any CPU.
    """
    widened = theorem1_bound(risk2, residual + rounding, kappa2)
    return widened * (1.0 + 2.0 * terms * np.finfo(np.float64).eps)


def theorem2_gap_bound(risk2, residual, kappa2):
    """Theorem 2 ([E27]): R(H₁) − R(H₂) ≤ κ₂²Ã₂ + 2κ₂√(Ã₂R₂), the excess of Theorem 1.

    It applies to forward stitching (Lemma 3): the same targets, and every g₂∘S a valid head of
    model 1, so that R(H₁) ≤ R^stitch. Over layers j, the smallest of these bounds holds
    ([E28]).
    """
    risk2, residual, kappa2 = _non_negative(risk2=risk2, residual=residual, kappa2=kappa2)
    return kappa2**2 * residual + 2.0 * kappa2 * math.sqrt(residual * risk2)


def risk_gap_bound(risk1, risk2, residual1, residual2, kappa1, kappa2):
    """Remark 6 both ways: |R(H₁) − R(H₂)| ≤ maxᵢ κᵢ²Ãᵢ + 2κᵢ√(ÃᵢR(Hᵢ)).

    The paper prints R(H_q) inside the maximum; working the swap through gives R(Hᵢ) for the
    i-th term (docs/theory.md [E29], flag 10). Ã₁ regresses f₁ on f₂; Ã₂ regresses f₂ on f₁.
    """
    return max(
        theorem2_gap_bound(risk1, residual1, kappa1), theorem2_gap_bound(risk2, residual2, kappa2)
    )


@dataclass(frozen=True)
class LinearHeadStitching:
    """Lemma 2 for linear heads: the best linear stitcher's risk, split in its two parts.

    ``probe_risk`` is R₁: the risk of the least-squares linear probe W₁ of y on f₁. ``defect``
    is ‖(I − W₂W₂⁺) W₁ Σ₁₁^{1/2}‖²_F, zero when W₂ has full row rank. ``risk`` is their sum,
    min_S mean ‖W₂ S z₁ − y‖²; ``stitcher`` = W₂⁺W₁ attains it.
    """

    probe_risk: float
    defect: float
    risk: float
    stitcher: np.ndarray


def linear_head_stitching_risk(Z1, Y, W2):
    """The smallest risk of W₂ S f₁ over linear S, in closed form (Lemma 2, corrected).

        min_S E‖W₂ S f₁ − y‖² = R₁ + ‖(I − W₂W₂⁺) W₁ Σ₁₁^{1/2}‖²_F          (docs/theory.md [E22])

    where W₁ is the intercept-free least-squares probe of y on f₁ and R₁ its risk. The paper's
    projector has mismatched shapes (flag 9); this is the corrected form. When W₂ has full row
    rank t ≤ d₂ the defect vanishes and stitching does exactly as well as model 1's own linear
    probe (Lemma 2, Remark 2).

    Parameters
    ----------
    Z1 : array-like of shape (n_samples, d₁)
    Y : array-like of shape (n_samples, t) or (n_samples,)
    W2 : array-like of shape (t, d₂)
        Model 2's linear head.

    Returns
    -------
    LinearHeadStitching
    """
    Z1 = check_representation(Z1, name="Z1").astype(np.float64)
    Y = _targets(Y, Z1.shape[0])
    W2 = check_representation(W2, name="W2", min_rows=1, constant_ok=True).astype(np.float64)
    if W2.shape[0] != Y.shape[1]:
        raise ShapeError(
            f"W2 must have one row per target column: Y has {Y.shape[1]} columns, W2 has shape "
            f"{W2.shape}."
        )
    n = Z1.shape[0]
    probe = np.linalg.lstsq(Z1, Y, rcond=None)[0].T  # W₁, t × d₁
    probe_risk = float(np.sum((Z1 @ probe.T - Y) ** 2)) / n
    outside = probe - W2 @ (np.linalg.pinv(W2) @ probe)  # (I − W₂W₂⁺) W₁
    defect = max(float(np.sum((Z1 @ outside.T) ** 2)) / n, 0.0)  # Tr(P W₁ Σ₁₁ W₁ᵀ P)
    return LinearHeadStitching(
        probe_risk, defect, probe_risk + defect, stitcher=np.linalg.pinv(W2) @ probe
    )


# -- Lipschitz constants ------------------------------------------------------------------------


def lipschitz_bound(head, input_dim):
    """An upper bound on the ℓ₂ Lipschitz constant κ of a torch head on flat inputs.

    The head's modules are walked in order (containers are opened). Consecutive affine modules
    (linear and convolution layers, flatten/unflatten) are one affine piece, whose exact
    constant is the spectral norm of its linear part: the largest singular value of its
    Jacobian, formed by applying the piece without its biases to the unit vectors. Activations
    contribute their constants (`ACTIVATION_LIPSCHITZ`). The bound is the product over pieces
    and activations: exact for a linear head, the usual product bound for an MLP (docs/theory.md
    §4.5, steps 7–8).

    Parameters
    ----------
    head : torch.nn.Module
        Maps (batch, input_dim) to outputs; built from `AFFINE_MODULES` and the activations of
        `ACTIVATION_LIPSCHITZ` (nn.Sequential and other containers are opened in order).
    input_dim : int

    Returns
    -------
    float
    """
    modules = list(_leaf_modules(head))
    bound, piece = 1.0, []
    probe = torch.zeros(1, int(input_dim), dtype=torch.float64)
    piece_input = probe
    for module in modules:
        module = copy.deepcopy(module).double()
        if isinstance(module, AFFINE_MODULES):
            piece.append(module)
        else:
            constant = _activation_constant(module)
            bound *= _spectral_norm(piece, piece_input)
            probe = nn.Sequential(*piece)(probe) if piece else probe
            probe = module(probe)
            piece_input, piece = probe, []
            bound *= constant
    return bound * _spectral_norm(piece, piece_input)


def _leaf_modules(module):
    children = list(module.children())
    if not children:
        yield module
    for child in children:
        yield from _leaf_modules(child)


def _activation_constant(module):
    for kind, constant in ACTIVATION_LIPSCHITZ.items():
        if isinstance(module, kind):
            return constant
    known = ", ".join(k.__name__ for k in (*AFFINE_MODULES, *ACTIVATION_LIPSCHITZ))
    raise InvalidParameterError(
        f"head holds a {type(module).__name__}, whose Lipschitz constant repalign does not "
        f"know; heads may hold {known}."
    )


def _spectral_norm(piece, example):
    """Largest singular value of the linear part of an affine chain, at inputs like
    ``example`` (1, ...)."""
    if not piece:
        return 1.0
    chain = nn.Sequential(*piece)
    for module in chain.modules():
        if getattr(module, "bias", None) is not None:
            module.bias = None
    size = example[0].numel()
    with torch.no_grad():
        basis = torch.eye(size, dtype=torch.float64).reshape(size, *example.shape[1:])
        jacobian = chain(basis).reshape(size, -1)
    return float(torch.linalg.matrix_norm(jacobian, ord=2))


# -- risks and the trained stitcher ------------------------------------------------------------


def squared_risk(predictions, Y):
    """mean ‖ŷᵢ − yᵢ‖²: the squared loss of the paper (§4.1), averaged over rows."""
    predictions = np.asarray(predictions, dtype=np.float64)
    return float(np.sum((predictions - Y) ** 2) / len(Y))


def head_outputs(head, Z):
    """``head`` applied to the rows of ``Z`` in float64, as a numpy array."""
    head = _float64(head)
    with torch.no_grad():
        return head(torch.as_tensor(np.asarray(Z, dtype=np.float64))).numpy()


@dataclass
class TrainedStitcher:
    """A stitcher fitted with the head frozen, and how the fit went.

    Attributes
    ----------
    map : LinearMap
        The stitcher at the epoch of lowest validation risk (the last epoch without
        validation rows).
    epochs : int
        Epochs run (an L-BFGS epoch is up to 20 iterations with a strong-Wolfe line search).
    best_epoch : int
        The epoch kept; 0 is the initial map.
    history : list of (train risk, validation risk or None), one per epoch from epoch 0
    """

    map: LinearMap
    epochs: int
    best_epoch: int
    history: list = field(default_factory=list)


def train_stitcher(
    Z1,
    Y,
    head,
    *,
    affine=False,
    init=None,
    validation=None,
    optimizer="lbfgs",
    max_epochs=50,
    patience=5,
    learning_rate=1e-2,
    seed=0,
):
    """Fit S (and b if ``affine``) to minimise mean ‖g₂(S z₁ + b) − y‖², the head g₂ frozen.

    Parameters
    ----------
    Z1 : array-like of shape (n_samples, d₁)
        Source representation on the training rows.
    Y : array-like of shape (n_samples, t)
        Targets, compared with the head's outputs by the squared loss.
    head : torch.nn.Module
        Model 2's layers after the stitched one (frozen; evaluated in float64).
    affine : bool, default=False
        Fit an intercept too.
    init : LinearMap, optional
        Starting point, e.g. `least_squares_map` onto model 2's representation; else
        small random weights from ``seed``. Starting at S* and descending with L-BFGS's
        line search, the training risk never rises above the risk at S*, which Theorem 1
        bounds.
    validation : (Z1, Y), optional
        Rows held out for early stopping: the epoch of lowest validation risk is kept, and
        training stops after ``patience`` epochs without a new lowest.
    optimizer : {"lbfgs", "adam"}, default="lbfgs"
        Full-batch either way.
    max_epochs, patience : int
    learning_rate : float, default=1e-2
        Adam's step size; L-BFGS uses a line search instead.
    seed : int, default=0

    Returns
    -------
    TrainedStitcher
    """
    Z1 = check_representation(Z1, name="Z1").astype(np.float64)
    Y = _targets(Y, Z1.shape[0])
    check_option(optimizer, name="optimizer", allowed=OPTIMIZERS)
    _positive_int(max_epochs=max_epochs, patience=patience)
    head = _float64(head)
    for parameter in head.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    d_in = Z1.shape[1]
    d_out = _output_width(init, head, d_in)
    if init is None:
        weight = torch.randn(d_out, d_in, generator=generator, dtype=torch.float64)
        weight /= math.sqrt(d_in)
        bias = torch.zeros(d_out, dtype=torch.float64)
    else:
        weight = torch.tensor(init.weight, dtype=torch.float64).contiguous()
        bias = torch.tensor(init.bias, dtype=torch.float64).contiguous()
    weight.requires_grad_(True)
    parameters = [weight]
    if affine:
        bias.requires_grad_(True)
        parameters.append(bias)
    x, y = torch.from_numpy(Z1), torch.from_numpy(Y)
    held_out = None
    if validation is not None:
        held_out = (
            torch.from_numpy(check_representation(validation[0], name="validation Z1")).double(),
            torch.from_numpy(_targets(validation[1], len(validation[0]))),
        )

    def risk(inputs, targets):
        return ((head(inputs @ weight.T + bias) - targets) ** 2).sum() / len(targets)

    def evaluate():
        with torch.no_grad():
            return (float(risk(x, y)), float(risk(*held_out)) if held_out else None)

    if optimizer == "lbfgs":
        step = torch.optim.LBFGS(parameters, max_iter=20, line_search_fn="strong_wolfe")
    else:
        step = torch.optim.Adam(parameters, lr=learning_rate)

    def closure():
        step.zero_grad()
        loss = risk(x, y)
        loss.backward()
        return loss

    history = [evaluate()]
    best = (_score(history[0]), 0, weight.detach().clone(), bias.detach().clone())
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        if optimizer == "lbfgs":
            step.step(closure)
        else:
            for _ in range(20):
                step.step(closure)
        history.append(evaluate())
        if _score(history[-1]) < best[0]:
            best = (_score(history[-1]), epoch, weight.detach().clone(), bias.detach().clone())
        elif epoch - best[1] >= patience:
            break
    _, best_epoch, best_weight, best_bias = best
    fitted = LinearMap(best_weight.numpy(), best_bias.numpy())
    return TrainedStitcher(fitted, epochs=epoch, best_epoch=best_epoch, history=history)


def _score(entry):
    train, validation = entry
    return validation if validation is not None else train


def _output_width(init, head, d_in):
    if init is not None:
        return init.weight.shape[0]
    first = next((m for m in _leaf_modules(head) if isinstance(m, nn.Linear)), None)
    if first is None:
        raise InvalidParameterError(
            "init is needed when the head does not start with nn.Linear: the stitcher's output "
            "width cannot be read from the head."
        )
    return first.in_features


def _float64(head):
    return copy.deepcopy(head).double().eval()


def _targets(Y, n):
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise ShapeError(f"Y must be 1-D or 2-D (n_samples, n_targets); got shape {Y.shape}.")
    if Y.shape[0] != n:
        raise RowMismatchError(f"Y must have one row per sample: {n} expected, got {Y.shape[0]}.")
    if not np.isfinite(Y).all():
        raise InvalidParameterError("Y holds NaN or infinite values.")
    return Y


def _uncentred_moment(state, i):
    """E‖zᵢ‖² of representation i of a `GramState`."""
    return float(np.trace(state.pair(i, i, center=False).cross(0, 0))) / float(state.n)


def _non_negative(**values):
    for name, value in values.items():
        if not (isinstance(value, int | float | np.floating | np.integer) and value >= 0):
            raise InvalidParameterError(f"{name} must be a non-negative number; got {value!r}.")
    return tuple(float(v) for v in values.values())


def _positive_int(**values):
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidParameterError(f"{name} must be a positive integer; got {value!r}.")
