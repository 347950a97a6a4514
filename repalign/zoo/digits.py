"""The digits zoo: small torch networks trained on scikit-learn's digits, every layer stored.

Each architecture is trained from several seeds on a fixed stratified 70/30 split of the
1,797 images, and kept once more untrained (its seed-0 initialisation) as a control. Every
layer of every network is run on all samples and written as the representation
``<model>.<layer>``; the weights go to ``<store>/_models/<model>.pt`` so that
`repalign.zoo.load_model` can rebuild each network later.

Optionally, ``augment`` extra samples (ids 1797, 1798, ...) are appended: sample ``1797 + i`` is
a copy of sample ``i mod 1797`` shifted by up to half a pixel, rotated by up to 10° and
given pixel noise. The networks never train on them; they are streamed through in batches, so
a large ``augment`` holds one batch of activations per layer at a time.

The build is deterministic: the same preset and ``augment`` give byte-identical shards.
"""

import math
from contextlib import ExitStack
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.nn import functional
from tqdm.auto import tqdm

from repalign.store import RepresentationWriter
from repalign.zoo.models import (
    IMAGE_SHAPE,
    MODELS_FOLDER,
    Targets,
    build_network,
    deterministic_torch,
    save_model,
    save_targets,
)

DATASET = "scikit-learn load_digits: 1,797 grey 8×8 images of the digits 0-9, pixels / 16"
N_ORIGINALS = 1797
TEST_FRACTION = 0.3
SPLIT_SEED = 0
INIT_SEED = 0  # the untrained control of an architecture is its seed-0 initialisation
AUGMENT_SEED = 0
MAX_SHIFT = 0.5  # pixels along each axis; a whole pixel is an eighth of the image
MAX_ROTATION_DEGREES = 10.0
NOISE_STD = 0.05  # added to pixels in [0, 1], then clipped back to [0, 1]
BATCH_ROWS = 4096  # augmented samples made and pushed through a network at once
SHARD_ROWS = 16_384  # the same for every representation, so shards of the zoo line up


@dataclass(frozen=True)
class Training:
    """Minibatch Adam on the cross-entropy of the training split, a fixed number of epochs."""

    epochs: int
    batch_size: int
    learning_rate: float


@dataclass(frozen=True)
class DigitsPreset:
    """The architectures (family name → config), the seeds each is trained from, and how."""

    architectures: dict
    seeds: tuple
    training: Training

    def models(self):
        """``(model_name, architecture, seed, trained)`` for every network of the zoo."""
        for family, architecture in self.architectures.items():
            for seed in self.seeds:
                yield f"{family}-s{seed}", architecture, seed, True
            yield f"{family}-init", architecture, INIT_SEED, False


MLP_W32 = {"kind": "mlp", "widths": [32, 32, 32]}
MLP_W64 = {"kind": "mlp", "widths": [64, 64, 64]}
MLP_W128 = {"kind": "mlp", "widths": [128, 128, 128]}
CNN_C8 = {"kind": "cnn", "channels": [8, 16]}

PRESETS = {
    "digits": DigitsPreset(
        architectures={
            "mlp-w32": MLP_W32,
            "mlp-w64": MLP_W64,
            "mlp-w128": MLP_W128,
            "cnn-c8": CNN_C8,
        },
        seeds=(0, 1, 2),
        training=Training(epochs=40, batch_size=64, learning_rate=3e-3),
    ),
    "digits-small": DigitsPreset(
        architectures={"mlp-w64": MLP_W64, "cnn-c8": CNN_C8},
        seeds=(0, 1),
        training=Training(epochs=10, batch_size=32, learning_rate=3e-3),
    ),
}


@dataclass(frozen=True)
class Digits:
    """The 1,797 digits and the fixed split: ids are row numbers."""

    images: np.ndarray  # (1797, 64) float32 in [0, 1]
    labels: np.ndarray  # (1797,) int64
    train_ids: np.ndarray
    test_ids: np.ndarray

    def split_record(self):
        """The split as it goes into every ``source``: how it was drawn, and the train ids."""
        return {
            "test_fraction": TEST_FRACTION,
            "stratified": True,
            "seed": SPLIT_SEED,
            "train_ids": self.train_ids.tolist(),
        }


