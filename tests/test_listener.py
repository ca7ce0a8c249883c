"""The listener on a real anvil (one block per transaction, blocks mined and reorganised by the
test with ``anvil_mine`` and ``anvil_reorg``)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from eth_account import Account
from eth_utils import keccak
from hexbytes import HexBytes
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, start_anvil
from chain.contract import bind, send_and_wait
from chain.deployment import CollectionSpec, deploy_collection
from chain.errors import DeepReorg
from chain.listener import Listener
from chain.models import Chain, ChainCursor
from chain.seed_commit import commit_seeds
from generation.models import Collection, Token

pytestmark = pytest.mark.django_db(transaction=True)
DEPLOYER, COMMITTER, PUBLISHER, COLLECTOR, BUYER = ANVIL_ACCOUNTS[:5]
Status = Token.Status


@pytest.fixture
def collection(w3: Web3) -> Collection:
    # a reserve, for the airdrop test; the sale's 997 other tokens are plenty for the rest
    return deploy_collection(w3, DEPLOYER.private_key, CollectionSpec(slug="listener", reserve=3))


@pytest.fixture
def chain(collection: Collection) -> Chain:
    return Chain.objects.get(chain_id=collection.chain_id)


class Handed:
    """Collects what the listener hands over, as the daemon's enqueue function would get it."""

    def __init__(self) -> None:
        self.pks: list[int] = []

    def __call__(self, collection: Collection, pks: list[int]) -> None:
        self.pks += pks

    def token_ids(self) -> list[int]:
        return [Token.objects.get(pk=pk).token_id for pk in self.pks]


def signed_mint(w3: Web3, collection: Collection, quantity: int) -> HexBytes:
    contract = bind(w3, collection.contract_address)
    account = Account.from_key(COLLECTOR.private_key)
    tx = contract.functions.mint(quantity).build_transaction(
        {
            "from": account.address,
            "value": contract.functions.price().call() * quantity,
            "nonce": w3.eth.get_transaction_count(account.address),
        }
    )
    return account.sign_transaction(tx).raw_transaction


def mint(w3: Web3, collection: Collection, quantity: int) -> int:
    tx_hash = w3.eth.send_raw_transaction(signed_mint(w3, collection, quantity))
    return w3.eth.wait_for_transaction_receipt(tx_hash)["blockNumber"]


def mine(w3: Web3, blocks: int) -> None:
    w3.provider.make_request("anvil_mine", [blocks])


def reorg(w3: Web3, depth: int, txs: list[tuple[HexBytes, int]] = ()) -> None:  # type: ignore[assignment]
    response = w3.provider.make_request(
        "anvil_reorg", [depth, [[raw.to_0x_hex(), offset] for raw, offset in txs]]
    )
    assert "error" not in response, response


def seed_of(w3: Web3, block_number: int, token_id: int) -> str:
    block_hash = bytes(w3.eth.get_block(block_number)["hash"])
    return "0x" + keccak(block_hash + token_id.to_bytes(32, "big")).hex()


def test_it_records_nothing_before_the_mint_has_its_confirmations(
    w3: Web3, collection: Collection, chain: Chain
) -> None:
    # Given a mint at the head of the chain, and a chain asking for 2 confirmations
    handed = Handed()
    listener = Listener(w3, chain, on_confirmed=handed)
    mint_block = mint(w3, collection, 2)
    # When the listener polls with 0, then 1 confirmation, nothing is recorded or handed over
    assert listener.poll().mints == 0
    mine(w3, 1)
    assert listener.poll().mints == 0
    assert not Token.objects.exists()
    # Then with the second confirmation both mints are, once, and their seeds check out
    mine(w3, 1)
    assert listener.poll().mints == 2
    assert handed.token_ids() == [1, 2]
    committed = []
    assert commit_seeds(w3, collection, handed.pks, committed.append) == (2, 0)
    for token in Token.objects.order_by("token_id"):
        assert token.status == Status.SEED_COMMITTED
        assert token.seed == seed_of(w3, mint_block, token.token_id) == token.expected_seed


