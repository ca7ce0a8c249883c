"""The earlier tokens' stored vectors a render is compared with, kept in memory per worker.

The uniqueness checks compare each new image with every accepted image of its collection: its
near-duplicate signature with theirs (``Token.image_signature``, 768 bytes each) and, for
collections that froze the CLIP-embedding check, its CLIP embedding with theirs
(``Token.image_embedding``, 2 KiB each with a 512-wide CLIP). Read naively that is every stored
vector from the database for every render: 20 MB per render at 10,000 tokens. Instead each
worker process keeps the vectors it has already read and, per render, asks the database only
which tokens currently count (their primary keys: 8 bytes each) and fetches the vectors it has
not seen. Tokens that left the collection (reorged, failed) drop out because they are no longer
in that list. The search itself is exact (no approximate index): one matrix-vector product for
the embeddings (about a millisecond at 10,000 x 512), 25 shifted comparisons for the
signatures.

The pipeline reads the list again under the collection's lock just before it accepts an image
(generation/pipeline.py), so a token accepted a moment ago in another worker counts.
"""

from __future__ import annotations

import threading

import numpy as np
from django.db.models.functions import Substr
from PIL import Image

from generation import near_duplicates
from generation.clip_gate import embedding_from_bytes
from generation.models import Token

_FETCH_CHUNK = 500
_EXCLUDED = (Token.Status.REORGED, Token.Status.FAILED)


#: The Token fields an index can hold: float32 little-endian vectors, one per accepted image.
FIELDS = ("image_embedding", "image_signature")


class EmbeddingIndex:
    """One collection's accepted image vectors of one field (:data:`FIELDS`: CLIP embeddings by
    default), refreshed from the database on demand."""

    def __init__(self, collection_pk: int, field: str = "image_embedding") -> None:
        if field not in FIELDS:
            raise ValueError(f"an index holds one of {FIELDS}, not {field!r}")
        self.collection_pk = collection_pk
        self.field = field
        self.fetched = 0  # vectors read from the database so far (tests and logs read it)
        self._vectors: dict[tuple[int, str], np.ndarray] = {}  # (pk, sha256 start)
        self._lock = threading.Lock()

    def earlier(self, token_pk: int) -> np.ndarray:
        """The (n, d) matrix of every counted vector but ``token_pk``'s own; (0, 0) if none."""
        return self.rows(token_pk)[1]

    def rows(self, token_pk: int) -> tuple[list[int], np.ndarray]:
        """The counted tokens but ``token_pk`` (primary keys, ascending) and their vectors as
        an (n, d) matrix, row i being token i's; (0, 0) if none."""
        # Each counted token with the start of its image's sha256: a cached vector is reused
        # only for the same image, so a token whose image changed (re-rendered after it
        # failed) or a primary key used again (SQLite after a rollback) is read afresh.
        counted = list(
            Token.objects.filter(
                collection_id=self.collection_pk, **{f"{self.field}__isnull": False}
            )
            .exclude(pk=token_pk)
            .exclude(status__in=_EXCLUDED)
            .order_by("pk")
            .values_list("pk", Substr("image_sha256", 1, 16))
        )
        with self._lock:
            missing = [key for key in counted if key not in self._vectors]
            for start in range(0, len(missing), _FETCH_CHUNK):
                wanted = dict(missing[start : start + _FETCH_CHUNK])
                rows = Token.objects.filter(pk__in=wanted)
                for pk, blob in rows.values_list("pk", self.field):
                    self._vectors[pk, wanted[pk]] = embedding_from_bytes(bytes(blob))
                    self.fetched += 1
            counted = [key for key in counted if key in self._vectors]
            rows = [self._vectors[key] for key in counted]
        live = [pk for pk, _ in counted]
        if not rows:
            return [], np.empty((0, 0), dtype=np.float32)
        dims = {row.shape[0] for row in rows}
        if len(dims) != 1:
            raise ValueError(f"stored {self.field}s have different dimensions: {sorted(dims)}")
        return live, np.stack(rows)


class SignatureDistances:
    """One image's near-duplicate distances to a collection's accepted tokens, kept by token.

    Comparing an image with every signature costs 25 passes over them (about 0.1 s at 10,000
    tokens), too long to hold the collection's lock for. So :meth:`update` runs once before the
    lock, and again under it, when only the tokens accepted in between are compared;
    :meth:`nearest` is then over exactly the tokens that count at that moment.
    """

    def __init__(self, index: EmbeddingIndex, token_pk: int, image: Image.Image) -> None:
        if index.field != "image_signature":
            raise ValueError(
                f"signature distances need an image_signature index, not {index.field}"
            )
        self.index, self.token_pk, self.image = index, token_pk, image
        self._distances: dict[int, float] = {}
        self._live: list[int] = []

    def update(self) -> None:
        """Read which tokens count now and compare the image with those not compared yet."""
        live, matrix = self.index.rows(self.token_pk)
        new = [i for i, pk in enumerate(live) if pk not in self._distances]
        if new:
            values = near_duplicates.distances(self.image, matrix[new])
            self._distances.update(zip((live[i] for i in new), values.tolist(), strict=True))
        self._live = live

    def nearest(self) -> float | None:
        """The smallest distance to a token that counted at the last :meth:`update`, rounded
        like the gate's scores; None when none counted."""
        if not self._live:
            return None
        return round(min(self._distances[pk] for pk in self._live), near_duplicates.DECIMALS)


_indexes: dict[tuple[int, str], EmbeddingIndex] = {}
_indexes_lock = threading.Lock()


def index_for(collection_pk: int, field: str = "image_embedding") -> EmbeddingIndex:
    """This process's index of ``field`` for the collection, made on first use."""
    with _indexes_lock:
        index = _indexes.get((collection_pk, field))
        if index is None:
            index = _indexes[collection_pk, field] = EmbeddingIndex(collection_pk, field)
        return index