def load_digits_split():
    """The digits, pixels scaled to [0, 1], with the stratified 70/30 split of seed 0."""
    data = load_digits()
    ids = np.arange(N_ORIGINALS)
    train_ids, test_ids = train_test_split(
        ids, test_size=TEST_FRACTION, stratify=data.target, random_state=SPLIT_SEED
    )
    return Digits(
        images=(data.data / 16.0).astype(np.float32),
        labels=data.target.astype(np.int64),
        train_ids=np.sort(train_ids),
        test_ids=np.sort(test_ids),
    )


def build_digits_zoo(store_path, preset, *, augment=0, progress=True, overwrite=False):
    """Train the networks of a digits preset and write every layer's representation.

    Parameters
    ----------
    store_path : path-like
        The store folder (created if missing).
    preset : {"digits", "digits-small"}
    augment : int, default=0
        Number of augmented samples appended after the 1,797 originals (checked by the caller).
    progress : bool, default=True
        Show a progress bar over the networks.
    overwrite : bool, default=False
        Replace representations of the same names (their saved models are rewritten too).

    Returns
    -------
    list of str
        The representation names written, network by network, input side first.
    """
    digits = load_digits_split()
    settings = PRESETS[preset]
    save_targets(store_path, digits_targets(digits, augment))
    names = []
    with deterministic_torch():
        for model_name, architecture, seed, trained in tqdm(
            list(settings.models()), desc=f"zoo {preset}", unit="model", disable=not progress
        ):
            torch.manual_seed(seed)
            network = build_network(architecture)
            if trained:
                train(network, digits, settings.training, seed)
            network.eval()
            record = {
                "zoo": preset,
                "model": model_name,
                "architecture": architecture,
                "seed": seed,
                "trained": trained,
                "training": asdict(settings.training) if trained else None,
                **accuracies(network, digits),
                "dataset": DATASET,
                "split": digits.split_record(),
                "augment": augment_record(augment),
                "checkpoint": f"{MODELS_FOLDER}/{model_name}.pt",
                "torch": torch.__version__,
            }
            names += write_layers(store_path, network, record, digits, augment, overwrite)
            save_model(store_path, model_name, network, record)
    return names


def digits_targets(digits, augment):
    """Labels and splits of the originals and of ``augment`` copies (label of their source)."""
    ids = np.arange(N_ORIGINALS + augment, dtype=np.int64)
    splits = np.full(len(ids), "augment", dtype=object)
    splits[digits.train_ids], splits[digits.test_ids] = "train", "test"
    return Targets(ids, digits.labels[ids % N_ORIGINALS], splits.astype(str))