def test_an_airdrop_from_the_reserve_is_recorded_and_seeded_like_a_bought_mint(
    w3: Web3, collection: Collection, chain: Chain
) -> None:
    # Given the admin's sale worker airdropping two reserved tokens to the buyer
    reserved = collection
    listener = Listener(w3, chain, on_confirmed=Handed())
    contract = bind(w3, reserved.contract_address)
    seller = ANVIL_ACCOUNTS[5]  # the sale worker's account: deploy_collection gave it SALES_ROLE
    receipt = send_and_wait(
        w3, seller.private_key, contract.functions.airdrop([BUYER.address], [2])
    )
    mine(w3, 2)
    # When the listener sees it confirmed
    assert listener.poll().mints == 2
    # Then the tokens are the buyer's and get their seeds exactly as bought ones do
    tokens = list(Token.objects.filter(collection=reserved).order_by("token_id"))
    assert [(t.token_id, t.owner) for t in tokens] == [(1, BUYER.address), (2, BUYER.address)]
    assert commit_seeds(w3, reserved, [t.pk for t in tokens], lambda token: None) == (2, 0)
    for token in tokens:
        token.refresh_from_db()
        assert token.status == Status.SEED_COMMITTED
        assert token.seed == seed_of(w3, receipt["blockNumber"], token.token_id)


def test_a_future_block_seed_waits_until_its_seed_block_has_the_confirmations(
    w3: Web3, chain: Chain
) -> None:
    # Given a collection seeding from the block 3 after each mint, and a chain with 2 confirmations
    future = deploy_collection(
        w3, DEPLOYER.private_key, CollectionSpec(slug="listener-future", seed_delay=3)
    )
    handed = Handed()
    listener = Listener(w3, chain, on_confirmed=handed)
    mint_block = mint(w3, future, 2)
    mine(w3, 2)
    assert listener.poll().mints == 2
    # the seed is unknown while its block is not confirmed: nothing is derived or sent
    assert set(Token.objects.filter(collection=future).values_list("expected_seed", flat=True)) == {
        ""
    }
    waiting: list[list[int]] = []
    nonce = w3.eth.get_transaction_count(COMMITTER.address)
    for _ in range(3):  # seed block mint+3 reaches 2 confirmations at mint+5
        assert commit_seeds(w3, future, handed.pks, lambda t: None, waiting.append) == (0, 0)
        mine(w3, 1)
    assert waiting == [handed.pks] * 3 and w3.eth.get_transaction_count(COMMITTER.address) == nonce
    token = Token.objects.get(collection=future, token_id=1)
    assert token.status == Status.CONFIRMED
    assert f"waiting for seed block {mint_block + 3} to be confirmed" in token.failure_reason
    # When the seed block has its confirmations
    assert commit_seeds(w3, future, handed.pks, lambda t: None, waiting.append) == (2, 0)
    # Then each seed is keccak(hash of the seed block ‖ id), derived here and by the contract
    assert len(waiting) == 3
    seed_hash = w3.eth.get_block(mint_block + 3)["hash"].to_0x_hex()
    for token in Token.objects.filter(collection=future).order_by("token_id"):
        assert token.status == Status.SEED_COMMITTED and token.failure_reason == ""
        assert token.seed == token.expected_seed == seed_of(w3, mint_block + 3, token.token_id)
        assert token.seed != seed_of(w3, mint_block, token.token_id)
        assert token.seed_block_hash == seed_hash


