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
from chain.anvil import ANVIL_ACCOUNTS, Anvil, start_anvil
from chain.contract import bind
from chain.deployment import CollectionSpec, deploy_collection, reference_world_spec
from chain.listener import Listener
from chain.models import Chain, ChainCursor, TokenTransfer
from chain.seed_commit import commit_seeds
from chain.vrf import fulfil_pending
from devtools.rarity_fixtures import WEIGHTED as PALETTE
from generation import pipeline
from generation.models import Collection, Token, TokenEvent
from generation.pin_check import check_pins
from ipfs.store import LocalStore
from tests.test_latency_levers import GENESIS_TIME, WORLD
from tests.test_listener import BUYER, COLLECTOR, mine, mint
from tests.test_verify import listen, settings_store, through_pipeline

pytestmark = pytest.mark.django_db(transaction=True)
Status = Token.Status
DEPLOYER = ANVIL_ACCOUNTS[0]

# What a rebuild cannot give back (docs/deploy.md, "What a rebuild cannot restore"): when a row
# was written, and the stage history before the rebuild.
LOST_TOKEN_FIELDS = {"updated_at", "events"}
LOST_COLLECTION_FIELDS = {"created_at"}
# What the pipeline reads beyond the API, restored too
RESTORED_FIELDS = (
    "owner", "seed", "seed_tx_hash", "expected_seed", "seed_block_hash", "attempt", "traits",
    "render_record", "clip_scores", "image_cid", "image_sha256", "image_signature",
    "metadata_cid", "metadata_sha256", "publish_tx_hash", "publish_block_number", "seed_record",
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


def rebuild(
    anvil: Anvil,
    collection: dict[str, Any],
    model_dir: str = "",
    clip_dir: str = "",
    style_images: tuple[str, ...] = (),
    adapters: tuple[str, ...] = (),
    onnx_dir: str = "",
) -> None:
    """``manage.py rebuild_collection`` with the local model folders an operator would name
    (the reference models' unless given)."""
    models = Path(settings.REFERENCE_MODELS_DIR)
    argv = ["--rpc-url", anvil.rpc_url, "--contract", collection["contract"],
            "--slug", collection["slug"],
            "--model-dir", model_dir or str(models / "diffusion"),
            "--clip-dir", clip_dir or str(models / "clip")]  # fmt: skip
    argv += [arg for image in style_images for arg in ("--style-image", image)]
    argv += [arg for adapter in adapters for arg in ("--adapter", adapter)]
    if onnx_dir:
        argv += ["--onnx-dir", onnx_dir]
    call_command("rebuild_collection", *argv)


def restored_rows(slug: str) -> dict[int, dict[str, Any]]:
    """What the pipeline reads of each token beyond the API, by token id."""
    tokens = Token.objects.filter(collection__slug=slug)
    return {t.token_id: {f: getattr(t, f) for f in RESTORED_FIELDS} for t in tokens}


def wiped_and_rebuilt(anvil: Anvil, client: Client, slug: str, **paths: Any) -> Collection:
    """The collection deleted from the database as a lost database leaves it, then rebuilt;
    what the API serves and the pipeline reads is what it was, but for what cannot come back."""
    before, rows = served(client, slug), restored_rows(slug)
    Collection.objects.filter(slug=slug).delete()
    rebuild(anvil, before["collection"], **paths)
    after = served(client, slug)
    assert without(after["collection"], LOST_COLLECTION_FIELDS) == without(
        before["collection"], LOST_COLLECTION_FIELDS
    )
    for token_id, detail in before["details"].items():
        assert without(after["details"][token_id], LOST_TOKEN_FIELDS) == without(
            detail, LOST_TOKEN_FIELDS
        )
    assert restored_rows(slug) == rows
    return Collection.objects.get(slug=slug)


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


def deployed(anvil: Anvil, **spec: Any) -> tuple[Web3, Collection]:
    """A collection of the two-option palette, deployed on ``anvil`` with ``spec``."""
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    return w3, deploy_collection(w3, DEPLOYER.private_key, CollectionSpec(rarity=PALETTE, **spec))


def test_a_vrf_collection_comes_back_with_each_request_and_its_waiting_token_carries_on(
    anvil: Anvil, client: Client, reference_models: Path
) -> None:
    # Given a collection seeded by Chainlink VRF (the local mock coordinator): token 1
    # published, token 2's seed committed but not rendered yet, token 3's word requested and not
    # delivered yet
    w3, vrf = deployed(anvil, slug="rebuilt-vrf", vrf_coordinator="local")
    mint(w3, vrf, 2)
    mine(w3, 2)
    pks = listen(w3, vrf)
    commit_seeds(w3, vrf, pks, lambda token: None)  # the request
    fulfil_pending(w3, DEPLOYER.private_key, vrf.vrf_coordinator)
    assert commit_seeds(w3, vrf, pks, lambda token: None) == (2, 0)
    through_pipeline(w3, vrf, pks[:1], lambda token: None)
    mint(w3, vrf, 1)
    mine(w3, 2)
    waiting = listen(w3, vrf)
    assert commit_seeds(w3, vrf, waiting, lambda token: None) == (0, 0)
    mine(w3, 2)
    listen(w3, vrf)
    statuses = dict(Token.objects.filter(collection=vrf).values_list("token_id", "status"))
    assert statuses == {1: Status.FINAL, 2: Status.SEED_COMMITTED, 3: Status.CONFIRMED}
    committed = Token.objects.get(collection=vrf, token_id=2)
    assert committed.seed_record["fulfil_tx"] and committed.expected_seed == committed.seed

    # When the database loses it and it is rebuilt, each token's request, word and fulfilment
    # come back with it
    rebuilt = wiped_and_rebuilt(anvil, client, "rebuilt-vrf")

    # And the pipeline carries on: the coordinator delivers token 3's word, its seed is committed
    # and checked, and tokens 2 and 3 are published naming their requests in the provenance
    fulfil_pending(w3, DEPLOYER.private_key, rebuilt.vrf_coordinator)
    tokens = {t.token_id: t for t in Token.objects.filter(collection=rebuilt)}
    assert commit_seeds(w3, rebuilt, [tokens[3].pk], lambda token: None) == (1, 0)
    through_pipeline(w3, rebuilt, [tokens[2].pk, tokens[3].pk], lambda token: None)
    store = LocalStore(settings_store())
    for token in Token.objects.filter(collection=rebuilt, token_id__in=(2, 3)):
        provenance = json.loads(store.get(token.metadata_cid))["provenance"]
        assert provenance["vrf"] == {"coordinator": rebuilt.vrf_coordinator, **token.seed_record}
        assert set(token.seed_record) == {"request_id", "random_word", "fulfil_tx"}


def test_a_future_block_collection_comes_back_and_its_waiting_token_gets_its_seed_after(
    anvil: Anvil, client: Client, reference_models: Path
) -> None:
    # Given a collection whose seeds come from the block 3 blocks after the mint: token 1
    # published, token 2 minted but its seed block not reached yet
    w3, future = deployed(anvil, slug="rebuilt-future", seed_delay=3)
    mint(w3, future, 1)
    mine(w3, 2)
    pks = listen(w3, future)
    mine(w3, 3)  # the seed block and its 2 confirmations
    through_pipeline(w3, future, pks, lambda token: None)
    minted_at = mint(w3, future, 1)
    mine(w3, 2)
    waiting: list[int] = []
    assert commit_seeds(w3, future, listen(w3, future), lambda t: None, waiting.append) == (0, 0)
    assert waiting
    published = Token.objects.get(collection=future, token_id=1)
    assert published.seed_block_hash and published.status == Status.FINAL

    # When the database loses it and it is rebuilt
    rebuilt = wiped_and_rebuilt(anvil, client, "rebuilt-future")

    # Then the waiting token's seed comes from its own seed block once that is confirmed
    token = Token.objects.get(collection=rebuilt, token_id=2)
    assert (token.status, token.seed_block_hash) == (Status.CONFIRMED, "")
    mine(w3, 3)
    assert commit_seeds(w3, rebuilt, [token.pk], lambda t: None) == (1, 0)
    token.refresh_from_db()
    assert token.seed_block_hash == w3.eth.get_block(minted_at + 3)["hash"].to_0x_hex()
    assert token.seed == "0x" + bind(w3, rebuilt.contract_address).functions.seedOf(2).call().hex()


@pytest.mark.parametrize("lever", ["lora", "onnx"])
def test_a_collection_rendering_with_a_lever_comes_back_only_with_the_levers_files_named(
    client: Client, lever: str
) -> None:
    # Given a reference world collection published with a LoRA adapter (and its style's gate:
    # its CLIP and reference images), or through ONNX Runtime, on a chain whose block hashes are
    # the same each run (so are its seeds, and the gate's verdicts)
    levers = {"lora": {"style": "top-left"}, "onnx": {"onnx_dir": str(WORLD / "diffusion-onnx")}}
    with start_anvil(timestamp=GENESIS_TIME) as node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        w3.provider.make_request("anvil_setBlockTimestampInterval", [1])
        spec = reference_world_spec(slug=f"rebuilt-{lever}", **levers[lever])
        collection = deploy_collection(w3, DEPLOYER.private_key, spec)
        mint(w3, collection, 1)
        mine(w3, 2)
        through_pipeline(w3, collection, listen(w3, collection), lambda token: None)
        mine(w3, 2)
        listen(w3, collection)
        paths = {
            "model_dir": collection.model_dir,
            "clip_dir": collection.clip_dir,
            "style_images": tuple(collection.style_images),
            "adapters": tuple(adapter["path"] for adapter in collection.lora_adapters),
            "onnx_dir": collection.onnx_dir,
        }
        served_before = served(client, collection.slug)

        # When the database loses it, a rebuild that does not name the lever's files is
        # refused, naming the option, and writes nothing
        Collection.objects.filter(pk=collection.pk).delete()
        missing = {"lora": ("adapters", "--adapter"), "onnx": ("onnx_dir", "--onnx-dir")}
        field, option = missing[lever]
        with pytest.raises(CommandError, match=f"nothing written: .*{option}"):
            rebuild(node, served_before["collection"], **{**paths, field: type(paths[field])()})
        assert not Collection.objects.filter(slug=collection.slug).exists()

        # Then with them named, it comes back as the API served it
        rebuild(node, served_before["collection"], **paths)
        after = served(client, collection.slug)
        assert without(after["collection"], LOST_COLLECTION_FIELDS) == without(
            served_before["collection"], LOST_COLLECTION_FIELDS
        )
        assert without(after["details"][1], LOST_TOKEN_FIELDS) == without(
            served_before["details"][1], LOST_TOKEN_FIELDS
        )
        rebuilt = Collection.objects.get(slug=collection.slug)
        assert (rebuilt.lora_adapters, rebuilt.onnx_dir) == (
            collection.lora_adapters, collection.onnx_dir
        )  # fmt: skip
