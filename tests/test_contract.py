"""MintOnDemand on a real anvil: minting, seed commitment, publication, tokenURI CIDs, roles.

Personas: Ada operates the collection (admin, seed committer, publisher), Colin collects, Mallory
holds no role.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_account import Account
from multiformats import CID, multihash
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError
from web3.types import TxReceipt

from chain.anvil import ANVIL_ACCOUNTS, Anvil, AnvilAccount, start_anvil
from chain.contract import (
    ARTIFACT_PATH,
    bind,
    contract_abi,
    deploy_contract,
    load_artifact,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PRICE = Web3.to_wei(0.01, "ether")
MAX_SUPPLY = 5

ADA, COLIN, MALLORY = ANVIL_ACCOUNTS[:3]


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with start_anvil() as node:
        yield node


@pytest.fixture(scope="module")
def w3(anvil: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.rpc_url))


@pytest.fixture
def collection(w3: Web3) -> Contract:
    address, _ = deploy_contract(
        w3,
        ADA.private_key,
        name="Dreams",
        symbol="DRM",
        price_wei=PRICE,
        max_supply=MAX_SUPPLY,
    )
    return bind(w3, address)


def transact(w3: Web3, fn: ContractFunction, sender: AnvilAccount, value: int = 0) -> TxReceipt:
    tx = fn.build_transaction(
        {
            "from": sender.address,
            "value": value,
            "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        }
    )
    signed = Account.sign_transaction(tx, sender.private_key)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    assert receipt["status"] == 1
    return receipt


def revert_of(
    fn: ContractFunction, sender: AnvilAccount, value: int = 0
) -> tuple[str, tuple[Any, ...]]:
    """The custom error (name, args) that ``fn`` reverts with when ``sender`` calls it now."""
    with pytest.raises(ContractCustomError) as info:
        fn.call({"from": sender.address, "value": value})
    data = bytes.fromhex(str(info.value.data).removeprefix("0x"))
    for entry in contract_abi():
        if entry["type"] != "error":
            continue
        types = [item["type"] for item in entry["inputs"]]
        if Web3.keccak(text=f"{entry['name']}({','.join(types)})")[:4] == data[:4]:
            return entry["name"], tuple(abi_decode(types, data[4:]))
    raise AssertionError(f"revert data {data.hex()} matches no error in the ABI")


def mine(w3: Web3, blocks: int = 1) -> None:
    """Mine empty blocks. eth_call and estimateGas run with block.number == the latest block, so a
    commit is only possible once a block has been mined on top of the mint's block."""
    w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]


def expected_seed(w3: Web3, mint_block: int, token_id: int) -> bytes:
    block_hash = bytes(w3.eth.get_block(mint_block)["hash"])
    return bytes(Web3.keccak(block_hash + token_id.to_bytes(32, "big")))


def ipfs_uri(digest: bytes) -> str:
    return "ipfs://" + str(CID("base32", 1, "raw", multihash.wrap(digest, "sha2-256")))