def test_a_vrf_seed_is_requested_then_waits_for_the_coordinator(w3: Web3, chain: Chain) -> None:
    # Given a collection seeded by Chainlink VRF (the mock coordinator on this chain)
    vrf = deploy_collection(
        w3, DEPLOYER.private_key, CollectionSpec(slug="listener-vrf", vrf_coordinator="local")
    )
    handed = Handed()
    mint(w3, vrf, 2)
    mine(w3, 2)
    Listener(w3, chain, on_confirmed=handed).poll()
    # When the committer first runs: it requests the word, and the tokens wait for it
    waiting: list[list[int]] = []
    assert commit_seeds(w3, vrf, handed.pks, lambda t: None, waiting.append) == (0, 0)
    (request_id, word) = bind(w3, vrf.contract_address).functions.vrfRequestOf(1).call()
    assert request_id > 0 and word == 0 and waiting == [handed.pks]
    token = Token.objects.get(collection=vrf, token_id=2)
    assert token.status == Status.CONFIRMED
    assert f"waiting for the VRF coordinator to fulfil request {request_id}" in token.failure_reason
    # a second run does not request again
    nonce = w3.eth.get_transaction_count(COMMITTER.address)
    assert commit_seeds(w3, vrf, handed.pks, lambda t: None, waiting.append) == (0, 0)
    assert w3.eth.get_transaction_count(COMMITTER.address) == nonce
    # When the coordinator fulfils the request (the Chainlink node's part, here the mock's)
    out = StringIO()
    call_command("fulfil_vrf", "listener-vrf", stdout=out)
    assert out.getvalue() == f"fulfilled VRF request {request_id}\n"
    assert commit_seeds(w3, vrf, handed.pks, lambda t: None, waiting.append) == (2, 0)
    # Then each seed is keccak(word ‖ id), recorded with the request and its fulfilment
    (_, word) = bind(w3, vrf.contract_address).functions.vrfRequestOf(1).call()
    for token in Token.objects.filter(collection=vrf).order_by("token_id"):
        expected = keccak(word.to_bytes(32, "big") + token.token_id.to_bytes(32, "big"))
        assert token.status == Status.SEED_COMMITTED
        assert token.seed == token.expected_seed == "0x" + expected.hex()
        assert token.seed_record["request_id"] == str(request_id)
        assert token.seed_record["random_word"] == "0x" + word.to_bytes(32, "big").hex()
        receipt = w3.eth.get_transaction_receipt(token.seed_record["fulfil_tx"])
        assert receipt["to"] == vrf.vrf_coordinator


def test_it_records_each_mint_once_across_polls_and_restarts(
    w3: Web3, collection: Collection, chain: Chain
) -> None:
    handed = Handed()
    mint(w3, collection, 1)
    mint(w3, collection, 2)
    mine(w3, 2)
    Listener(w3, chain, on_confirmed=handed).poll()
    # When the daemon polls again, and a new one starts from the persisted cursor
    again = Listener(w3, chain, on_confirmed=handed)
    again.poll()
    mine(w3, 3)
    summary = again.poll()
    # Then no mint is recorded or handed over twice
    assert summary.mints == 0
    assert handed.token_ids() == [1, 2, 3]
    assert list(Token.objects.values_list("token_id", flat=True)) == [1, 2, 3]
    cursor = ChainCursor.objects.get(collection=collection)
    assert cursor.block_number == w3.eth.block_number - chain.confirmations
    assert cursor.block_hash == w3.eth.get_block(cursor.block_number)["hash"].to_0x_hex()


def test_it_processes_a_mint_reorged_before_its_confirmations_once_in_its_new_block(
    w3: Web3, collection: Collection, chain: Chain
) -> None:
    # Given a mint with one confirmation, which a reorg moves to another block
    handed = Handed()
    listener = Listener(w3, chain, on_confirmed=handed)
    raw = signed_mint(w3, collection, 1)
    first_block = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))[
        "blockNumber"
    ]
    first_hash = w3.eth.get_block(first_block)["hash"].to_0x_hex()
    mine(w3, 1)
    assert listener.poll().mints == 0
    reorg(w3, 2, [(raw, 1)])
    mine(w3, 2)
    # When the listener polls
    assert listener.poll().mints == 1
    # Then the token is recorded once, with the block that holds the mint now
    token = Token.objects.get()
    new_block = bind(w3, collection.contract_address).functions.mintBlockOf(1).call()
    new_hash = w3.eth.get_block(new_block)["hash"].to_0x_hex()
    assert (token.mint_block_number, token.mint_block_hash) == (new_block, new_hash)
    assert new_hash != first_hash
    assert token.expected_seed == seed_of(w3, new_block, 1)
    assert commit_seeds(w3, collection, handed.pks, lambda t: None) == (1, 0)


