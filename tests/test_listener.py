"""The listener on a real anvil (one block per transaction, blocks mined by the test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, Anvil, start_anvil
from chain.contract import bind
from chain.deployment import CollectionSpec, deploy_collection
from chain.listener import Listener
from chain.models import ChainCursor
from generation.models import Collection, Token

pytestmark = pytest.mark.django_db(transaction=True)
DEPLOYER, COLLECTOR = ANVIL_ACCOUNTS[0], ANVIL_ACCOUNTS[3]


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with start_anvil() as node:
        yield node


@pytest.fixture
def w3(anvil: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.rpc_url))


@pytest.fixture
def collection(w3: Web3) -> Collection:
    return deploy_collection(
        w3, DEPLOYER.private_key, CollectionSpec(slug="listener", confirmations=2)
    )


def mint(w3: Web3, collection: Collection, quantity: int) -> int:
    contract = bind(w3, collection.contract_address)
    account = Account.from_key(COLLECTOR.private_key)
    tx = contract.functions.mint(quantity).build_transaction(
        {
            "from": account.address,
            "value": contract.functions.price().call() * quantity,
            "nonce": w3.eth.get_transaction_count(account.address),
        }
    )
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    return w3.eth.wait_for_transaction_receipt(tx_hash)["blockNumber"]


def mine(w3: Web3, blocks: int) -> None:
    w3.provider.make_request("anvil_mine", [blocks])


def test_it_records_nothing_before_the_mint_has_its_confirmations(
    w3: Web3, collection: Collection
) -> None:
    # Given a mint at the head of the chain
    handed_over: list[int] = []
    listener = Listener(w3, on_seed_committed=lambda t: handed_over.append(t.token_id))
    mint_block = mint(w3, collection, 2)
    # When the listener polls with only 0, then 1 confirmation
    assert listener.poll_collection(collection).mints == 0
    mine(w3, 1)
    assert listener.poll_collection(collection).mints == 0
    # Then nothing is recorded, seeded or handed over; with the second confirmation it all is
    assert not Token.objects.exists()
    mine(w3, 1)
    summary = listener.poll_collection(collection)
    assert (summary.mints, summary.seeds_committed) == (2, 2)
    assert handed_over == [1, 2]
    block_hash = bytes(w3.eth.get_block(mint_block)["hash"])
    for token in Token.objects.order_by("token_id"):
        assert token.status == Token.Status.SEED_COMMITTED
        assert token.seed == "0x" + keccak(block_hash + token.token_id.to_bytes(32, "big")).hex()


def test_it_records_each_mint_once_across_polls_and_restarts(
    w3: Web3, collection: Collection
) -> None:
    handed_over: list[int] = []
    mint(w3, collection, 1)
    mint(w3, collection, 2)
    mine(w3, 2)
    Listener(w3, on_seed_committed=lambda t: handed_over.append(t.token_id)).poll_collection(
        collection
    )
    # When the daemon polls again, and a new one starts from the persisted cursor
    again = Listener(w3, on_seed_committed=lambda t: handed_over.append(t.token_id))
    again.poll_collection(collection)
    mine(w3, 3)
    summary = again.poll_collection(collection)
    # Then no mint is recorded or handed over twice
    assert summary.mints == 0
    assert handed_over == [1, 2, 3]
    assert list(Token.objects.values_list("token_id", flat=True)) == [1, 2, 3]
    cursor = ChainCursor.objects.get(collection=collection)
    assert cursor.block_number == summary.head - collection.confirmations
