"""Publishing pinned tokens on a real anvil: batches, repeats, conflicts, an unfunded wallet."""

from __future__ import annotations

import hashlib

import pytest
from web3 import Web3

from chain import publishing
from chain.anvil import ANVIL_ACCOUNTS
from chain.contract import bind
from chain.deployment import CollectionSpec, deploy_collection
from chain.errors import PublishPaused
from chain.listener import Listener
from chain.models import Chain
from chain.seed_commit import commit_seeds
from generation.models import Collection, Token
from ipfs.cid import cid_from_sha256
from tests.test_listener import mine, mint

pytestmark = pytest.mark.django_db(transaction=True)
DEPLOYER, COMMITTER, PUBLISHER = ANVIL_ACCOUNTS[:3]
Status = Token.Status


@pytest.fixture
def collection(w3: Web3) -> Collection:
    return deploy_collection(w3, DEPLOYER.private_key, CollectionSpec(slug="publishing"))


def minted(w3: Web3, collection: Collection, quantity: int, *, commit: bool = True) -> list[Token]:
    """``quantity`` new tokens, recorded by the listener and (unless told not to) with their
    seeds committed, then marked PINNED with metadata of their own, as the pin stage leaves
    them."""
    mint(w3, collection, quantity)
    mine(w3, 2)
    chain = Chain.objects.get(chain_id=collection.chain_id)
    handed: list[int] = []
    Listener(w3, chain, on_confirmed=lambda c, pks: handed.extend(pks)).poll()
    if commit:
        commit_seeds(w3, collection, handed, lambda token: None)
    tokens = list(Token.objects.filter(pk__in=handed).order_by("token_id"))
    for token in tokens:
        digest = hashlib.sha256(f"metadata of {token.token_id}".encode()).digest()
        Token.objects.filter(pk=token.pk).update(
            status=Status.PINNED,
            metadata_sha256=digest.hex(),
            metadata_cid=cid_from_sha256(digest),
        )
        token.refresh_from_db()
    return tokens


def publisher_nonce(w3: Web3) -> int:
    return w3.eth.get_transaction_count(PUBLISHER.address)


def test_it_publishes_pinned_tokens_in_one_transaction(w3: Web3, collection: Collection) -> None:
    tokens = minted(w3, collection, 5)
    before = publisher_nonce(w3)
    summary = publishing.publish_batch(collection.pk, limit=50)
    assert sorted(summary.published) == sorted(t.pk for t in tokens)
    assert publisher_nonce(w3) == before + 1  # one transaction for all five
    contract = bind(w3, collection.contract_address)
    for token in Token.objects.filter(pk__in=[t.pk for t in tokens]):
        assert token.status == Status.PUBLISHED
        assert token.publish_tx_hash == summary.tx_hash
        assert contract.functions.tokenURI(token.token_id).call() == token.token_uri
    # nothing is left to claim: a repeat sends nothing
    assert publishing.publish_batch(collection.pk) == publishing.PublishSummary()
    assert publisher_nonce(w3) == before + 1


def test_it_splits_the_pinned_tokens_into_batches_of_the_configured_size(
    w3: Web3, collection: Collection, settings
) -> None:  # type: ignore[no-untyped-def]
    tokens = minted(w3, collection, 5)
    before = publisher_nonce(w3)
    settings.PUBLISH_BATCH_SIZE = 2
    sizes = []
    while published := publishing.publish_batch(collection.pk).published:
        sizes.append(len(published))
    assert sizes == [2, 2, 1]
    assert publisher_nonce(w3) == before + 3
    statuses = Token.objects.filter(pk__in=[t.pk for t in tokens]).values_list("status", flat=True)
    assert set(statuses) == {Status.PUBLISHED}


def test_a_digest_already_on_chain_is_checked_not_sent_again(
    w3: Web3, collection: Collection
) -> None:
    # A run crashed after its transaction was mined and before the database heard of it
    (token,) = minted(w3, collection, 1)
    contract = bind(w3, collection.contract_address)
    tx = contract.functions.publish(
        [token.token_id], [bytes.fromhex(token.metadata_sha256)]
    ).transact({"from": PUBLISHER.address})
    w3.eth.wait_for_transaction_receipt(tx)
    before = publisher_nonce(w3)
    summary = publishing.publish_batch(collection.pk)
    assert summary.published == [token.pk] and summary.tx_hash == ""
    assert publisher_nonce(w3) == before
    token.refresh_from_db()
    assert token.status == Status.PUBLISHED


