"""The published metadata of a token stays byte for byte what it was when the golden file was
written (tests/data/metadata-golden.json, written from this very test: ``MINT_UPDATE_GOLDEN=1``
rewrites it; first by the code before the issue-14 restructuring, last for issue 19's
marketplace format, which added ``external_url`` and moved each attribute's ``rarity`` to a
top-level ``rarity``). A refactoring must not change a single byte a collector's wallet or a
verifier reads; a deliberate format change rewrites the file and says so here. Taken from this run instead:
``provenance.software`` (the versions of the installed packages), and the values the CPU's float
kernels decide, the image's CID and the CLIP scores (the same code renders other pixels on an AMD
EPYC than on the Intel machine that wrote the file; a re-render is bit-exact on one machine, which
tests/test_verify.py checks). Their keys and every other byte must stay.

Deterministic on purpose: a fixed contract, seed and rarity table, CPU rendering in float32.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from django.conf import settings

from generation import pipeline
from generation.canonical import canonical_json
from generation.models import Collection, Token

pytestmark = pytest.mark.django_db
GOLDEN = Path(__file__).parent / "data" / "metadata-golden.json"
SEED = "0x" + hashlib.sha256(b"the golden token's seed").hexdigest()
RARITY = {
    "mode": "weighted",
    "categories": [
        {
            "name": "palette",
            "verify": True,
            "options": [
                {"name": "warm", "prompt": "in warm reds", "weight": 3},
                {"name": "cold", "prompt": "in cold blues", "weight": 1},
            ],
        },
        {
            "name": "shape",
            "verify": False,
            "options": [
                {"name": "circle", "prompt": "with a circle", "weight": 1},
                {"name": "square", "prompt": "with a square", "weight": 1},
            ],
        },
    ],
}


def _golden_token(reference_models: Path) -> Token:
    collection = Collection.objects.create(
        slug="golden",
        name="Golden",
        description="The token whose metadata bytes must not change.",
        chain_id=31337,
        contract_address="0x" + "ab" * 20,
        model_dir=str(reference_models / "diffusion"),
        clip_dir=str(reference_models / "clip"),
        prompt_template="an abstract painting {palette} {shape}, token {token_id}",
        style_prompt="an abstract painting",
        clip_threshold=-1.0,
        trait_margin=-1.0,
        steps=2,
        max_attempts=1,
        max_supply=100,
        rarity=RARITY,
    )
    return Token.objects.create(
        collection=collection,
        token_id=7,
        owner="0x" + "11" * 20,
        mint_tx_hash="0x" + "33" * 32,
        mint_log_index=0,
        mint_block_number=12,
        mint_block_hash="0x" + "22" * 32,
        expected_seed=SEED,
        seed=SEED,
        status=Token.Status.SEED_COMMITTED,
    )


def test_it_publishes_the_same_metadata_bytes_as_before_the_restructuring(
    reference_models: Path, settings_override: None
) -> None:
    # Given the golden token, rendered and pinned by the pipeline's own stages
    token = _golden_token(reference_models)
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED
    assert pipeline.run_pin(token.pk) == Token.Status.PINNED
    token.refresh_from_db()
    published = _stored_bytes(token.metadata_cid)
    assert hashlib.sha256(published).hexdigest() == token.metadata_sha256

    if os.environ.get("MINT_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(published)
    # Then the bytes are the golden ones, the installed packages' versions aside
    golden, document = json.loads(GOLDEN.read_bytes()), json.loads(published)
    assert document["image"] == f"ipfs://{token.image_cid}"
    scores = document["provenance"]["clip"]["scores"]
    assert scores.keys() == golden["provenance"]["clip"]["scores"].keys()
    golden["provenance"]["software"] = document["provenance"]["software"]
    golden["provenance"]["clip"]["scores"] = scores
    golden["image"] = document["image"]
    assert published == canonical_json(golden)


@pytest.fixture
def settings_override(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.RENDER_CACHE_DIR = tmp_path / "renders"
    settings.RENDER_DEVICE = "cpu"
    settings.RENDER_BATCH_SIZE = 1
    settings.IPFS_BACKEND = "local"
    settings.IPFS_STORE_DIR = tmp_path / "ipfs"


def _stored_bytes(cid: str) -> bytes:
    """The metadata as the local IPFS store holds it (content-addressed: sha256 of the bytes
    checked above)."""
    for path in Path(settings.IPFS_STORE_DIR).rglob("*"):
        if path.is_file() and cid in path.name:
            return path.read_bytes()
    raise AssertionError(f"{cid} is not in the local store {settings.IPFS_STORE_DIR}")
