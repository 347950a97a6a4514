"""The torch networks of the digits zoo, cut into named layers, and how a store keeps them.

Every network is a chain of stages, one per named layer: stage ``L`` maps the (flattened)
output of the layer before it to the flattened output of ``L``. The representation of a
sample at layer ``L`` is therefore a plain vector, and the rest of the network after ``L``
can be run on any such vector (`LayeredNetwork.forward_from`), which is what stitching needs.
"""

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from repalign.contract import atomic_write
from repalign.errors import StoreError
from repalign.validation import check_option

KINDS = ("mlp", "cnn")
MODELS_FOLDER = "_models"  # in the store; readers skip folders whose names start with "_"
TARGETS_FILE = "targets.parquet"  # in MODELS_FOLDER: what the models were trained to predict
SPLITS = ("train", "test", "augment")
TORCH_THREADS = 1
IMAGE_SHAPE = (8, 8)
N_PIXELS = 64
N_CLASSES = 10


class LayeredNetwork(nn.Module):
    """A chain of named stages; the output of each stage is a representation.

    Parameters
    ----------
    stages : list of (str, torch.nn.Module)
        ``(layer_name, module)`` in order. Each module maps a batch of flat vectors of shape
        (batch, d_in) to flat vectors of shape (batch, d_out); the last stage gives the logits.
    """

    def __init__(self, stages):
        super().__init__()
        self.stages = nn.ModuleDict(stages)

    @property
    def layer_names(self):
        """The names of the layers, input side first; the last one is ``"logits"``."""
        return tuple(self.stages)

    def forward(self, x):
        """Logits of shape (batch, 10) for pixels ``x`` of shape (batch, 64)."""
        for stage in self.stages.values():
            x = stage(x)
        return x

    def activations(self, x):
        """Every layer's output for pixels ``x`` of shape (batch, 64), as a dict in layer order.

        Hidden layers are post-activation (after the ReLU); convolutional maps are flattened
        channel-major, as `torch.flatten` does.
        """
        outputs = {}
        for name, stage in self.stages.items():
            x = stage(x)
            outputs[name] = x
        return outputs

    def forward_from(self, layer_name, z):
        """Run the layers after ``layer_name`` on its representation ``z``; returns logits.

        Parameters
        ----------
        layer_name : str
            One of `layer_names`. For ``"logits"`` the input is returned unchanged.
        z : torch.Tensor of shape (batch, d)
            Representations at ``layer_name``, flattened as `activations` gives them.
        """
        names = self.layer_names
        check_option(layer_name, name="layer_name", allowed=names)
        for name in names[names.index(layer_name) + 1 :]:
            z = self.stages[name](z)
        return z


def build_network(architecture):
    """The untrained network an architecture config describes.

    Parameters
    ----------
    architecture : dict
        ``{"kind": "mlp", "widths": [w1, w2, ...]}``: fully connected ReLU layers
        ``fc1, fc2, ...`` of those widths, then a linear ``logits`` layer.
        ``{"kind": "cnn", "channels": [c1, c2]}``: ``conv1``, a 3×3 convolution with padding 1
        (c1 maps of 8×8), ``conv2``, a 3×3 convolution with stride 2 and padding 1 (c2 maps of
        4×4), both followed by a ReLU, then a linear ``logits`` layer.

    Returns
    -------
    LayeredNetwork
        Initialised by torch's default initialisers from the current global torch seed.
    """
    kind = check_option(architecture["kind"], name="architecture['kind']", allowed=KINDS)
    if kind == "mlp":
        return _mlp(architecture["widths"])
    return _cnn(*architecture["channels"])


def _mlp(widths):
    stages, previous = [], N_PIXELS
    for i, width in enumerate(widths, start=1):
        stages.append((f"fc{i}", nn.Sequential(nn.Linear(previous, width), nn.ReLU())))
        previous = width
    stages.append(("logits", nn.Linear(previous, N_CLASSES)))
    return LayeredNetwork(stages)


