"""What a collection's manager can put into its config, tried as a hostile manager would: real
POSTs of the admin's change form by a logged-in manager (Ada, who manages Aurora).

- model paths: confined to MODEL_ROOTS, with one answer for any path outside them, so the form
  is no probe of the server's files;
- prompt templates: plain ``{placeholders}`` only (a format spec's width is a prompt, and a
  render, of any size);
- lengths and characters: bounded so that the largest token metadata a config can make fits
  in one IPFS chunk — checked by rendering, approving and pinning a token of a maximal config.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.test import Client
from PIL import Image

from generation import config_limits, pipeline, review
from generation.canonical import canonical_json
from generation.models import Collection, Token
from ipfs.cid import CHUNK_SIZE
from tests.test_admin import (
    as_user,
    form_data,
    make_collection,
    make_token,
    rarity_fields,
)

pytestmark = pytest.mark.django_db
COLLECTIONS = "/admin/generation/collection/"


@pytest.fixture
def aurora(reference_models: Path, ada: User) -> Collection:
    return make_collection(reference_models, "aurora", [ada])


def post(client: Client, collection: Collection, **changes: Any) -> Any:
    return client.post(f"{COLLECTIONS}{collection.pk}/change/", form_data(collection, **changes))


def errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was accepted"
    return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


# --- model paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["model_dir", "clip_dir", "model_config_dir"])
def test_a_path_outside_the_model_roots_gets_one_answer_whatever_is_there(
    ada: User, aurora: Collection, field: str, tmp_path: Path
) -> None:
    (tmp_path / "model_index.json").write_text("{}")  # something that looks like a model
    client = as_user(ada)
    answers = {}
    for probe in ["/etc", "/etc/hostname", "/no/such/place", str(tmp_path), "../../../../etc"]:
        answers[probe] = errors(post(client, aurora, **{field: probe}))[field]
    # Then each is refused, and the answers differ only by the path echoed back
    for probe, answer in answers.items():
        assert answer == [answer[0]]
        assert "outside the folders models may be loaded from" in answer[0]
        assert answer[0].replace(repr(probe), "<path>") == answers["/etc"][0].replace(
            repr("/etc"), "<path>"
        )
    assert Collection.objects.get(pk=aurora.pk).model_dir == aurora.model_dir


def test_a_symlink_out_of_a_model_root_is_refused(
    settings, ada: User, aurora: Collection, reference_models: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings.MODEL_ROOTS = [reference_models, tmp_path / "models"]
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "escape").symlink_to(reference_models.parent.parent)  # outside
    link = str(tmp_path / "models" / "escape" / "models" / "diffusion")
    assert (
        "outside the folders" in errors(post(as_user(ada), aurora, model_dir=link))["model_dir"][0]
    )


def test_a_style_image_outside_the_model_roots_gets_one_answer(
    ada: User, aurora: Collection
) -> None:
    client = as_user(ada)
    there = errors(post(client, aurora, style_images="/etc/hostname", style_images_threshold=0.5))
    absent = errors(post(client, aurora, style_images="/etc/nothing", style_images_threshold=0.5))
    assert "outside the folders" in there["style_images"][0]
    assert there["style_images"][0].replace("hostname", "nothing") == absent["style_images"][0]


def test_a_relative_model_path_is_taken_from_the_first_root(
    ada: User, aurora: Collection, reference_models: Path
) -> None:
    response = post(as_user(ada), aurora, model_dir="diffusion", clip_dir="clip")
    assert response.status_code == 302, errors(response)
    aurora.refresh_from_db()
    assert aurora.model_path().resolve() == (reference_models / "diffusion").resolve()


# --- prompt templates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "art {token_id:>50000000}",
            "placeholder {token_id:>50000000}: format specs and conversions are not allowed",
        ),
        ("art {collection!r}", "placeholder {collection!r}: format specs and conversions"),
        ("art {token_id:0>{token_id}}", "placeholder {token_id:0>{token_id}}: format specs"),
        ("art {collection.__class__}", "placeholder {collection.__class__}: attribute and index"),
        ("art {collection[0]}", "placeholder {collection[0]}: attribute and index"),
    ],
)
def test_a_template_with_more_than_plain_placeholders_is_refused_naming_it(
    ada: User, aurora: Collection, template: str, message: str
) -> None:
    found = errors(post(as_user(ada), aurora, prompt_template=template))["prompt_template"]
    assert any(message in m for m in found), found
    assert Collection.objects.get(pk=aurora.pk).prompt_template == aurora.prompt_template


# --- lengths and characters -------------------------------------------------------------------


def _rows(categories: int, name: str = "c", option: str = "o", prompt: str = "p") -> dict:
    rows = []
    for i in range(categories):
        rows.append((f"{name}{i}", False, f"{option}1", prompt, "1"))
        rows.append(("", False, f"{option}2", prompt, "1"))
    return rarity_fields(mode="weighted", rows=rows)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"description": "x" * 5_001}, "description", "at most 5000 characters"),
        ({"name": "x" * 201}, "name", "at most 200 characters"),
        ({"name": "Aurora\u202e"}, "name", "only printable characters are allowed, got U+202E"),
        ({"prompt_template": "art " * 251}, "prompt_template", "at most 1000 characters"),
        ({"negative_prompt": "x" * 1_001}, "negative_prompt", "at most 1000 characters"),
        ({"style_prompt": "x" * 1_001}, "style_prompt", "at most 1000 characters"),
        ({"description": "a bell\x07"}, "description", "got U+0007"),
        (_rows(33), "rarity", "categories: at most 32, got 33"),
        (_rows(1, name="c" * 65), "rarity", "categories[0].name (category"),
        (_rows(1, option="o" * 65), "rarity", "options[0].name"),
        (_rows(1, prompt="p" * 301), "rarity", "at most 300 characters, got 301"),
        (
            {**_rows(1, prompt="p" * 300), "prompt_template": "{c0} " * 7},
            "prompt_template",
            "its longest prompt",
        ),
        (
            {"style_images": "\n".join(f"s{i}.png" for i in range(17))},
            "style_images",
            "at most 16 images, got 17",
        ),
    ],
)
def test_text_past_its_limit_is_refused_naming_the_field(
    ada: User, aurora: Collection, changes: dict, field: str, message: str
) -> None:
    changes.setdefault("style_images_threshold", 0.5)
    found = errors(post(as_user(ada), aurora, **changes))
    assert field in found, found
    assert any(message in m for m in found[field]), found[field]


def test_a_maximal_config_makes_token_metadata_within_one_ipfs_chunk(
    settings, reference_models: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Every text at its limit, in the widest characters (4 bytes of UTF-8), every gate check
    failing so that the approved token's metadata quotes all the reasons."""
    settings.RENDER_CACHE_DIR = tmp_path / "renders"
    settings.RENDER_DEVICE = "cpu"
    settings.RENDER_BATCH_SIZE = 1
    settings.IPFS_BACKEND = "local"
    settings.IPFS_STORE_DIR = tmp_path / "ipfs"
    settings.MODEL_ROOTS = [reference_models, tmp_path / "styles"]
    (tmp_path / "styles").mkdir()
    style = tmp_path / "styles" / "style.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(style)

    wide = "\U0001d538"  # 𝔸: printable, 4 bytes of UTF-8
    n_name = config_limits.TRAIT_NAME_MAX
    # verified categories must appear in the template (1,000 characters): as many as fit;
    # their fragments share the rendered prompt's 2,000 characters
    verified = config_limits.PROMPT_TEMPLATE_MAX // (n_name + 2)
    fragment = config_limits.PROMPT_MAX // verified
    categories = []
    for i in range(config_limits.CATEGORIES_MAX):
        tag = f"{i:02d}"
        categories.append(
            {
                "name": wide * (n_name - 2) + tag,
                "verify": i < verified,
                "options": [
                    {
                        "name": wide * (n_name - 3) + tag + str(j),
                        "prompt": wide * (fragment if i < verified else 1),
                        "weight": 1,
                    }
                    for j in range(2)
                ],
            }
        )
    rarity = {"mode": "weighted", "categories": categories}
    template = "".join("{" + c["name"] + "}" for c in categories[:verified])
    collection = Collection.objects.create(
        slug="maximal",
        name=wide * config_limits.NAME_MAX,
        description=wide * config_limits.DESCRIPTION_MAX,
        chain_id=31337,
        contract_address="0x" + "ab" * 20,
        model_dir=str(reference_models / "diffusion"),
        clip_dir=str(reference_models / "clip"),
        prompt_template=template,
        negative_prompt=wide * config_limits.NEGATIVE_PROMPT_MAX,
        style_prompt=wide * config_limits.STYLE_PROMPT_MAX,
        clip_threshold=1.0,  # no image reaches it
        trait_margin=2.0,  # nor this margin
        style_images=[str(style)],
        style_images_threshold=1.0,
        uniqueness_threshold=-1.0,  # every image is too close to the earlier one
        steps=2,
        max_attempts=1,
        max_supply=10**9,
        rarity=rarity,
    )
    collection.full_clean()  # it is a valid config: every limit is met, none exceeded
    earlier = make_token(collection, 1, Token.Status.RENDERED)
    from generation.clip_gate import embedding_to_bytes, get_scorer

    scorer = get_scorer(reference_models / "clip", "cpu")
    with Image.open(style) as image:
        earlier.image_embedding = embedding_to_bytes(scorer.image_embedding(image))
    earlier.save()
    token = make_token(collection, 2**63 - 1, Token.Status.SEED_COMMITTED)

    assert pipeline.run_render(token.pk) == Token.Status.NEEDS_REVIEW
    assert review.approve(token.pk, "a" * 150) == Token.Status.RENDERED
    assert pipeline.run_pin(token.pk) == Token.Status.PINNED

    token.refresh_from_db()
    metadata = token.render_record
    reasons = metadata["clip"]["review"]["reasons"]
    assert len(reasons) == 1 + verified + 2  # style, each verified trait, images, uniqueness
    stored = next(
        p for p in Path(settings.IPFS_STORE_DIR).rglob("*") if token.metadata_cid in p.name
    )
    size = os.path.getsize(stored)
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == token.metadata_sha256
    assert size < CHUNK_SIZE * 0.75, f"{size} bytes of metadata, {CHUNK_SIZE} in a chunk"
    assert len(canonical_json(metadata)) < size  # the record is only part of it