def test_a_different_digest_on_chain_fails_the_token_and_publishes_the_others(
    w3: Web3, collection: Collection
) -> None:
    first, second = minted(w3, collection, 2)
    contract = bind(w3, collection.contract_address)
    tx = contract.functions.publish([first.token_id], [b"\x99" * 32]).transact(
        {"from": PUBLISHER.address}
    )
    w3.eth.wait_for_transaction_receipt(tx)
    summary = publishing.publish_batch(collection.pk)
    assert summary.failed == [first.pk] and summary.published == [second.pk]
    first.refresh_from_db()
    assert first.status == Status.FAILED
    assert "the contract holds digest 0x9999" in first.failure_reason


def test_an_unfunded_publisher_pauses_publishing_and_loses_nothing(
    w3: Web3, collection: Collection
) -> None:
    tokens = minted(w3, collection, 3)
    balance = w3.eth.get_balance(PUBLISHER.address)
    w3.provider.make_request("anvil_setBalance", [PUBLISHER.address, "0x0"])
    before = publisher_nonce(w3)
    try:
        with pytest.raises(PublishPaused, match=PUBLISHER.address):
            publishing.publish_batch(collection.pk)
        assert publisher_nonce(w3) == before  # no nonce taken
        for token in Token.objects.filter(pk__in=[t.pk for t in tokens]):
            assert token.status == Status.PINNED  # waiting, not failed
            assert token.failure_reason.startswith("waiting to publish")
    finally:
        w3.provider.make_request("anvil_setBalance", [PUBLISHER.address, hex(balance)])
    # funded again, the next run publishes them all and clears the reason
    summary = publishing.publish_batch(collection.pk)
    assert len(summary.published) == 3
    assert set(
        Token.objects.filter(pk__in=[t.pk for t in tokens]).values_list("failure_reason", flat=True)
    ) == {""}


def test_one_token_that_cannot_be_published_does_not_hold_up_its_batch(
    w3: Web3, collection: Collection
) -> None:
    good = minted(w3, collection, 2)
    (bad,) = minted(w3, collection, 1, commit=False)  # its seed was never committed
    summary = publishing.publish_batch(collection.pk)
    assert sorted(summary.published) == sorted(t.pk for t in good)
    assert summary.failed == [bad.pk]
    bad.refresh_from_db()
    assert bad.status == Status.FAILED
    assert "SeedNotCommitted" in bad.failure_reason


def test_a_paused_collection_publishes_nothing_and_its_history_says_what_happened(
    w3: Web3, collection: Collection
) -> None:
    (token,) = minted(w3, collection, 1)
    Collection.objects.filter(pk=collection.pk).update(paused=True)
    assert publishing.publish_batch(collection.pk) == publishing.PublishSummary()
    token.refresh_from_db()
    assert token.status == Status.PINNED
    Collection.objects.filter(pk=collection.pk).update(paused=False)
    summary = publishing.publish_batch(collection.pk)
    assert summary.published == [token.pk]
    stages = list(token.events.values_list("status", flat=True))
    assert stages == ["CONFIRMED", "SEED_COMMITTED", "PUBLISHING", "PUBLISHED"]


def test_an_unfunded_seed_committer_pauses_seed_commits_and_fails_no_token(
    w3: Web3, collection: Collection, redis_url: str
) -> None:
    from chain.tasks import commit_seeds as commit_seeds_actor

    mint(w3, collection, 2)
    mine(w3, 2)
    chain = Chain.objects.get(chain_id=collection.chain_id)
    handed: list[int] = []
    Listener(w3, chain, on_confirmed=lambda c, pks: handed.extend(pks)).poll()
    balance = w3.eth.get_balance(COMMITTER.address)
    w3.provider.make_request("anvil_setBalance", [COMMITTER.address, "0x0"])
    try:
        commit_seeds_actor.fn(collection.pk, handed)  # as a worker runs it: no exception
    finally:
        w3.provider.make_request("anvil_setBalance", [COMMITTER.address, hex(balance)])
    for token in Token.objects.filter(pk__in=handed):
        assert token.status == Status.CONFIRMED  # waiting, not failed
        assert token.failure_reason.startswith("waiting for the seed commit")
        assert COMMITTER.address in token.failure_reason
