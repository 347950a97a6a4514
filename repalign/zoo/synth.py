"""The synthetic zoo: noisy views of one shared latent, with a known alignment structure.

Every model sees the same latent Z of shape (rows, k), standard normal, k = min(dim, 16):

    X_m = (Z A_m) R_m · scale_m + noise_m · E_m

with A_m = [diag(w_m) 0] of shape (k, dim) weighting the latent factors, R_m a Haar-random
rotation of R^dim, scale_m > 0, and E_m standard normal noise of shape (rows, dim). The models
go from faithful to distorted: model m of M, at t = m / (M − 1), has latent weights
w_m = exp(γ t u_m) with u_m ~ N(0, I_k) and γ = 0.4, and the noise level that leaves the share
f_m = 0.98 − 0.83 t of its covariance's squared Frobenius norm to the signal. With infinitely
many rows the linear CKA of two models is then (`population_cka`)

    CKA(m, m') = Σ_j w_mj² w_m'j² / sqrt(F_m F_m'),   F_m = Σ_j w_mj⁴ + 2 σ_m² Σ_j w_mj² + dim σ_m⁴

where σ_m = noise_m / scale_m; for 8 models it spreads from about 0.1 to about 0.95 (rotation
and scale leave CKA unchanged, they only make the models look different). Rows are generated
and written batch by batch, each batch from its own seeded generator, so memory stays bounded
whatever ``rows`` is.
"""

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from repalign.store import RepresentationWriter
from repalign.validation import check_int_in_range

MAX_LATENT_DIM = 16
DISTORTION = 0.4  # γ: spread of the log latent weights of the last model
SIGNAL_SHARE = (0.98, 0.15)  # f of the first and of the last model
LAYER = "layer"
BATCH_ROWS = 8192  # rows generated at once; also the unit of the per-batch seeds
SHARD_ROWS = 16_384  # the same for every representation, so shards of the zoo line up
MAX_DIM = 4096
MAX_MODELS = 1000
MAX_ROWS = 10**12
# Independent random streams: np.random.default_rng([seed, stream, ...]).
PARAMETER_STREAM, LATENT_STREAM, NOISE_STREAM = 0, 1, 2


@dataclass(frozen=True)
class SynthModel:
    """The generating parameters of one synthetic model (see the module docstring)."""

    latent_weights: np.ndarray  # w, shape (k,)
    rotation: np.ndarray  # the first k rows of R, shape (k, dim), orthonormal rows
    scale: float
    noise: float  # noise_m, in the units of X_m
    signal_share: float  # f_m

    def source(self):
        """The parameters that go into ``source`` (the rotation is regenerated from the seed)."""
        return {
            "latent_weights": self.latent_weights.tolist(),
            "scale": self.scale,
            "noise": self.noise,
            "signal_share": self.signal_share,
        }


def build_synth_zoo(
    store_path, *, models=8, dim=64, rows=10_000, seed=0, progress=True, overwrite=False
):
    """Write ``models`` synthetic representations ``synth-mNN.layer`` of shape (rows, dim).

    Parameters
    ----------
    store_path : path-like
        The store folder (created if missing).
    models : int, default=8
        Number of models, at least 2.
    dim : int, default=64
        Width of every representation, 1 to 4096.
    rows : int, default=10_000
        Number of samples (ids 0 .. rows − 1), at least 2. Memory does not grow with it.
    seed : int, default=0
        Seeds every random draw; the same arguments give byte-identical shards.
    progress : bool, default=True
        Show a progress bar over the rows written.
    overwrite : bool, default=False
        Replace representations of the same names.

    Returns
    -------
    list of str
        The representation names, model 0 (the most faithful) first.
    """
    models = check_int_in_range(models, name="models", low=2, high=MAX_MODELS)
    dim = check_int_in_range(dim, name="dim", low=1, high=MAX_DIM)
    rows = check_int_in_range(rows, name="rows", low=2, high=MAX_ROWS)
    seed = check_int_in_range(seed, name="seed", low=0, high=2**63 - 1)
    parameters = synth_models(models, dim, seed)
    expected = population_cka(parameters)
    digits = max(2, len(str(models - 1)))
    names = [f"synth-m{m:0{digits}d}.{LAYER}" for m in range(models)]
    common = {
        "zoo": "synth",
        "dataset": "synthetic: X_m = (Z A_m) R_m · scale_m + noise_m · E_m (repalign.zoo.synth)",
        "layer": LAYER,
        "seed": seed,
        "models": models,
        "dim": dim,
        "rows": rows,
        "latent_dim": parameters[0].latent_weights.size,
        "distortion": DISTORTION,
        "signal_share_range": list(SIGNAL_SHARE),
        "batch_rows": BATCH_ROWS,
    }
    with tqdm(
        total=models * rows, desc="zoo synth", unit="row", unit_scale=True, disable=not progress
    ) as bar:
        for m, (name, model) in enumerate(zip(names, parameters, strict=True)):
            source = {
                **common,
                "model": name.split(".")[0],
                "index": m,
                **model.source(),
                "population_cka": expected[m].tolist(),
            }
            with RepresentationWriter(
                store_path, name, source=source, shard_rows=SHARD_ROWS, overwrite=overwrite
            ) as writer:
                for ids, batch in synth_batches(model, m, rows, seed):
                    writer.write(ids, batch)
                    bar.update(len(ids))
    return names