def train(network, digits, training, seed):
    """Fit ``network`` on the training split in place; minibatch order is drawn from ``seed``."""
    images = torch.from_numpy(digits.images[digits.train_ids])
    labels = torch.from_numpy(digits.labels[digits.train_ids])
    order_generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=training.learning_rate)
    network.train()
    for _ in range(training.epochs):
        for batch in torch.randperm(len(labels), generator=order_generator).split(
            training.batch_size
        ):
            loss = functional.cross_entropy(network(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def accuracies(network, digits):
    """``{"train_accuracy": ..., "test_accuracy": ...}`` of ``network`` on the fixed split."""
    with torch.no_grad():
        predicted = network(torch.from_numpy(digits.images)).argmax(dim=1).numpy()
    correct = predicted == digits.labels
    return {
        "train_accuracy": float(correct[digits.train_ids].mean()),
        "test_accuracy": float(correct[digits.test_ids].mean()),
    }


def write_layers(store_path, network, record, digits, augment, overwrite):
    """Stream every sample through ``network`` and write one representation per layer."""
    names = [f"{record['model']}.{layer}" for layer in network.layer_names]
    with ExitStack() as stack:
        writers = [
            stack.enter_context(
                RepresentationWriter(
                    store_path,
                    name,
                    source={**record, "layer": layer},
                    shard_rows=SHARD_ROWS,
                    overwrite=overwrite,
                )
            )
            for name, layer in zip(names, network.layer_names, strict=True)
        ]
        for ids, images in sample_batches(digits.images, augment):
            with torch.no_grad():
                outputs = network.activations(torch.from_numpy(images))
            for writer, output in zip(writers, outputs.values(), strict=True):
                writer.write(ids, output.numpy())
    return names


def sample_batches(images, augment):
    """Yield ``(ids, images)``: the originals in one batch, then the augmented copies.

    The originals always form one batch of their own, so their rows are computed the same
    way, bit for bit, whatever ``augment`` is.
    """
    yield np.arange(N_ORIGINALS, dtype=np.int64), images
    for batch in range(math.ceil(augment / BATCH_ROWS)):
        start, stop = batch * BATCH_ROWS, min((batch + 1) * BATCH_ROWS, augment)
        yield (
            N_ORIGINALS + np.arange(start, stop, dtype=np.int64),
            augmented_batch(images, batch, augment),
        )


def augmented_batch(images, batch, augment):
    """Augmented samples ``i`` of batch ``batch`` (``BATCH_ROWS`` of them, fewer in the last).

    Sample ``i`` (id ``1797 + i``) is image ``i mod 1797`` resampled after a random rotation of
    at most ``MAX_ROTATION_DEGREES`` about the image centre and a sub-pixel shift of at most
    ``MAX_SHIFT`` pixel along each axis (bilinear, zero outside the image), plus Gaussian
    noise of standard deviation ``NOISE_STD``, clipped to [0, 1]. Each batch draws from its
    own generator, seeded with ``[AUGMENT_SEED, batch]``.

    Returns
    -------
    ndarray of shape (n, 64), float32
    """
    start, stop = batch * BATCH_ROWS, min((batch + 1) * BATCH_ROWS, augment)
    rng = np.random.default_rng([AUGMENT_SEED, batch])
    n = stop - start
    angles = np.deg2rad(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES, n))
    shifts = rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=(n, 2))
    noise = rng.normal(0.0, NOISE_STD, size=(n, images.shape[1]))
    sources = images[np.arange(start, stop) % N_ORIGINALS].reshape(n, *IMAGE_SHAPE)
    moved = _rotate_and_shift(sources, angles, shifts)
    return np.clip(moved.reshape(n, -1) + noise, 0.0, 1.0).astype(np.float32)


def _rotate_and_shift(images, angles, shifts):
    """Resample (n, h, w) images: rotate each by its angle about the centre, then shift it.

    The output pixel p takes the bilinear value of the input at R(−θ)(p − c − s) + c, where c
    is the image centre and s the (row, column) shift; pixels outside the input count as 0.
    """
    n, height, width = images.shape
    centre = np.array([(height - 1) / 2.0, (width - 1) / 2.0])
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    offset = np.stack([rows, cols], axis=-1)[None] - centre - shifts[:, None, None, :]
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    source_rows = cos * offset[..., 0] + sin * offset[..., 1] + centre[0]
    source_cols = -sin * offset[..., 0] + cos * offset[..., 1] + centre[1]
    top, left = np.floor(source_rows).astype(int), np.floor(source_cols).astype(int)
    down, right = source_rows - top, source_cols - left
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    sample = np.arange(n)[:, None, None]

    def pixel(r, c):  # an index off the image is clipped onto the ring of zeros around it
        return padded[sample, np.clip(r + 1, 0, height + 1), np.clip(c + 1, 0, width + 1)]

    return (
        (1 - down) * (1 - right) * pixel(top, left)
        + (1 - down) * right * pixel(top, left + 1)
        + down * (1 - right) * pixel(top + 1, left)
        + down * right * pixel(top + 1, left + 1)
    )


def augment_record(augment):
    """How the augmented samples were made, for ``source``."""
    return {
        "count": augment,
        "origin": f"sample {N_ORIGINALS} + i is an augmented copy of sample i mod {N_ORIGINALS}",
        "max_shift_pixels": MAX_SHIFT,
        "max_rotation_degrees": MAX_ROTATION_DEGREES,
        "noise_std": NOISE_STD,
        "seed": AUGMENT_SEED,
        "batch_rows": BATCH_ROWS,
    }
