"""The earlier tokens' image embeddings a render is compared with, kept in memory per worker.

The uniqueness check compares each new image with every accepted image of its collection. Read
naively that is every stored embedding (2 KiB each with a 512-wide CLIP) from the database for
every render: 20 MB per render at 10,000 tokens. Instead each worker process keeps the vectors it
has already read and, per render, asks the database only which tokens currently count (their
primary keys: 8 bytes each) and fetches the vectors it has not seen. Tokens that left the
collection (reorged, failed) drop out because they are no longer in that list. The search itself
is one matrix-vector product over the (n, d) float32 matrix (exact, no approximate index): about
a millisecond at 10,000 x 512.
"""

from __future__ import annotations

import threading

import numpy as np

from generation.clip_gate import embedding_from_bytes
from generation.models import Token

_FETCH_CHUNK = 500
_EXCLUDED = (Token.Status.REORGED, Token.Status.FAILED)


class EmbeddingIndex:
    """One collection's accepted image embeddings, refreshed from the database on demand."""

    def __init__(self, collection_pk: int) -> None:
        self.collection_pk = collection_pk
        self.fetched = 0  # vectors read from the database so far (tests and logs read it)
        self._vectors: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def earlier(self, token_pk: int) -> np.ndarray:
        """The (n, d) matrix of every counted embedding but ``token_pk``'s own; (0, 0) if none."""
        live = list(
            Token.objects.filter(collection_id=self.collection_pk, image_embedding__isnull=False)
            .exclude(pk=token_pk)
            .exclude(status__in=_EXCLUDED)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        with self._lock:
            missing = [pk for pk in live if pk not in self._vectors]
            for start in range(0, len(missing), _FETCH_CHUNK):
                rows = Token.objects.filter(pk__in=missing[start : start + _FETCH_CHUNK])
                for pk, blob in rows.values_list("pk", "image_embedding"):
                    self._vectors[pk] = embedding_from_bytes(bytes(blob))
                    self.fetched += 1
            rows = [self._vectors[pk] for pk in live if pk in self._vectors]
        if not rows:
            return np.empty((0, 0), dtype=np.float32)
        dims = {row.shape[0] for row in rows}
        if len(dims) != 1:
            raise ValueError(f"stored embeddings have different dimensions: {sorted(dims)}")
        return np.stack(rows)


_indexes: dict[int, EmbeddingIndex] = {}
_indexes_lock = threading.Lock()


def index_for(collection_pk: int) -> EmbeddingIndex:
    """This process's index for the collection, made on first use."""
    with _indexes_lock:
        index = _indexes.get(collection_pk)
        if index is None:
            index = _indexes[collection_pk] = EmbeddingIndex(collection_pk)
        return index
