"""Embedding stores: representations of a sample set as sharded Parquet (docs/design.md §5)."""

from repalign.store.reader import Representation, Store, open_store
from repalign.store.writer import RepresentationWriter, write_representation

__all__ = [
    "Representation",
    "RepresentationWriter",
    "Store",
    "open_store",
    "write_representation",
]