def test_it_marks_a_token_whose_mint_vanished_reorged_and_never_commits_its_seed(
    w3: Web3, collection: Collection, chain: Chain
) -> None:
    # Given a mint the listener recorded with its 2 confirmations
    handed = Handed()
    listener = Listener(w3, chain, on_confirmed=handed)
    mint(w3, collection, 1)
    mine(w3, 2)
    assert listener.poll().mints == 1
    nonces = {a.address: w3.eth.get_transaction_count(a.address) for a in (COMMITTER, PUBLISHER)}
    # When a reorg deeper than the confirmations drops the mint
    reorg(w3, 4)
    summary = listener.poll()
    # Then the token is REORGED, and its queued seed commit sends nothing
    assert summary.reorged == 1
    token = Token.objects.get()
    assert token.status == Status.REORGED
    assert "reorganised away" in token.failure_reason
    assert commit_seeds(w3, collection, handed.pks, lambda t: None) == (0, 0)
    assert Token.objects.get().status == Status.REORGED
    assert {a: w3.eth.get_transaction_count(a) for a in nonces} == nonces
    assert bind(w3, collection.contract_address).functions.totalSupply().call() == 0


def test_it_processes_a_recorded_mint_that_a_reorg_moved_once_more_with_its_new_block(
    w3: Web3, collection: Collection, chain: Chain
) -> None:
    handed = Handed()
    listener = Listener(w3, chain, on_confirmed=handed)
    raw = signed_mint(w3, collection, 1)
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
    mine(w3, 2)
    listener.poll()
    old = Token.objects.get()
    # When a reorg deeper than the confirmations re-includes the mint in a later block
    reorg(w3, 3, [(raw, 2)])
    mine(w3, 2)
    summary = listener.poll()
    # Then the same row is processed again, once, with the new block
    assert (summary.reorged, summary.reincluded, summary.mints) == (1, 1, 0)
    token = Token.objects.get()
    assert token.pk == old.pk and token.status == Status.CONFIRMED
    assert token.mint_block_hash != old.mint_block_hash
    assert token.expected_seed == seed_of(w3, token.mint_block_number, 1)
    assert handed.pks == [old.pk, old.pk]


def test_it_stops_on_a_reorg_deeper_than_the_finality_window(
    w3: Web3, collection: Collection, chain: Chain, redis_url: str
) -> None:
    Chain.objects.filter(pk=chain.pk).update(finality_depth=3, confirmations=1)
    chain.refresh_from_db()
    listener = Listener(w3, chain, on_confirmed=Handed())
    mint(w3, collection, 1)
    mine(w3, 6)
    listener.poll()
    reorg(w3, 8)
    with pytest.raises(DeepReorg, match="deeper than the finality window"):
        listener.poll()
    # and the daemon exits with that reason rather than going on
    with pytest.raises(CommandError, match="deeper than the finality window"):
        call_command("listen_chain", "--once")
    assert Token.objects.get().status == Status.CONFIRMED


def test_it_waits_for_the_nodes_safe_block_when_the_chain_uses_that_tag(
    w3: Web3, collection: Collection, chain: Chain
) -> None:
    # Given a chain trusting the node's "safe" block (anvil: 32 behind the head)
    Chain.objects.filter(pk=chain.pk).update(confirmation_tag=Chain.Tag.SAFE)
    chain.refresh_from_db()
    listener = Listener(w3, chain, on_confirmed=Handed())
    mint(w3, collection, 1)
    # When 31 blocks follow the mint, it is not yet safe; with the 32nd it is
    mine(w3, 31)
    assert listener.poll().mints == 0
    mine(w3, 1)
    assert listener.poll().mints == 1