def _cnn(c1, c2):
    height, width = IMAGE_SHAPE
    conv1 = nn.Sequential(
        nn.Unflatten(1, (1, height, width)),
        nn.Conv2d(1, c1, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
    )
    conv2 = nn.Sequential(
        nn.Unflatten(1, (c1, height, width)),
        nn.Conv2d(c1, c2, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
    )
    logits = nn.Linear(c2 * (height // 2) * (width // 2), N_CLASSES)
    return LayeredNetwork([("conv1", conv1), ("conv2", conv2), ("logits", logits)])


@contextmanager
def deterministic_torch(threads=TORCH_THREADS):
    """Run torch deterministically on a fixed number of CPU threads, then restore both settings.

    A float reduction split over a different number of threads can round differently, so the
    thread count is part of what makes two builds byte-identical.
    """
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


def save_model(store_path, model_name, network, record):
    """Write ``<store>/_models/<model_name>.pt`` (the state dict) and ``.json`` (``record``).

    ``record`` must hold the ``"architecture"`` config that `build_network` takes. Both files
    are written to temporary names and renamed, the JSON last; existing ones are replaced
    (the zoo writes a model's representations first, and those refuse to be overwritten
    unless asked).
    """
    folder = Path(store_path) / MODELS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    weights, description = folder / f"{model_name}.pt", folder / f"{model_name}.json"
    with atomic_write(weights) as temporary:
        torch.save(network.state_dict(), temporary)
    with atomic_write(description) as temporary:
        temporary.write_text(json.dumps(record, indent=1) + "\n")


def load_model(store_path, model_name):
    """The network ``model_name`` of a zoo store, with its trained weights, in eval mode.

    Parameters
    ----------
    store_path : path-like
        A store written by `repalign.zoo.build_zoo`.
    model_name : str
        A model, i.e. a representation name without its layer (``"mlp-w64-s0"``).

    Returns
    -------
    LayeredNetwork
        Its ``record`` attribute is the model's JSON description (architecture, seed,
        accuracies, split). ``layer_names`` and ``forward_from`` run it layer by layer.
    """
    folder = Path(store_path) / MODELS_FOLDER
    description = folder / f"{model_name}.json"
    if not description.exists():
        saved = sorted(p.stem for p in folder.glob("*.json"))
        raise StoreError(
            f"model_name={model_name!r} is not saved in {folder}; "
            f"saved models: {', '.join(saved) or 'none'}."
        )
    record = json.loads(description.read_text())
    if "architecture" not in record:
        raise StoreError(
            f"model_name={model_name!r} in {folder} is not a network repalign can run (its "
            "description has no architecture)."
        )
    network = build_network(record["architecture"])
    network.load_state_dict(torch.load(folder / f"{model_name}.pt", weights_only=True))
    network.record = record
    return network.eval()


@dataclass(frozen=True)
class Targets:
    """The labels of a zoo's samples and the split each belongs to, in sample-id order."""

    sample_ids: np.ndarray  # int64
    labels: np.ndarray  # int64
    splits: np.ndarray  # str: one of SPLITS

    def rows(self, split):
        """Row positions of the samples of ``split``, ascending."""
        check_option(split, name="split", allowed=SPLITS)
        return np.flatnonzero(self.splits == split)


def save_targets(store_path, targets):
    """Write ``<store>/_models/targets.parquet`` (sample_id, label, split), replacing any."""
    folder = Path(store_path) / MODELS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "sample_id": pa.array(targets.sample_ids, pa.int64()),
            "label": pa.array(targets.labels, pa.int64()),
            "split": pa.array(targets.splits.tolist(), pa.string()),
        }
    )
    with atomic_write(folder / TARGETS_FILE) as temporary:
        pq.write_table(table, temporary)


def load_targets(store_path):
    """The `Targets` of a zoo store, as `save_targets` wrote them."""
    path = Path(store_path) / MODELS_FOLDER / TARGETS_FILE
    if not path.exists():
        raise StoreError(
            f"{store_path} holds no targets ({MODELS_FOLDER}/{TARGETS_FILE}): stitching needs the "
            "labels the models were trained on; a digits zoo built by this version of repalign "
            "has them (`repalign zoo build --overwrite`)."
        )
    table = pq.read_table(path)
    return Targets(
        table["sample_id"].to_numpy(),
        table["label"].to_numpy(),
        np.asarray(table["split"].to_pylist()),
    )
