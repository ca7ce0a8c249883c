"""``manage.py rebuild_collection`` on a real anvil, PostgreSQL and the local IPFS store: a
small published collection's database rows wiped, as a lost database would leave it, and the
API serving the same tokens after the rebuild from the chain and IPFS alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from eth_account import Account
from web3 import Web3

from chain import publishing
from chain.anvil import Anvil
from chain.contract import bind
from chain.listener import Listener
from chain.models import Chain, ChainCursor, TokenTransfer
from chain.seed_commit import commit_seeds
from devtools.rarity_fixtures import WEIGHTED as PALETTE
from generation import pipeline
from generation.models import Collection, Token, TokenEvent
from generation.pin_check import check_pins
from tests.test_listener import BUYER, COLLECTOR, mine, mint

pytestmark = pytest.mark.django_db(transaction=True)
Status = Token.Status

# What a rebuild cannot give back (docs/deploy.md, "What a rebuild cannot restore"): when a row
# was written, and the stage history before the rebuild.
LOST_TOKEN_FIELDS = {"updated_at", "events"}
LOST_COLLECTION_FIELDS = {"created_at"}
# What the pipeline reads beyond the API, restored too
RESTORED_FIELDS = (
    "owner", "seed", "seed_tx_hash", "expected_seed", "seed_block_hash", "attempt", "traits",
    "render_record", "clip_scores", "image_cid", "image_sha256", "image_signature",
    "metadata_cid", "metadata_sha256", "publish_tx_hash", "publish_block_number",
)  # fmt: skip


@pytest.fixture(autouse=True)
def deployment_file(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.DEPLOYMENT_FILE = tmp_path / "deployment.json"
    return settings.DEPLOYMENT_FILE


def served(client: Client, slug: str) -> dict[str, Any]:
    """Everything the API serves about the collection and its tokens."""
    collection = client.get(f"/api/collections/{slug}/").json()
    listing = client.get(f"/api/collections/{slug}/tokens/?page_size=100").json()
    details = {
        token["token_id"]: client.get(f"/api/collections/{slug}/tokens/{token['token_id']}/").json()
        for token in listing["results"]
    }
    return {"collection": collection, "tokens": listing["results"], "details": details}


def without(document: dict[str, Any], lost: set[str]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in lost}


def transfer(w3: Web3, collection: Collection, token_id: int) -> None:
    contract = bind(w3, collection.contract_address)
    account = Account.from_key(COLLECTOR.private_key)
    tx = contract.functions.transferFrom(
        account.address, BUYER.address, token_id
    ).build_transaction(
        {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address)}
    )
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1


def rebuild(anvil: Anvil, collection: dict[str, Any], **paths: str) -> None:
    models = Path(settings.REFERENCE_MODELS_DIR)
    options = {"model_dir": str(models / "diffusion"), "clip_dir": str(models / "clip"), **paths}
    call_command("rebuild_collection", "--rpc-url", anvil.rpc_url,
                 "--contract", collection["contract"], "--slug", collection["slug"],
                 "--model-dir", options["model_dir"], "--clip-dir", options["clip_dir"])  # fmt: skip


def test_a_wiped_collection_comes_back_from_the_chain_and_ipfs_as_the_api_served_it(
    anvil: Anvil, client: Client, reference_models: Path
) -> None:
    # Given a collection of three tokens: two published (one of them since sold on), and one
    # minted later whose seed is not committed yet
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "ledger",
                 "--rarity", json.dumps(PALETTE), "--prompt-template", "a painting {palette}",
                 "--max-supply", "9")  # fmt: skip
    collection = Collection.objects.get(slug="ledger")
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    chain = Chain.objects.get(chain_id=collection.chain_id)
    handed: list[int] = []
    listener = Listener(w3, chain, on_confirmed=lambda c, pks: handed.extend(pks))
    mint(w3, collection, 2)
    mine(w3, 2)
    listener.poll()
    commit_seeds(w3, collection, handed, lambda token: None)
    for pk in handed:
        assert pipeline.run_render(pk) == Status.RENDERED
        assert pipeline.run_pin(pk) == Status.PINNED
    assert sorted(publishing.publish_batch(collection.pk).published) == sorted(handed)
    transfer(w3, collection, 1)
    handed.clear()
    mint(w3, collection, 1)
    mint(w3, collection, 1)
    mine(w3, 3)
    listener.poll()
    commit_seeds(w3, collection, handed[:1], lambda token: None)
    mine(w3, 2)
    listener.poll()
    statuses = dict(Token.objects.values_list("token_id", "status"))
    assert statuses == {
        1: Status.FINAL, 2: Status.FINAL, 3: Status.SEED_COMMITTED, 4: Status.CONFIRMED
    }  # fmt: skip
    rows = {t.token_id: {f: getattr(t, f) for f in RESTORED_FIELDS} for t in Token.objects.all()}
    before = served(client, "ledger")
    assert before["details"][1]["owner"] == BUYER.address
    assert before["collection"]["tokens"]["published"] == 2
    assert before["details"][2]["publish_tx"] and before["details"][2]["traits"]
    cursor = ChainCursor.objects.get(collection=collection).block_number

    # When the database loses the collection
    Collection.objects.filter(pk=collection.pk).delete()
    assert not Token.objects.exists() and not TokenTransfer.objects.exists()

    # Then a model folder whose fingerprint is not the frozen one is refused, naming both, and
    # nothing is written
    clip = str(reference_models / "clip")
    with pytest.raises(CommandError) as refused:
        rebuild(anvil, before["collection"], model_dir=clip)
    assert "--model-dir" in str(refused.value) and "nothing written" in str(refused.value)
    assert str(refused.value).count("sha256:") == 2
    assert not Collection.objects.exists()

    # And the rebuild from the chain and IPFS brings back what the API served
    rebuild(anvil, before["collection"])
    after = served(client, "ledger")
    assert without(after["collection"], LOST_COLLECTION_FIELDS) == without(
        before["collection"], LOST_COLLECTION_FIELDS
    )
    assert [without(t, LOST_TOKEN_FIELDS) for t in after["tokens"]] == [
        without(t, LOST_TOKEN_FIELDS) for t in before["tokens"]
    ]
    for token_id, detail in before["details"].items():
        assert without(after["details"][token_id], LOST_TOKEN_FIELDS) == without(
            detail, LOST_TOKEN_FIELDS
        )
        # one event each, saying where it came from
        (event,) = after["details"][token_id]["events"]
        assert event["status"] == detail["status"]
        assert "rebuilt from the chain and IPFS" in event["detail"]
    # the transfer, the seeds and the listener's cursor too, so the pipeline carries on
    rebuilt = Collection.objects.get(slug="ledger")
    (moved,) = TokenTransfer.objects.filter(token__collection=rebuilt)
    assert (moved.token.token_id, moved.to_address) == (1, BUYER.address)
    assert ChainCursor.objects.get(collection=rebuilt).block_number == cursor
    tokens = {t.token_id: t for t in Token.objects.filter(collection=rebuilt)}
    assert {
        token_id: {f: getattr(t, f) for f in RESTORED_FIELDS} for token_id, t in tokens.items()
    } == rows
    assert tokens[1].render_record and tokens[3].seed and not tokens[4].seed

    # and the pin ledger names the collection's CIDs again, which the pin check finds held
    ledger = set(rebuilt.pinned.values_list("cid", flat=True))
    assert ledger >= {rebuilt.contract_uri.removeprefix("ipfs://")} | {
        cid for t in tokens.values() for cid in (t.image_cid, t.metadata_cid) if cid
    }
    outcome = check_pins(collection_pk=rebuilt.pk)
    assert outcome.checked == len(ledger) and outcome.targets["local"].held == len(ledger)

    # And running it again changes nothing: the slug is taken, said so
    with pytest.raises(CommandError, match="already exists"):
        rebuild(anvil, before["collection"])
    assert Token.objects.count() == 4 and TokenEvent.objects.count() == 4