def test_it_follows_several_chains_in_one_daemon(
    w3: Web3,
    collection: Collection,
    settings,
    redis_url: str,  # type: ignore[no-untyped-def]
) -> None:
    # Given a second chain (its own chain id, so keys are required there) with a collection
    settings.DEPLOYER_KEY, settings.SEED_COMMITTER_KEY, settings.PUBLISHER_KEY = (
        DEPLOYER.private_key, COMMITTER.private_key, PUBLISHER.private_key,
    )  # fmt: skip
    with start_anvil(chain_id=4242) as other_node:
        other_w3 = Web3(Web3.HTTPProvider(other_node.rpc_url))
        other = deploy_collection(other_w3, DEPLOYER.private_key, CollectionSpec(slug="other"))
        mint(w3, collection, 2)
        mint(other_w3, other, 3)
        mine(w3, 2)
        mine(other_w3, 2)
        # When one daemon polls once
        call_command("listen_chain", "--once")
    # Then both chains' mints are recorded
    assert Token.objects.filter(collection=collection).count() == 2
    assert Token.objects.filter(collection=other).count() == 3
    assert set(Chain.objects.values_list("chain_id", flat=True)) == {31337, 4242}


def transfer(w3: Web3, collection: Collection, token_id: int, sender, to: str) -> int:  # type: ignore[no-untyped-def]
    contract = bind(w3, collection.contract_address)
    fn = contract.functions.transferFrom(sender.address, to, token_id)
    return int(send_and_wait(w3, sender.private_key, fn)["blockNumber"])


def test_it_follows_a_tokens_owner_through_confirmed_transfers_and_reorgs(
    w3: Web3, collection: Collection, chain: Chain, client: Client
) -> None:
    # Given a token minted by the collector, confirmed
    listener = Listener(w3, chain, on_confirmed=Handed())
    mint(w3, collection, 2)
    mine(w3, 2)
    listener.poll()
    token = Token.objects.get(collection=collection, token_id=1)
    assert token.owner == COLLECTOR.address
    # When the collector sells token 1 on: a transfer not yet confirmed changes nothing
    first = transfer(w3, collection, 1, COLLECTOR, BUYER.address)
    assert listener.poll().transfers == 0
    token.refresh_from_db()
    assert token.owner == COLLECTOR.address
    # Then with its confirmations the owner is the buyer, and the transfer is on record
    mine(w3, 2)
    assert listener.poll().transfers == 1
    token.refresh_from_db()
    assert token.owner == BUYER.address
    (moved,) = token.transfers.all()
    assert (moved.from_address, moved.to_address, moved.block_number) == (
        COLLECTOR.address,
        BUYER.address,
        first,
    )
    assert Token.objects.get(collection=collection, token_id=2).owner == COLLECTOR.address
    # as the API and the token page say
    api = client.get("/api/collections/listener/tokens/1/").json()
    assert api["owner"] == BUYER.address
    assert [
        t["token_id"] for t in client.get(f"/api/tokens/?owner={BUYER.address}").json()["results"]
    ] == [1]
    assert BUYER.address in client.get("/c/listener/tokens/1/").content.decode()
    # And a second transfer, then a reorg that removes it, sets the owner back to the buyer
    transfer(w3, collection, 1, BUYER, COLLECTOR.address)
    mine(w3, 2)
    listener.poll()
    token.refresh_from_db()
    assert token.owner == COLLECTOR.address and token.transfers.count() == 2
    reorg(w3, 3)  # the second transfer's block and the two on top of it
    mine(w3, 3)
    listener.poll()
    token.refresh_from_db()
    assert token.owner == BUYER.address and token.transfers.count() == 1
    # and a reorg under the first transfer too sets it back to the minter
    ancestor = first - 1
    reorg(w3, w3.eth.block_number - ancestor)
    mine(w3, 3)
    listener.poll()
    token.refresh_from_db()
    assert token.owner == COLLECTOR.address and token.transfers.count() == 0
    assert token.status != Status.REORGED  # the mint itself is older than the reorgs