def test_it_keeps_committed_artifacts_equal_to_a_fresh_compile(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node is needed to compile contracts/MintOnDemand.sol"
    result = subprocess.run(
        [node, str(REPO_ROOT / "contracts" / "compile.js"), "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"compile failed:\n{result.stderr}"
    fresh = json.loads((tmp_path / "MintOnDemand.json").read_text())
    committed = load_artifact()
    stale = "is stale: run `node contracts/compile.js` and commit contracts/build/MintOnDemand.json"
    assert fresh["abi"] == committed["abi"], f"{ARTIFACT_PATH} ABI {stale}"
    assert fresh["bytecode"] == committed["bytecode"], f"{ARTIFACT_PATH} bytecode {stale}"
    assert fresh["deployedBytecode"] == committed["deployedBytecode"], f"{ARTIFACT_PATH} {stale}"


def test_it_starts_anvil_with_the_default_accounts(w3: Web3) -> None:
    assert w3.eth.chain_id == 31337
    assert w3.eth.accounts[: len(ANVIL_ACCOUNTS)] == [a.address for a in ANVIL_ACCOUNTS]
    for account in ANVIL_ACCOUNTS:
        assert Account.from_key(account.private_key).address == account.address


def test_it_stops_anvil_on_leaving_the_context() -> None:
    with start_anvil(chain_id=4242) as node:
        assert Web3(Web3.HTTPProvider(node.rpc_url)).eth.chain_id == 4242
    assert node.process.poll() is not None


def test_it_deploys_with_the_admin_holding_every_role(w3: Web3, collection: Contract) -> None:
    for role in ("DEFAULT_ADMIN_ROLE", "SEED_COMMITTER_ROLE", "PUBLISHER_ROLE"):
        role_id = getattr(collection.functions, role)().call()
        assert collection.functions.hasRole(role_id, ADA.address).call()
        assert not collection.functions.hasRole(role_id, MALLORY.address).call()
    assert collection.functions.price().call() == PRICE
    assert collection.functions.maxSupply().call() == MAX_SUPPLY
    assert collection.functions.totalSupply().call() == 0
    assert collection.functions.name().call() == "Dreams"


def test_it_deploys_with_a_separate_admin(w3: Web3) -> None:
    address, block = deploy_contract(
        w3,
        ADA.private_key,
        name="X",
        symbol="X",
        price_wei=1,
        max_supply=1,
        admin=COLIN.address,
    )
    contract = bind(w3, address)
    publisher = contract.functions.PUBLISHER_ROLE().call()
    assert contract.functions.hasRole(publisher, COLIN.address).call()
    assert not contract.functions.hasRole(publisher, ADA.address).call()
    assert w3.eth.get_code(address, block) != b""
    assert w3.eth.get_code(address, block - 1) == b""


def test_it_mints_sequential_ids_for_exact_payment(w3: Web3, collection: Contract) -> None:
    receipt = transact(w3, collection.functions.mint(2), COLIN, value=2 * PRICE)
    transfers = collection.events.Transfer().process_receipt(receipt)
    zero = "0x" + "00" * 20
    assert [(t.args["from"], t.args["to"], t.args["tokenId"]) for t in transfers] == [
        (zero, COLIN.address, 1),
        (zero, COLIN.address, 2),
    ]
    assert collection.functions.ownerOf(1).call() == COLIN.address
    assert collection.functions.ownerOf(2).call() == COLIN.address
    assert collection.functions.totalSupply().call() == 2
    assert collection.functions.mintBlockOf(1).call() == receipt["blockNumber"]
    assert collection.functions.mintBlockOf(2).call() == receipt["blockNumber"]
    assert w3.eth.get_balance(collection.address) == 2 * PRICE

    transact(w3, collection.functions.mint(1), COLIN, value=PRICE)
    assert collection.functions.ownerOf(3).call() == COLIN.address


@pytest.mark.parametrize(
    ("quantity", "value", "error"),
    [
        (1, 0, ("WrongPayment", (0, PRICE))),
        (1, PRICE + 1, ("WrongPayment", (PRICE + 1, PRICE))),
        (2, PRICE, ("WrongPayment", (PRICE, 2 * PRICE))),
        (0, 0, ("ZeroQuantity", ())),
        (
            MAX_SUPPLY + 1,
            (MAX_SUPPLY + 1) * PRICE,
            ("SoldOut", (MAX_SUPPLY + 1, MAX_SUPPLY)),
        ),
    ],
)
def test_it_rejects_a_bad_mint(
    collection: Contract, quantity: int, value: int, error: tuple[str, tuple[Any, ...]]
) -> None:
    assert revert_of(collection.functions.mint(quantity), COLIN, value=value) == error


def test_it_sells_out_at_max_supply(w3: Web3, collection: Contract) -> None:
    transact(w3, collection.functions.mint(3), COLIN, value=3 * PRICE)
    assert revert_of(collection.functions.mint(3), COLIN, value=3 * PRICE) == (
        "SoldOut",
        (3, 2),
    )
    transact(w3, collection.functions.mint(2), COLIN, value=2 * PRICE)
    assert revert_of(collection.functions.mint(1), COLIN, value=PRICE) == (
        "SoldOut",
        (1, 0),
    )
    assert collection.functions.totalSupply().call() == MAX_SUPPLY


def test_it_reverts_views_for_unknown_tokens(collection: Contract) -> None:
    assert revert_of(collection.functions.mintBlockOf(1), COLIN) == (
        "UnknownToken",
        (1,),
    )
    assert revert_of(collection.functions.tokenURI(1), COLIN) == (
        "ERC721NonexistentToken",
        (1,),
    )
    assert collection.functions.seedOf(1).call() == b"\x00" * 32


def test_it_commits_the_seed_from_the_mint_block_hash(w3: Web3, collection: Contract) -> None:
    mint = transact(w3, collection.functions.mint(2), COLIN, value=2 * PRICE)
    mine(w3)
    assert collection.functions.seedOf(1).call() == b"\x00" * 32

    commit = transact(w3, collection.functions.commitSeeds([1, 2]), ADA)

    mint_block = mint["blockNumber"]
    assert bytes(w3.eth.get_block(mint_block)["hash"]) == bytes(mint["blockHash"])
    seeds = {token_id: expected_seed(w3, mint_block, token_id) for token_id in (1, 2)}
    assert seeds[1] != seeds[2]
    for token_id, seed in seeds.items():
        assert collection.functions.seedOf(token_id).call() == seed
    events = collection.events.SeedCommitted().process_receipt(commit)
    assert [(e.args["tokenId"], e.args["seed"]) for e in events] == [
        (1, seeds[1]),
        (2, seeds[2]),
    ]


def test_it_commits_a_seed_only_once(w3: Web3, collection: Contract) -> None:
    transact(w3, collection.functions.mint(2), COLIN, value=2 * PRICE)
    mine(w3)
    transact(w3, collection.functions.commitSeeds([1]), ADA)
    assert revert_of(collection.functions.commitSeeds([1]), ADA) == (
        "SeedAlreadyCommitted",
        (1,),
    )
    # A batch fails as a whole: token 2 stays uncommitted.
    assert revert_of(collection.functions.commitSeeds([2, 1]), ADA) == (
        "SeedAlreadyCommitted",
        (1,),
    )
    assert collection.functions.seedOf(2).call() == b"\x00" * 32


def test_it_waits_for_the_mint_block_to_finish(w3: Web3, collection: Contract) -> None:
    # eth_call at "latest" executes with block.number == the latest block, the mint's own block.
    mint = transact(w3, collection.functions.mint(1), COLIN, value=PRICE)
    assert w3.eth.block_number == mint["blockNumber"]
    assert revert_of(collection.functions.commitSeeds([1]), ADA) == (
        "MintBlockNotFinished",
        (1,),
    )
    mine(w3)
    transact(w3, collection.functions.commitSeeds([1]), ADA)
    assert collection.functions.seedOf(1).call() == expected_seed(w3, mint["blockNumber"], 1)


def test_it_refuses_seeds_for_unminted_tokens(w3: Web3, collection: Contract) -> None:
    transact(w3, collection.functions.mint(1), COLIN, value=PRICE)
    mine(w3)
    assert revert_of(collection.functions.commitSeeds([2]), ADA) == (
        "UnknownToken",
        (2,),
    )
    assert revert_of(collection.functions.commitSeeds([0]), ADA) == (
        "UnknownToken",
        (0,),
    )


def test_it_refuses_seeds_outside_the_blockhash_window(w3: Web3, collection: Contract) -> None:
    mint = transact(w3, collection.functions.mint(1), COLIN, value=PRICE)
    mine(w3, 300)
    assert revert_of(collection.functions.commitSeeds([1]), ADA) == (
        "SeedWindowExpired",
        (1, mint["blockNumber"]),
    )


def test_it_publishes_and_points_token_uri_at_the_cid(w3: Web3, collection: Contract) -> None:
    transact(w3, collection.functions.mint(2), COLIN, value=2 * PRICE)
    mine(w3)
    transact(w3, collection.functions.commitSeeds([1, 2]), ADA)
    assert collection.functions.tokenURI(1).call() == ""

    digests = [os.urandom(32), hashlib.sha256(b"").digest()]
    receipt = transact(w3, collection.functions.publish([1, 2], digests), ADA)

    assert collection.functions.tokenURI(1).call() == ipfs_uri(digests[0])
    assert collection.functions.metadataDigestOf(1).call() == digests[0]
    # Kubo's CID for an empty file added with --cid-version=1 --raw-leaves.
    empty = "ipfs://bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert collection.functions.tokenURI(2).call() == ipfs_uri(digests[1]) == empty
    events = collection.events.MetadataUpdate().process_receipt(receipt)
    assert [e.args["_tokenId"] for e in events] == [1, 2]


@pytest.mark.parametrize("digest", [bytes(range(32)), b"\xff" * 32, b"\x00" * 31 + b"\x01"])
def test_it_encodes_edge_digests_like_multiformats(
    w3: Web3, collection: Contract, digest: bytes
) -> None:
    transact(w3, collection.functions.mint(1), COLIN, value=PRICE)
    mine(w3)
    transact(w3, collection.functions.commitSeeds([1]), ADA)
    transact(w3, collection.functions.publish([1], [digest]), ADA)
    assert collection.functions.tokenURI(1).call() == ipfs_uri(digest)


def test_it_refuses_a_bad_publication(w3: Web3, collection: Contract) -> None:
    transact(w3, collection.functions.mint(2), COLIN, value=2 * PRICE)
    mine(w3)
    transact(w3, collection.functions.commitSeeds([1]), ADA)
    digest = os.urandom(32)
    publish = collection.functions.publish

    assert revert_of(publish([2], [digest]), ADA) == ("SeedNotCommitted", (2,))
    assert revert_of(publish([3], [digest]), ADA) == ("SeedNotCommitted", (3,))
    assert revert_of(publish([1, 2], [digest]), ADA) == ("LengthMismatch", ())
    assert revert_of(publish([1], [b"\x00" * 32]), ADA) == ("EmptyDigest", (1,))
    transact(w3, publish([1], [digest]), ADA)
    assert revert_of(publish([1], [os.urandom(32)]), ADA) == ("AlreadyPublished", (1,))
    assert collection.functions.metadataDigestOf(1).call() == digest


def test_it_keeps_role_actions_from_other_accounts(w3: Web3, collection: Contract) -> None:
    transact(w3, collection.functions.mint(1), COLIN, value=PRICE)
    mine(w3)
    committer = collection.functions.SEED_COMMITTER_ROLE().call()
    publisher = collection.functions.PUBLISHER_ROLE().call()
    admin = collection.functions.DEFAULT_ADMIN_ROLE().call()
    unauthorized = "AccessControlUnauthorizedAccount"

    assert revert_of(collection.functions.commitSeeds([1]), MALLORY) == (
        unauthorized,
        (MALLORY.address.lower(), committer),
    )
    transact(w3, collection.functions.commitSeeds([1]), ADA)
    assert revert_of(collection.functions.publish([1], [os.urandom(32)]), MALLORY) == (
        unauthorized,
        (MALLORY.address.lower(), publisher),
    )
    assert revert_of(collection.functions.withdraw(MALLORY.address), MALLORY) == (
        unauthorized,
        (MALLORY.address.lower(), admin),
    )


def test_it_withdraws_the_balance_to_the_admin_choice(w3: Web3, collection: Contract) -> None:
    transact(w3, collection.functions.mint(3), COLIN, value=3 * PRICE)
    before = w3.eth.get_balance(MALLORY.address)
    transact(w3, collection.functions.withdraw(MALLORY.address), ADA)
    assert w3.eth.get_balance(MALLORY.address) == before + 3 * PRICE
    assert w3.eth.get_balance(collection.address) == 0


def test_it_reports_withdraw_failure(w3: Web3, collection: Contract) -> None:
    # A second collection has no receive/fallback, so sending it ether fails.
    transact(w3, collection.functions.mint(1), COLIN, value=PRICE)
    refuser, _ = deploy_contract(
        w3, ADA.private_key, name="R", symbol="R", price_wei=1, max_supply=1
    )
    assert revert_of(collection.functions.withdraw(refuser), ADA) == (
        "WithdrawFailed",
        (),
    )


@pytest.mark.parametrize(
    ("interface_id", "supported"),
    [
        ("0x49064906", True),  # ERC-4906
        ("0x80ac58cd", True),  # ERC-721
        ("0x5b5e139f", True),  # ERC-721 metadata
        ("0x7965db0b", True),  # AccessControl
        ("0x01ffc9a7", True),  # ERC-165
        ("0xffffffff", False),
    ],
)
def test_it_answers_supports_interface(
    collection: Contract, interface_id: str, supported: bool
) -> None:
    assert (
        collection.functions.supportsInterface(bytes.fromhex(interface_id[2:])).call() is supported
    )
