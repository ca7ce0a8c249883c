"""The collection audit (``mintverify --collection``, ``manage.py audit_collection``) on a real
chain: a small quota collection is published through the real stages and audits clean, then a
token is published with a forged trait that breaks the quota and another token's image, and the
audit names both; a weighted collection's frequencies get a chi-square test whose p-value agrees
with scipy's.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image
from scipy import stats
from web3 import Web3

import verifier
from chain.anvil import start_anvil
from chain.contract import bind
from chain.deployment import CollectionSpec, deploy_collection
from devtools.rarity_fixtures import QUOTA
from devtools.rarity_fixtures import WEIGHTED as PALETTE
from generation.canonical import canonical_json
from generation.models import Token
from ipfs.backends import pinner_from_settings
from ipfs.store import LocalStore
from tests.test_listener import mine, mint
from tests.test_verify import DEPLOYER, listen, settings_store, through_pipeline
from verifier.audit import audit_collection, chi2_sf

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Published:
    rpc_url: str
    gateway: str
    quota: str  # contract: 3 tokens, 1 and 2 published honestly, 3 minted and unpublished
    weighted: str  # contract: 4 tokens published honestly
    w3: Web3


def quota_spec(slug: str) -> CollectionSpec:
    return CollectionSpec(
        slug=slug, rarity=QUOTA, max_supply=3, prompt_template="a painting {palette}"
    )


@pytest.fixture(scope="module")
def published(
    django_db_setup, django_db_blocker, reference_models, live_server
) -> Iterator[Published]:  # type: ignore[no-untyped-def]
    with start_anvil() as node, django_db_blocker.unblock():
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        quota = deploy_collection(w3, DEPLOYER.private_key, quota_spec("audit-quota"))
        mint(w3, quota, 2)
        mine(w3, 2)
        through_pipeline(w3, quota, listen(w3, quota), lambda token: None)
        mint(w3, quota, 1)
        mine(w3, 2)
        listen(w3, quota)
        weighted = deploy_collection(
            w3, DEPLOYER.private_key, CollectionSpec(slug="audit-weighted", rarity=PALETTE)
        )
        mint(w3, weighted, 4)
        mine(w3, 2)
        through_pipeline(w3, weighted, listen(w3, weighted), lambda token: None)
        yield Published(
            node.rpc_url,
            f"{live_server.url}/ipfs",
            quota.contract_address,
            weighted.contract_address,
            w3,
        )


def test_chi_square_tail_matches_scipy() -> None:
    for df in (1, 2, 3, 5, 10, 40):
        for x in (0.0, 0.01, 0.5, 1.0, 2.5, df, 3 * df, 10 * df + 5):
            assert chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-9, abs=1e-15)
    with pytest.raises(ValueError, match="degrees of freedom"):
        chi2_sf(1.0, 0)


def test_an_honest_collection_audits_clean_and_names_its_unpublished_token(
    published: Published,
) -> None:
    audit = audit_collection(published.rpc_url, published.quota, published.gateway)
    assert audit.clean, audit.findings
    assert (audit.minted, audit.published, audit.placeholder) == (3, [1, 2], [3])
    assert any(line.startswith("palette=warm: ") for line in audit.quota)
    assert audit.duplicates == [] and audit.near_duplicates == []
    # the command line says the same, exit status 0
    out = io.StringIO()
    args = ["--rpc", published.rpc_url, "--contract", published.quota]
    assert verifier.run(verifier.parser().parse_args([*args, "--gateway", published.gateway,
                                                       "--collection"]), out=out) == 0  # fmt: skip
    assert "verdict: PASS (0 findings)" in out.getvalue()
    assert "1 minted token(s) still on the placeholder (not published): 3" in out.getvalue()


def test_weighted_frequencies_get_a_chi_square_test_with_scipys_p_value(
    published: Published,
) -> None:
    audit = audit_collection(published.rpc_url, published.weighted, published.gateway)
    assert audit.clean, audit.findings
    (row,) = audit.frequencies
    observed = [row["observed"]["warm"], row["observed"]["cold"]]
    assert sum(observed) == 4
    expected = stats.chisquare(observed, [3.0, 1.0])
    assert row["p_value"] == pytest.approx(expected.pvalue, abs=1e-6)
    assert row["chi_square"] == pytest.approx(expected.statistic, abs=1e-6)
    assert row["approximate"] is True  # 4 tokens: expected counts under 5


def test_with_the_weights_every_pair_is_compared_by_clip(
    published: Published, reference_models: Path
) -> None:
    from generation.clip_gate import ClipScorer

    audit = audit_collection(
        published.rpc_url, published.weighted, published.gateway, reference_models
    )
    assert audit.clean, audit.findings
    assert audit.clip is not None and audit.clip["threshold"] is None  # none frozen: reported
    # the pair it names is the most similar one, by the collection's own CLIP
    scorer = ClipScorer(reference_models / "clip", device="cpu")
    gateway = verifier.Gateway(published.gateway)
    contract = bind(published.w3, published.weighted)
    embeddings = {}
    for token_id in range(1, 5):
        metadata = json.loads(gateway.fetch(contract.functions.tokenURI(token_id).call()))
        image = Image.open(io.BytesIO(gateway.fetch(metadata["image"]))).convert("RGB")
        embeddings[token_id] = scorer.image_embedding(image)
    pairs = {
        (i, j): float(embeddings[i] @ embeddings[j])
        for i in embeddings
        for j in embeddings
        if i < j
    }
    best = max(pairs, key=lambda pair: pairs[pair])
    assert audit.clip["pair"] == list(best)
    assert audit.clip["max_similarity"] == pytest.approx(pairs[best], abs=1e-6)


def forge(token: Token, image_of: Token) -> None:
    """Publish ``token`` with its trait flipped and ``image_of``'s image: what an operator who
    wanted a second rare token, drawn as an existing one, would pin."""
    document = json.loads(LocalStore(settings_store()).get(token.metadata_cid))
    other = json.loads(LocalStore(settings_store()).get(image_of.metadata_cid))
    attribute = document["attributes"][0]
    attribute["value"] = "cold" if attribute["value"] == "warm" else "warm"
    document["image"] = other["image"]
    data = canonical_json(document)
    cid = pinner_from_settings().pin(data, name="forged.json")
    Token.objects.filter(pk=token.pk).update(
        metadata_cid=cid, metadata_sha256=hashlib.sha256(data).hexdigest()
    )


def test_the_audit_names_a_broken_quota_and_a_shared_image(published: Published) -> None:
    # Given a quota collection (one cold, two warm) whose tokens 1 and 2 are published honestly
    # and token 3 with its trait flipped (the seeds gave it the one option left) and token 1's
    # image (the database is flushed after each test: this collection is the test's own)
    w3 = published.w3
    collection = deploy_collection(w3, DEPLOYER.private_key, quota_spec("audit-forged"))
    mint(w3, collection, 2)
    mine(w3, 2)
    through_pipeline(w3, collection, listen(w3, collection), lambda token: None)
    first = Token.objects.get(collection=collection, token_id=1)
    mint(w3, collection, 1)
    mine(w3, 2)
    through_pipeline(w3, collection, listen(w3, collection), lambda token: forge(token, first))
    # When the collection is audited
    audit = audit_collection(published.rpc_url, collection.contract_address, published.gateway)
    # Then it names the broken quota, the shared image and the token failing its own check
    assert not audit.clean
    assert [f for f in audit.findings if f.startswith("quota violated: palette=")], audit.findings
    assert audit.duplicates == [[1, 3]]
    assert any("tokens 1, 3 share one image" in f for f in audit.findings)
    assert audit.failing == {3: ["traits"]}
    assert audit.placeholder == []
    # and manage.py audit_collection finds the same, by slug, exiting 1
    out = io.StringIO()
    with pytest.raises(CommandError, match="found") as failed:
        call_command("audit_collection", collection.slug, "--gateway", published.gateway, "--json",
                     stdout=out)  # fmt: skip
    assert failed.value.returncode == 1
    document = json.loads(out.getvalue())
    assert document["verdict"] == "FAIL" and document["duplicates"] == [[1, 3]]


def test_an_unknown_slug_names_the_known_ones(published: Published) -> None:
    with pytest.raises(CommandError, match="unknown collection 'nope'; known collections: "):
        call_command("audit_collection", "nope")