def synth_models(models, dim, seed):
    """The generating parameters of each model, drawn from ``seed``; list of `SynthModel`."""
    rng = np.random.default_rng([seed, PARAMETER_STREAM])
    k = min(dim, MAX_LATENT_DIM)
    parameters = []
    for t in np.linspace(0.0, 1.0, models):
        weights = np.exp(DISTORTION * t * rng.standard_normal(k))
        share = SIGNAL_SHARE[0] + (SIGNAL_SHARE[1] - SIGNAL_SHARE[0]) * t
        scale = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        parameters.append(
            SynthModel(
                latent_weights=weights,
                rotation=_haar_rows(rng, k, dim),
                scale=scale,
                noise=scale * _noise_for_share(weights, share, dim),
                signal_share=float(share),
            )
        )
    return parameters


def population_cka(parameters):
    """Linear CKA between the models of `synth_models` in the limit of infinitely many rows.

    Returns
    -------
    ndarray of shape (models, models)
        Symmetric, ones on the diagonal. Measured CKA on ``rows`` samples differs from it by
        the estimator's finite-sample error, which shrinks like 1 / sqrt(rows) (plus a bias of
        order dim / rows from the noise).
    """
    dim = parameters[0].rotation.shape[1]
    signal = np.array([p.latent_weights**2 for p in parameters])  # eigenvalues of the signal
    sigma2 = np.array([(p.noise / p.scale) ** 2 for p in parameters])
    norms = np.sum(signal**2, axis=1) + 2 * sigma2 * signal.sum(axis=1) + dim * sigma2**2
    cross = signal @ signal.T
    np.fill_diagonal(cross, norms)
    return cross / np.sqrt(np.outer(norms, norms))


def synth_batches(model, index, rows, seed):
    """Yield ``(ids, X_m rows)`` in batches of ``BATCH_ROWS``, float32.

    The latent batch b comes from the generator ``[seed, LATENT_STREAM, b]``, the same for every
    model, and the noise from ``[seed, NOISE_STREAM, index, b]``.
    """
    k = model.latent_weights.size
    mixing = (model.latent_weights[:, None] * model.rotation * model.scale).astype(np.float32)
    for batch, start in enumerate(range(0, rows, BATCH_ROWS)):
        n = min(BATCH_ROWS, rows - start)
        latent = np.random.default_rng([seed, LATENT_STREAM, batch]).standard_normal(
            (n, k), dtype=np.float32
        )
        noise = np.random.default_rng([seed, NOISE_STREAM, index, batch]).standard_normal(
            (n, mixing.shape[1]), dtype=np.float32
        )
        noise *= np.float32(model.noise)
        noise += latent @ mixing
        yield np.arange(start, start + n, dtype=np.int64), noise


def _haar_rows(rng, k, dim):
    """k orthonormal rows of a Haar-random rotation of R^dim, shape (k, dim)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, k)))
    return (q * np.sign(np.diag(r))).T


def _noise_for_share(weights, share, dim):
    """σ such that the signal keeps ``share`` of ‖Σ‖²_F, Σ = diag(w²) ⊕ 0 + σ² I_dim.

    Solves dim·x² + 2 b x − a (1/share − 1) = 0 for x = σ², with a = Σ w⁴ and b = Σ w², in the
    form without cancellation.
    """
    a, b = np.sum(weights**4), np.sum(weights**2)
    c = a * (1.0 / share - 1.0)
    return float(np.sqrt(c / (b + np.sqrt(b * b + dim * c))))
