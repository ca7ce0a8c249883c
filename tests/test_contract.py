"""MintOnDemand on a real anvil: minting, seeds and their fallbacks, freeze, publication, tokenURI
CIDs, roles, payments and royalties.

Personas: Ada operates the collection (admin, seed committer, publisher), Colin and Dora collect,
Mallory holds no role, Paula is the payee.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from hypothesis import example, given, settings
from hypothesis import strategies as st
from multiformats import CID, multihash
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from web3.types import TxReceipt

from chain.abi import SHIPPED, load_abi
from chain.anvil import ANVIL_ACCOUNTS, Anvil, AnvilAccount, start_anvil
from chain.contract import (
    ARTIFACT_PATH,
    artifact_path,
    bind,
    contract_abi,
    deploy_contract,
    freeze_config,
    load_artifact,
    send_and_wait,
)
from chain.vrf import LocalVrf, add_consumer, local_coordinator
from chain.vrf import coordinator as vrf_coordinator

REPO_ROOT = Path(__file__).resolve().parent.parent
PRICE = Web3.to_wei(0.01, "ether")
MAX_SUPPLY = 12
MAX_PER_TX = 5
CONFIG_DIGEST = hashlib.sha256(b"generation config and rarity table").digest()
CONTRACT_URI = "ipfs://bafkreicollection"
PLACEHOLDER = "ipfs://bafkreiplaceholder"
HISTORY_STORAGE = "0x0000F90827F1C53a10cb7A02335B175320002935"
ZERO_HASH = b"\x00" * 32

ADA, COLIN, MALLORY, PAULA, DORA = ANVIL_ACCOUNTS[:5]


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """anvil's default hardfork, which has the EIP-2935 history contract."""
    with start_anvil() as node:
        yield node


@pytest.fixture(scope="module")
def w3(anvil: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.rpc_url))


@pytest.fixture(scope="module")
def cancun_w3() -> Iterator[Web3]:
    """A chain without the EIP-2935 history contract."""
    with start_anvil(hardfork="cancun") as node:
        yield Web3(Web3.HTTPProvider(node.rpc_url))


def deploy(w3: Web3, *, frozen: bool = True, **overrides: Any) -> Contract:
    options: dict[str, Any] = {
        "name": "Dreams",
        "symbol": "DRM",
        "price_wei": PRICE,
        "max_supply": MAX_SUPPLY,
        "max_per_tx": MAX_PER_TX,
        "payee": PAULA.address,
        "placeholder_uri": PLACEHOLDER,
    }
    address, _ = deploy_contract(w3, ADA.private_key, **(options | overrides))
    if frozen:
        freeze_config(w3, ADA.private_key, address, CONFIG_DIGEST, CONTRACT_URI)
    return bind(w3, address)


@pytest.fixture
def collection(w3: Web3) -> Contract:
    return deploy(w3)


def transact(w3: Web3, fn: ContractFunction, sender: AnvilAccount, value: int = 0) -> TxReceipt:
    return send_and_wait(w3, sender.private_key, fn, value)


def decode_error(data: bytes) -> tuple[str, tuple[Any, ...]]:
    for entry in contract_abi():
        if entry["type"] != "error":
            continue
        types = [item["type"] for item in entry["inputs"]]
        if Web3.keccak(text=f"{entry['name']}({','.join(types)})")[:4] == data[:4]:
            return entry["name"], tuple(abi_decode(types, data[4:]))
    raise AssertionError(f"revert data {data.hex()} matches no error in the ABI")


def revert_of(
    fn: ContractFunction, sender: AnvilAccount, value: int = 0
) -> tuple[str, tuple[Any, ...]]:
    """The custom error (name, args) that ``fn`` reverts with when ``sender`` calls it now."""
    with pytest.raises(ContractCustomError) as info:
        fn.call({"from": sender.address, "value": value})
    return decode_error(bytes.fromhex(str(info.value.data).removeprefix("0x")))


def mine(w3: Web3, blocks: int = 1) -> None:
    """Mine empty blocks. eth_call and estimateGas run with block.number == the latest block, so a
    commit is only possible once a block has been mined on top of the mint's block."""
    w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]


def mint(w3: Web3, contract: Contract, quantity: int, who: AnvilAccount = COLIN) -> TxReceipt:
    return transact(w3, contract.functions.mint(quantity), who, value=quantity * PRICE)


def block_hash(w3: Web3, number: int) -> bytes:
    return bytes(w3.eth.get_block(number)["hash"])


def expected_seed(w3: Web3, mint_block: int, token_id: int) -> bytes:
    """keccak256(abi.encodePacked(bytes32 mintBlockHash, uint256 tokenId)), computed off-chain."""
    return bytes(Web3.keccak(block_hash(w3, mint_block) + token_id.to_bytes(32, "big")))


def seed_events(contract: Contract, receipt: TxReceipt) -> list[tuple[int, bytes]]:
    events = contract.events.SeedCommitted().process_receipt(receipt, errors=DISCARD)
    return [(e.args["tokenId"], bytes(e.args["seed"])) for e in events]


def ipfs_uri(digest: bytes) -> str:
    return "ipfs://" + str(CID("base32", 1, "raw", multihash.wrap(digest, "sha2-256")))


def role(contract: Contract, name: str) -> bytes:
    return bytes(getattr(contract.functions, name)().call())


# ---------------------------------------------------------------- build and chain


def test_it_keeps_committed_artifacts_equal_to_a_fresh_compile(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node is needed to compile contracts/*.sol"
    result = subprocess.run(
        [node, str(REPO_ROOT / "contracts" / "compile.js"), "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"compile failed:\n{result.stderr}"
    assert artifact_path() == ARTIFACT_PATH
    for name in ("MintOnDemand", "SaleRules", "PaymentSplit", "NaiveBaseline"):
        fresh = json.loads((tmp_path / f"{name}.json").read_text())
        committed = load_artifact(name)
        stale = f"{artifact_path(name)} is stale: run `node contracts/compile.js` and commit it"
        for key in ("abi", "bytecode", "deployedBytecode", "linkReferences", "compiler"):
            assert fresh[key] == committed[key], f"{key}: {stale}"
        # EIP-170: every contract must fit a chain's code size limit (compile.js refuses otherwise)
        assert len(committed["deployedBytecode"]) // 2 - 1 <= 24_576, name
    for name in SHIPPED:
        shipped = (
            f"chain/abi/{name}.abi.json is stale: run `node contracts/compile.js` and commit it"
        )
        fresh_abi = json.loads((tmp_path / f"{name}.abi.json").read_text())
        assert fresh_abi == load_abi(name) == load_artifact(name)["abi"], shipped


def test_it_binds_the_contract_with_the_abi_shipped_as_package_data() -> None:
    assert contract_abi() == load_abi("MintOnDemand")
    assert contract_abi("NaiveBaseline") == load_artifact("NaiveBaseline")["abi"]
    with pytest.raises(LookupError, match="no ABI shipped for 'NaiveBaseline'"):
        load_abi("NaiveBaseline")


def test_it_starts_anvil_with_the_default_accounts(w3: Web3) -> None:
    assert w3.eth.chain_id == 31337
    assert w3.eth.accounts[: len(ANVIL_ACCOUNTS)] == [a.address for a in ANVIL_ACCOUNTS]


def test_it_stops_anvil_on_leaving_the_context() -> None:
    with start_anvil(chain_id=4242) as node:
        assert Web3(Web3.HTTPProvider(node.rpc_url)).eth.chain_id == 4242
    assert node.process.poll() is not None


def test_it_has_the_eip2935_history_contract_only_from_prague(w3: Web3, cancun_w3: Web3) -> None:
    assert w3.eth.get_code(HISTORY_STORAGE) != b""
    with start_anvil(hardfork="prague") as node:
        assert Web3(Web3.HTTPProvider(node.rpc_url)).eth.get_code(HISTORY_STORAGE) != b""
    assert cancun_w3.eth.get_code(HISTORY_STORAGE) == b""


def test_the_solc_wrapper_for_slither_compiles_the_deployed_bytes() -> None:
    # crytic-compile (Slither) calls a native `solc`: the wrapper answers as one and compiles the
    # standard JSON crytic-compile sends (sources as urls, "./" names, optimizer off) into the
    # bytecode contracts/compile.js built, byte for byte (devtools/slither_check.py)
    wrapper = [shutil.which("node") or "node", "./solc-standard-json.js"]
    contracts = REPO_ROOT / "contracts"
    version = subprocess.run([*wrapper, "--version"], cwd=contracts, capture_output=True,
                             text=True, timeout=60, check=True)  # fmt: skip
    assert (
        version.stdout.splitlines()[1]
        == f"Version: {load_artifact('MintOnDemand')['compiler']['version']}"
    )
    request = {
        "language": "Solidity",
        "sources": {"./MintOnDemand.sol": {"urls": ["./MintOnDemand.sol"]},
                    "./NaiveBaseline.sol": {"urls": ["./NaiveBaseline.sol"]}},
        "settings": {"remappings": [], "optimizer": {"enabled": False},
                     "outputSelection": {"*": {"*": ["evm.bytecode", "evm.deployedBytecode"]}}},
    }  # fmt: skip
    done = subprocess.run([*wrapper, "--standard-json", "--allow-paths", str(contracts)],
                          cwd=contracts, input=json.dumps(request), capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    compiled = json.loads(done.stdout)["contracts"]["MintOnDemand.sol"]["MintOnDemand"]["evm"]
    built = load_artifact("MintOnDemand")
    assert "0x" + compiled["bytecode"]["object"] == built["bytecode"]
    assert "0x" + compiled["deployedBytecode"]["object"] == built["deployedBytecode"]
    refused = subprocess.run([*wrapper, "--bin", "x.sol"], cwd=contracts, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "--standard-json only" in refused.stderr


def test_a_slither_finding_is_keyed_without_its_source_lines() -> None:
    from devtools.slither_check import erc_keys, finding_key

    moved = [
        {"check": "assembly", "description": "F.g(uint256) (MintOnDemand.sol#559-567) uses assembly\n"},
        {"check": "assembly", "description": "F.g(uint256) (MintOnDemand.sol#601-609) uses assembly\n"},
    ]  # fmt: skip
    assert {finding_key(r) for r in moved} == {"assembly: F.g(uint256) uses assembly"}
    report = "[✓] name() is present\n\t[ ] Must emit be view Transfer(address,address,uint256)\n"
    assert erc_keys("erc721", report) == [
        "erc721: Must emit be view Transfer(address,address,uint256)"
    ]


# ---------------------------------------------------------------- deployment and freeze


def test_it_deploys_with_the_admin_holding_every_role(w3: Web3) -> None:
    contract = deploy(w3, frozen=False, max_per_wallet=7)
    for name in ("DEFAULT_ADMIN_ROLE", "PUBLISHER_ROLE", "SALES_ROLE"):
        assert contract.functions.hasRole(role(contract, name), ADA.address).call()
        assert not contract.functions.hasRole(role(contract, name), MALLORY.address).call()
    f = contract.functions
    assert (f.name().call(), f.symbol().call()) == ("Dreams", "DRM")
    assert f.price().call() == PRICE
    assert f.maxSupply().call() == MAX_SUPPLY
    assert f.maxPerTx().call() == MAX_PER_TX
    assert f.maxPerWallet().call() == 7
    assert f.totalSupply().call() == 0
    assert f.payee().call() == PAULA.address
    assert f.placeholderURI().call() == PLACEHOLDER
    assert f.configDigest().call() == ZERO_HASH
    assert f.contractURI().call() == ""
    assert f.paused().call() is False


def test_it_deploys_with_separate_admin_payee_and_royalty_receiver(w3: Web3) -> None:
    address, block = deploy_contract(
        w3,
        ADA.private_key,
        name="X",
        symbol="X",
        price_wei=1,
        max_supply=1,
        max_per_tx=1,
        admin=COLIN.address,
        royalty_receiver=DORA.address,
        royalty_bps=250,
    )
    contract = bind(w3, address)
    publisher = role(contract, "PUBLISHER_ROLE")
    assert contract.functions.hasRole(publisher, COLIN.address).call()
    assert not contract.functions.hasRole(publisher, ADA.address).call()
    assert contract.functions.payee().call() == ADA.address  # defaults to the deployer
    assert contract.functions.royaltyInfo(1, 10_000).call() == [DORA.address, 250]
    assert w3.eth.get_code(address, block) != b""
    assert w3.eth.get_code(address, block - 1) == b""


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"admin": "0x" + "00" * 20}, ("ZeroAddress", ())),
        ({"payee": "0x" + "00" * 20}, ("ZeroAddress", ())),
        ({"max_supply": 0}, ("InvalidMintLimits", ())),
        ({"max_per_tx": 0}, ("InvalidMintLimits", ())),
        ({"max_per_tx": 2**32}, ("InvalidMintLimits", ())),
        ({"royalty_bps": 10_001}, ("ERC2981InvalidDefaultRoyalty", (10_001, 10_000))),
    ],
)
def test_it_refuses_a_bad_construction(
    w3: Web3, overrides: dict[str, Any], error: tuple[str, tuple[Any, ...]]
) -> None:
    with pytest.raises(ContractCustomError) as info:
        deploy(w3, frozen=False, **overrides)
    assert decode_error(bytes.fromhex(str(info.value.data).removeprefix("0x"))) == error


def test_it_freezes_the_config_once_before_minting_opens(w3: Web3) -> None:
    # Given a collection whose config is not frozen yet
    contract = deploy(w3, frozen=False)
    f = contract.functions
    assert revert_of(f.mint(1), COLIN, PRICE) == ("ConfigNotFrozen", ())
    assert revert_of(f.freezeConfig(ZERO_HASH, CONTRACT_URI), ADA) == ("EmptyDigest", ())

    # When Ada freezes it
    receipt = transact(w3, f.freezeConfig(CONFIG_DIGEST, CONTRACT_URI), ADA)

    # Then the digest and contractURI are public, minting opens, and the digest cannot change
    assert [
        e.args["digest"]
        for e in contract.events.ConfigFrozen().process_receipt(receipt, errors=DISCARD)
    ] == [CONFIG_DIGEST]
    assert len(contract.events.ContractURIUpdated().process_receipt(receipt, errors=DISCARD)) == 1
    assert f.configDigest().call() == CONFIG_DIGEST
    assert f.contractURI().call() == CONTRACT_URI
    mint(w3, contract, 1)
    assert revert_of(f.freezeConfig(os.urandom(32), "ipfs://other"), ADA) == (
        "ConfigAlreadyFrozen",
        (),
    )
    with pytest.raises(ContractCustomError):
        freeze_config(w3, ADA.private_key, contract.address, os.urandom(32), "ipfs://x")


def test_it_moves_the_contract_uri_but_never_the_digest(w3: Web3, collection: Contract) -> None:
    receipt = transact(w3, collection.functions.setContractURI("ipfs://moved"), ADA)
    assert len(collection.events.ContractURIUpdated().process_receipt(receipt, errors=DISCARD)) == 1
    assert collection.functions.contractURI().call() == "ipfs://moved"
    assert collection.functions.configDigest().call() == CONFIG_DIGEST


# ---------------------------------------------------------------- minting


def test_it_mints_sequential_ids_for_exact_payment(w3: Web3, collection: Contract) -> None:
    receipt = mint(w3, collection, 3)
    transfers = collection.events.Transfer().process_receipt(receipt, errors=DISCARD)
    zero = "0x" + "00" * 20
    assert [(t.args["from"], t.args["to"], t.args["tokenId"]) for t in transfers] == [
        (zero, COLIN.address, 1),
        (zero, COLIN.address, 2),
        (zero, COLIN.address, 3),
    ]
    f = collection.functions
    assert [f.ownerOf(i).call() for i in (1, 2, 3)] == [COLIN.address] * 3
    assert [f.mintBlockOf(i).call() for i in (1, 2, 3)] == [receipt["blockNumber"]] * 3
    assert f.totalSupply().call() == 3
    assert f.numberMinted(COLIN.address).call() == 3
    assert w3.eth.get_balance(collection.address) == 3 * PRICE

    second = mint(w3, collection, 1, DORA)
    assert f.ownerOf(4).call() == DORA.address
    assert f.mintBlockOf(4).call() == second["blockNumber"]
    assert f.balanceOf(COLIN.address).call() == 3


@pytest.mark.parametrize(
    ("quantity", "value", "error"),
    [
        (1, 0, ("WrongPayment", (0, PRICE))),
        (1, PRICE + 1, ("WrongPayment", (PRICE + 1, PRICE))),
        (2, PRICE, ("WrongPayment", (PRICE, 2 * PRICE))),
        # Checks run in a fixed order: quantity before limits before payment.
        (0, PRICE, ("ZeroQuantity", ())),
        (MAX_PER_TX + 1, 0, ("TooManyPerTransaction", (MAX_PER_TX + 1, MAX_PER_TX))),
    ],
)
def test_it_rejects_a_bad_mint(
    collection: Contract, quantity: int, value: int, error: tuple[str, tuple[Any, ...]]
) -> None:
    assert revert_of(collection.functions.mint(quantity), COLIN, value=value) == error


def test_it_sells_out_at_max_supply(w3: Web3, collection: Contract) -> None:
    for _ in range(2):
        mint(w3, collection, MAX_PER_TX)
    assert revert_of(collection.functions.mint(3), DORA, 0) == ("SoldOut", (3, 2))
    mint(w3, collection, 2, DORA)
    assert revert_of(collection.functions.mint(1), DORA, PRICE) == ("SoldOut", (1, 0))
    assert collection.functions.totalSupply().call() == MAX_SUPPLY


def test_it_caps_mints_per_wallet_even_after_transfers(w3: Web3) -> None:
    contract = deploy(w3, max_per_wallet=4)
    mint(w3, contract, 3)
    assert revert_of(contract.functions.mint(2), COLIN, 2 * PRICE) == (
        "WalletCapExceeded",
        (2, 1),
    )
    # Giving tokens away does not reset what a wallet has minted.
    transact(w3, contract.functions.transferFrom(COLIN.address, DORA.address, 1), COLIN)
    assert revert_of(contract.functions.mint(2), COLIN, 0) == ("WalletCapExceeded", (2, 1))
    mint(w3, contract, 1)
    assert revert_of(contract.functions.mint(1), COLIN, PRICE) == ("WalletCapExceeded", (1, 0))
    mint(w3, contract, 4, DORA)
    assert contract.functions.numberMinted(DORA.address).call() == 4


def test_every_transfer_function_emits_transfer(w3: Web3, collection: Contract) -> None:
    # slither-check-erc cannot see ERC721A's assembly log4 (contracts/slither-triage.json):
    # each of the three ways to move a token emits the ERC-721 Transfer event
    mint(w3, collection, 3)
    f = collection.functions
    calls = [
        f.transferFrom(COLIN.address, DORA.address, 1),
        f.safeTransferFrom(COLIN.address, DORA.address, 2),
        f.safeTransferFrom(COLIN.address, DORA.address, 3, b"note"),
    ]
    for token_id, call in enumerate(calls, start=1):
        receipt = transact(w3, call, COLIN)
        transfers = collection.events.Transfer().process_receipt(receipt, errors=DISCARD)
        assert [(t.args["from"], t.args["to"], t.args["tokenId"]) for t in transfers] == [
            (COLIN.address, DORA.address, token_id)
        ]


def test_it_pauses_and_resumes_minting(w3: Web3, collection: Contract) -> None:
    paused = transact(w3, collection.functions.pause(), ADA)
    assert [
        e.args["account"]
        for e in collection.events.Paused().process_receipt(paused, errors=DISCARD)
    ] == [ADA.address]
    assert revert_of(collection.functions.mint(1), COLIN, PRICE) == ("EnforcedPause", ())
    assert revert_of(collection.functions.pause(), ADA) == ("EnforcedPause", ())
    resumed = transact(w3, collection.functions.unpause(), ADA)
    assert len(collection.events.Unpaused().process_receipt(resumed, errors=DISCARD)) == 1
    assert revert_of(collection.functions.unpause(), ADA) == ("ExpectedPause", ())
    mint(w3, collection, 1)


def test_it_reverts_views_for_unknown_tokens(w3: Web3, collection: Contract) -> None:
    mint(w3, collection, 1)
    f = collection.functions
    for token_id in (0, 2):
        assert revert_of(f.mintBlockOf(token_id), COLIN) == ("UnknownToken", (token_id,))
        assert revert_of(f.tokenURI(token_id), COLIN) == ("UnknownToken", (token_id,))
        assert revert_of(f.seedSourceOf(token_id), COLIN) == ("UnknownToken", (token_id,))
        assert f.seedOf(token_id).call() == ZERO_HASH


# ---------------------------------------------------------------- seeds


def test_it_commits_the_seed_of_the_whole_batch_from_the_mint_block_hash(
    w3: Web3, collection: Contract
) -> None:
    # Given one mint of three tokens, and a block on top of it
    minted = mint(w3, collection, 3)
    mine(w3)
    assert collection.functions.seedOf(2).call() == ZERO_HASH
    assert collection.functions.seedSourceOf(2).call() == 0

    # When the committer names one token of the batch
    commit = transact(w3, collection.functions.commitSeeds([2]), ADA)

    # Then every token of the batch has keccak(blockhash(mint block) ‖ id), each evented
    mint_block = minted["blockNumber"]
    assert block_hash(w3, mint_block) == bytes(minted["blockHash"])
    seeds = [(i, expected_seed(w3, mint_block, i)) for i in (1, 2, 3)]
    assert len({seed for _, seed in seeds}) == 3
    assert seed_events(collection, commit) == seeds
    for token_id, seed in seeds:
        assert collection.functions.seedOf(token_id).call() == seed
        assert collection.functions.seedSourceOf(token_id).call() == 1
    assert collection.events.SeedsFromHistory().process_receipt(commit, errors=DISCARD) == ()


def test_it_commits_each_batch_once(w3: Web3, collection: Contract) -> None:
    first = mint(w3, collection, 2)  # tokens 1, 2
    second = mint(w3, collection, 3, DORA)  # tokens 3, 4, 5
    third = mint(w3, collection, 1)  # token 6
    mine(w3)
    f = collection.functions
    transact(w3, f.commitSeeds([1]), ADA)
    assert revert_of(f.commitSeeds([2]), ADA) == ("SeedAlreadyCommitted", (2,))
    # A call fails as a whole: batch 3..5 stays uncommitted.
    assert revert_of(f.commitSeeds([3, 1]), ADA) == ("SeedAlreadyCommitted", (1,))
    assert f.seedOf(3).call() == ZERO_HASH

    # Ids of a batch committed earlier in the same call are skipped, in any order.
    commit = transact(w3, f.commitSeeds([4, 6, 3, 5, 6, 4]), ADA)
    assert [token_id for token_id, _ in seed_events(collection, commit)] == [3, 4, 5, 6]
    for token_id, receipt in ((2, first), (5, second), (6, third)):
        assert f.seedOf(token_id).call() == expected_seed(w3, receipt["blockNumber"], token_id)


def test_it_waits_for_the_mint_block_to_finish(w3: Web3, collection: Contract) -> None:
    # eth_call at "latest" executes with block.number == the latest block, the mint's own block.
    minted = mint(w3, collection, 1)
    assert w3.eth.block_number == minted["blockNumber"]
    assert revert_of(collection.functions.commitSeeds([1]), ADA) == (
        "MintBlockNotFinished",
        (1,),
    )
    mine(w3)
    transact(w3, collection.functions.commitSeeds([1]), ADA)
    assert collection.functions.seedOf(1).call() == expected_seed(w3, minted["blockNumber"], 1)


def test_it_refuses_seeds_for_unminted_tokens(w3: Web3, collection: Contract) -> None:
    mint(w3, collection, 1)
    mine(w3)
    for token_id in (0, 2):
        assert revert_of(collection.functions.commitSeeds([token_id]), ADA) == (
            "UnknownToken",
            (token_id,),
        )


def test_it_reads_the_eip2935_history_past_the_blockhash_window(
    w3: Web3, collection: Contract
) -> None:
    # Given a mint of two tokens, still inside the 256-block window: derivable, so no late commit
    minted = mint(w3, collection, 2)
    mint_block = minted["blockNumber"]
    mine(w3)
    late = collection.functions.commitLateSeeds([1], [os.urandom(32)])
    assert revert_of(late, ADA) == ("SeedDerivableOnChain", (1,))

    # When 300 blocks pass and the committer commits
    mine(w3, 300)
    assert revert_of(late, ADA) == ("SeedDerivableOnChain", (1,))
    commit = transact(w3, collection.functions.commitSeeds([1, 2]), ADA)

    # Then the seed comes from the history contract, evented, and equals keccak(hash ‖ id)
    history = collection.events.SeedsFromHistory().process_receipt(commit, errors=DISCARD)
    assert [(e.args["fromTokenId"], e.args["toTokenId"], e.args["seedBlock"]) for e in history] == [
        (1, 2, mint_block)
    ]
    seeds = [(i, expected_seed(w3, mint_block, i)) for i in (1, 2)]
    assert seed_events(collection, commit) == seeds
    for token_id, seed in seeds:
        assert collection.functions.seedOf(token_id).call() == seed
        assert collection.functions.seedSourceOf(token_id).call() == 2


def test_it_takes_late_seeds_from_the_admin_where_the_chain_has_no_history(
    cancun_w3: Web3,
) -> None:
    w3 = cancun_w3
    contract = deploy(w3)
    f = contract.functions
    first = mint(w3, contract, 2)  # tokens 1, 2
    second = mint(w3, contract, 2, DORA)  # tokens 3, 4
    mine(w3, 300)

    # Past the window on a chain without EIP-2935, the committer cannot derive the seed
    assert revert_of(f.commitSeeds([2]), ADA) == ("SeedWindowExpired", (2, first["blockNumber"]))

    hash1, hash2 = block_hash(w3, first["blockNumber"]), block_hash(w3, second["blockNumber"])
    unauthorized = revert_of(f.commitLateSeeds([1], [hash1]), MALLORY)
    assert unauthorized[0] == "AccessControlUnauthorizedAccount"
    assert revert_of(f.commitLateSeeds([1, 2], [hash1]), ADA) == ("LengthMismatch", ())
    assert revert_of(f.commitLateSeeds([1], [ZERO_HASH]), ADA) == ("EmptyBlockHash", (1,))
    assert revert_of(f.commitLateSeeds([9], [hash1]), ADA) == ("UnknownToken", (9,))
    assert revert_of(f.commitLateSeeds([1, 2], [hash1, hash2]), ADA) == (
        "ConflictingBlockHash",
        (2,),
    )

    # When the admin supplies the block hashes
    receipt = transact(w3, f.commitLateSeeds([2, 1, 3], [hash1, hash1, hash2]), ADA)

    # Then each batch is committed from them, visibly late, with source 3
    late = contract.events.LateSeedsCommitted().process_receipt(receipt, errors=DISCARD)
    assert [
        (
            e.args["fromTokenId"],
            e.args["toTokenId"],
            bytes(e.args["blockHash"]),
            e.args["committer"],
        )
        for e in late
    ] == [(1, 2, hash1, ADA.address), (3, 4, hash2, ADA.address)]
    assert seed_events(contract, receipt) == [
        (1, expected_seed(w3, first["blockNumber"], 1)),
        (2, expected_seed(w3, first["blockNumber"], 2)),
        (3, expected_seed(w3, second["blockNumber"], 3)),
        (4, expected_seed(w3, second["blockNumber"], 4)),
    ]
    assert [f.seedSourceOf(i).call() for i in (1, 2, 3, 4)] == [3, 3, 3, 3]
    assert revert_of(f.commitLateSeeds([4], [hash2]), ADA) == ("SeedAlreadyCommitted", (4,))
    assert revert_of(f.commitSeeds([4]), ADA) == ("SeedAlreadyCommitted", (4,))

    # And a fresh mint on this chain still commits from blockhash
    third = mint(w3, contract, 1)
    mine(w3)
    assert revert_of(f.commitLateSeeds([5], [hash1]), ADA) == ("SeedDerivableOnChain", (5,))
    transact(w3, f.commitSeeds([5]), ADA)
    assert f.seedOf(5).call() == expected_seed(w3, third["blockNumber"], 5)
    assert f.seedSourceOf(5).call() == 1


def test_a_future_block_collection_seeds_from_the_block_k_after_the_mint(w3: Web3) -> None:
    # Given a collection whose seeds come from the block 3 blocks after each mint's block
    contract = deploy(w3, seed_delay=3)
    f = contract.functions
    assert f.seedDelay().call() == 3
    assert deploy(w3).functions.seedDelay().call() == 0
    delay_events = contract.events.SeedDelaySet().get_logs(from_block=0)
    assert [e.args["seedDelay"] for e in delay_events if e.address == contract.address] == [3]

    # When two tokens are minted in one transaction
    minted = mint(w3, contract, 2)
    seed_block = minted["blockNumber"] + 3
    assert f.seedBlockOf(2).call() == seed_block

    # Then nobody can commit until the seed block exists and is finished
    for _ in range(3):
        assert revert_of(f.commitSeeds([1]), MALLORY) == ("SeedBlockNotReached", (1, seed_block))
        mine(w3)
    assert w3.eth.block_number == seed_block
    assert revert_of(f.commitSeeds([1]), MALLORY) == ("SeedBlockNotReached", (1, seed_block))
    late = f.commitLateSeeds([1], [os.urandom(32)])
    assert revert_of(late, ADA) == ("SeedBlockNotReached", (1, seed_block))
    mine(w3)

    # And then the seed is keccak(hash of the seed block ‖ id), not the mint block's
    commit = transact(w3, f.commitSeeds([1]), MALLORY)
    seeds = [(i, expected_seed(w3, seed_block, i)) for i in (1, 2)]
    assert seed_events(contract, commit) == seeds
    assert seeds != [(i, expected_seed(w3, minted["blockNumber"], i)) for i in (1, 2)]
    assert [f.seedSourceOf(i).call() for i in (1, 2)] == [5, 5]  # blockhash, of a later block


def test_a_future_block_seed_past_the_window_comes_from_history_or_late(
    w3: Web3, cancun_w3: Web3
) -> None:
    contract = deploy(w3, seed_delay=5)
    minted = mint(w3, contract, 1)
    mine(w3, 300)
    commit = transact(w3, contract.functions.commitSeeds([1]), ADA)
    history = contract.events.SeedsFromHistory().process_receipt(commit, errors=DISCARD)
    assert [e.args["seedBlock"] for e in history] == [minted["blockNumber"] + 5]
    assert contract.functions.seedSourceOf(1).call() == 6  # EIP-2935 history, of a later block
    assert contract.functions.seedOf(1).call() == expected_seed(w3, minted["blockNumber"] + 5, 1)

    # without the history, the window's end names the seed block; the admin commits its hash
    old = deploy(cancun_w3, seed_delay=5)
    minted = mint(cancun_w3, old, 1)
    mine(cancun_w3, 300)
    seed_block = minted["blockNumber"] + 5
    expired = revert_of(old.functions.commitSeeds([1]), ADA)
    assert expired == ("SeedWindowExpired", (1, seed_block))
    transact(
        cancun_w3, old.functions.commitLateSeeds([1], [block_hash(cancun_w3, seed_block)]), ADA
    )
    assert old.functions.seedOf(1).call() == expected_seed(cancun_w3, seed_block, 1)
    assert old.functions.seedSourceOf(1).call() == 7  # late, of a later block


@pytest.fixture(scope="module")
def local_vrf(w3: Web3) -> LocalVrf:
    """Chainlink's VRFCoordinatorV2_5Mock (from @chainlink/contracts) with a funded subscription."""
    return local_coordinator(w3, ADA.private_key)


def vrf_collection(w3: Web3, vrf: LocalVrf) -> Contract:
    contract = deploy(w3, vrf=vrf.settings())
    add_consumer(w3, ADA.private_key, vrf.settings(), contract.address)
    return contract


def test_a_vrf_collection_seeds_every_batch_from_one_fulfilled_random_word(
    w3: Web3, local_vrf: LocalVrf
) -> None:
    # Given a collection seeded by Chainlink VRF, and two mints (tokens 1-2, then 3)
    contract = vrf_collection(w3, local_vrf)
    f = contract.functions
    assert f.vrfCoordinator().call() == local_vrf.coordinator
    mint(w3, contract, 2)
    assert revert_of(f.commitSeeds([1]), MALLORY) == ("MintBlockNotFinished", (1,))
    mint(w3, contract, 1, DORA)
    mine(w3)

    # When anyone commits the seeds: one request covers both batches
    request = transact(w3, f.commitSeeds([3, 1, 2]), MALLORY)
    mock = vrf_coordinator(w3, local_vrf.coordinator)
    (asked,) = mock.events.RandomWordsRequested().process_receipt(request, errors=DISCARD)
    request_id = int(asked.args["requestId"])
    assert asked.args["sender"] == contract.address and asked.args["numWords"] == 1
    requested = contract.events.SeedsRequested().process_receipt(request, errors=DISCARD)
    assert [
        (e.args["requestId"], e.args["fromTokenId"], e.args["toTokenId"]) for e in requested
    ] == [
        (request_id, 3, 3),
        (request_id, 1, 2),
    ]
    # Then nothing is seeded until the coordinator answers, and no one else can answer
    assert [f.seedOf(i).call() for i in (1, 2, 3)] == [ZERO_HASH] * 3
    assert [f.seedSourceOf(i).call() for i in (1, 2, 3)] == [4, 4, 4]
    assert f.vrfRequestOf(2).call() == [request_id, 0]
    forged = f.rawFulfillRandomWords(request_id, [12345])
    assert revert_of(forged, MALLORY) == ("OnlyVrfCoordinator", (MALLORY.address.lower(),))
    assert revert_of(f.commitSeeds([2]), MALLORY) == ("SeedAlreadyCommitted", (2,))
    assert revert_of(f.commitLateSeeds([2], [os.urandom(32)]), ADA) == ("SeedsComeFromVrf", ())

    # When the coordinator fulfils the request (here the mock, as the Chainlink node would)
    fulfil = transact(w3, mock.functions.fulfillRandomWords(request_id, contract.address), ADA)
    (done,) = mock.events.RandomWordsFulfilled().process_receipt(fulfil, errors=DISCARD)
    assert done.args["success"] is True
    word = int.from_bytes(Web3.keccak(abi_encode(["uint256", "uint256"], [request_id, 0])), "big")
    (seeded,) = contract.events.SeedsFulfilled().process_receipt(fulfil, errors=DISCARD)
    assert (seeded.args["requestId"], seeded.args["randomWord"]) == (request_id, word)

    # Then every token's seed is keccak256(bytes32(word) ‖ id)
    for token_id in (1, 2, 3):
        expected = Web3.keccak(word.to_bytes(32, "big") + token_id.to_bytes(32, "big"))
        assert f.seedOf(token_id).call() == expected
    assert f.vrfRequestOf(3).call() == [request_id, word]
    # a second answer to the same request is refused, even from the coordinator
    with pytest.raises(ContractCustomError) as info:
        f.rawFulfillRandomWords(request_id, [1]).call({"from": local_vrf.coordinator})
    assert decode_error(bytes.fromhex(str(info.value.data).removeprefix("0x"))) == (
        "VrfAlreadyFulfilled",
        (request_id,),
    )


def test_vrf_and_a_seed_delay_cannot_be_combined(w3: Web3, local_vrf: LocalVrf) -> None:
    with pytest.raises(ContractCustomError) as info:
        deploy(w3, frozen=False, vrf=local_vrf.settings(), seed_delay=2)
    assert decode_error(bytes.fromhex(str(info.value.data).removeprefix("0x"))) == (
        "InvalidSeedConfig",
        (),
    )


# ---------------------------------------------------------------- publishing


def committed_collection(w3: Web3, batches: tuple[int, ...]) -> Contract:
    contract = deploy(w3)
    for quantity in batches:
        mint(w3, contract, quantity)
    mine(w3)
    transact(w3, contract.functions.commitSeeds(list(range(1, sum(batches) + 1))), ADA)
    return contract


def test_it_publishes_and_points_token_uri_at_the_cid(w3: Web3) -> None:
    contract = committed_collection(w3, (3, 3))
    f = contract.functions
    assert f.tokenURI(1).call() == PLACEHOLDER

    # A contiguous ascending run across batches: one BatchMetadataUpdate
    digests = [os.urandom(32), hashlib.sha256(b"").digest(), os.urandom(32), os.urandom(32)]
    receipt = transact(w3, f.publish([2, 3, 4, 5], digests), ADA)
    batch = contract.events.BatchMetadataUpdate().process_receipt(receipt, errors=DISCARD)
    assert [(e.args["_fromTokenId"], e.args["_toTokenId"]) for e in batch] == [(2, 5)]
    assert contract.events.MetadataUpdate().process_receipt(receipt, errors=DISCARD) == ()
    for token_id, digest in zip((2, 3, 4, 5), digests, strict=True):
        assert f.tokenURI(token_id).call() == ipfs_uri(digest)
        assert f.metadataDigestOf(token_id).call() == digest
    # Kubo's CID for an empty file added with --cid-version=1 --raw-leaves.
    assert (
        f.tokenURI(3).call() == "ipfs://bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    )
    assert f.tokenURI(1).call() == PLACEHOLDER

    # Not a run (out of order, or one id): MetadataUpdate per token
    receipt = transact(w3, f.publish([6, 1], [os.urandom(32), os.urandom(32)]), ADA)
    assert [
        e.args["_tokenId"]
        for e in contract.events.MetadataUpdate().process_receipt(receipt, errors=DISCARD)
    ] == [6, 1]
    assert contract.events.BatchMetadataUpdate().process_receipt(receipt, errors=DISCARD) == ()


def test_it_refuses_a_bad_publication(w3: Web3) -> None:
    contract = deploy(w3)
    mint(w3, contract, 2)
    mint(w3, contract, 1)
    mine(w3)
    transact(w3, contract.functions.commitSeeds([1]), ADA)
    digest = os.urandom(32)
    publish = contract.functions.publish

    assert revert_of(publish([3], [digest]), ADA) == ("SeedNotCommitted", (3,))
    assert revert_of(publish([4], [digest]), ADA) == ("UnknownToken", (4,))
    assert revert_of(publish([0], [digest]), ADA) == ("UnknownToken", (0,))
    assert revert_of(publish([1, 2], [digest]), ADA) == ("LengthMismatch", ())
    assert revert_of(publish([1], [ZERO_HASH]), ADA) == ("EmptyMetadataDigest", (1,))
    transact(w3, publish([1], [digest]), ADA)
    assert revert_of(publish([1], [os.urandom(32)]), ADA) == ("AlreadyPublished", (1,))
    assert revert_of(publish([2, 2], [digest, digest]), ADA) == ("AlreadyPublished", (2,))
    assert contract.functions.metadataDigestOf(1).call() == digest


def test_it_reopens_a_published_token(w3: Web3) -> None:
    contract = committed_collection(w3, (2,))
    f = contract.functions
    assert revert_of(f.reopen([1]), ADA) == ("NotPublished", (1,))
    first = os.urandom(32)
    transact(w3, f.publish([1], [first]), ADA)

    receipt = transact(w3, f.reopen([1]), ADA)

    reopened = contract.events.MetadataReopened().process_receipt(receipt, errors=DISCARD)
    assert [e.args["tokenId"] for e in reopened] == [1]
    assert [
        e.args["_tokenId"]
        for e in contract.events.MetadataUpdate().process_receipt(receipt, errors=DISCARD)
    ] == [1]
    assert f.metadataDigestOf(1).call() == ZERO_HASH
    assert f.tokenURI(1).call() == PLACEHOLDER
    assert revert_of(f.reopen([1]), ADA) == ("NotPublished", (1,))
    second = os.urandom(32)
    transact(w3, f.publish([1], [second]), ADA)
    assert f.tokenURI(1).call() == ipfs_uri(second)


def test_a_locked_collection_can_never_reopen_a_digest(w3: Web3) -> None:
    # Given a published token, reopened once and published again before the lock
    contract = committed_collection(w3, (3,))
    f = contract.functions
    transact(w3, f.publish([1], [os.urandom(32)]), ADA)
    transact(w3, f.reopen([1]), ADA)
    final = os.urandom(32)
    transact(w3, f.publish([1], [final]), ADA)
    assert f.metadataLocked().call() is False
    # When the admin locks the metadata
    receipt = transact(w3, f.lockMetadata(), ADA)
    # Then the lock is evented and one-way, and no digest can be reopened any more
    assert len(contract.events.MetadataLocked().process_receipt(receipt, errors=DISCARD)) == 1
    assert f.metadataLocked().call() is True
    assert revert_of(f.reopen([1]), ADA) == ("MetadataIsLocked", ())
    assert revert_of(f.lockMetadata(), ADA) == ("MetadataIsLocked", ())
    assert f.metadataDigestOf(1).call() == final
    # Tokens not yet published are still published, once
    late = os.urandom(32)
    transact(w3, f.publish([2], [late]), ADA)
    assert f.tokenURI(2).call() == ipfs_uri(late)
    assert revert_of(f.publish([2], [os.urandom(32)]), ADA) == ("AlreadyPublished", (2,))


def test_it_changes_the_placeholder_of_unpublished_tokens(w3: Web3, collection: Contract) -> None:
    f = collection.functions
    receipt = transact(w3, f.setPlaceholderURI("ipfs://early"), ADA)
    assert collection.events.BatchMetadataUpdate().process_receipt(receipt, errors=DISCARD) == ()
    mint(w3, collection, 3)
    receipt = transact(w3, f.setPlaceholderURI("ipfs://later"), ADA)
    batch = collection.events.BatchMetadataUpdate().process_receipt(receipt, errors=DISCARD)
    assert [(e.args["_fromTokenId"], e.args["_toTokenId"]) for e in batch] == [(1, 3)]
    assert f.placeholderURI().call() == "ipfs://later"
    assert f.tokenURI(2).call() == "ipfs://later"


@pytest.fixture(scope="module")
def unpublished_tokens(w3: Web3) -> tuple[Contract, Iterator[int]]:
    """A collection of 100 committed, unpublished tokens, handed out one id at a time."""
    contract = deploy(w3, max_supply=100, max_per_tx=20)
    for _ in range(5):
        transact(w3, contract.functions.mint(20), COLIN, value=20 * PRICE)
    mine(w3)
    transact(w3, contract.functions.commitSeeds(list(range(1, 101, 20))), ADA)
    return contract, itertools.count(1)


@settings(max_examples=60, deadline=None)
@given(digest=st.binary(min_size=32, max_size=32).filter(lambda d: d != ZERO_HASH))
@example(digest=bytes(range(32)))
@example(digest=b"\xff" * 32)
@example(digest=b"\x00" * 31 + b"\x01")
def test_it_builds_token_uri_like_multiformats(
    w3: Web3, unpublished_tokens: tuple[Contract, Iterator[int]], digest: bytes
) -> None:
    contract, token_ids = unpublished_tokens
    token_id = next(token_ids)
    transact(w3, contract.functions.publish([token_id], [digest]), ADA)
    assert contract.functions.tokenURI(token_id).call() == ipfs_uri(digest)


# ---------------------------------------------------------------- roles, money, royalties

ROLE_GUARDED: list[tuple[str, Callable[[Any], ContractFunction], str]] = [
    ("publish", lambda f: f.publish([1], [b"\x01" * 32]), "PUBLISHER_ROLE"),
    ("commitLateSeeds", lambda f: f.commitLateSeeds([1], [b"\x01" * 32]), "DEFAULT_ADMIN_ROLE"),
    ("reopen", lambda f: f.reopen([1]), "DEFAULT_ADMIN_ROLE"),
    ("lockMetadata", lambda f: f.lockMetadata(), "DEFAULT_ADMIN_ROLE"),
    ("freezeConfig", lambda f: f.freezeConfig(b"\x01" * 32, "x"), "DEFAULT_ADMIN_ROLE"),
    ("setContractURI", lambda f: f.setContractURI("x"), "DEFAULT_ADMIN_ROLE"),
    ("setPlaceholderURI", lambda f: f.setPlaceholderURI("x"), "DEFAULT_ADMIN_ROLE"),
    ("pause", lambda f: f.pause(), "SALES_ROLE"),
    ("unpause", lambda f: f.unpause(), "SALES_ROLE"),
    ("setPrice", lambda f: f.setPrice(1), "SALES_ROLE"),
    ("setPayee", lambda f: f.setPayee(MALLORY.address), "DEFAULT_ADMIN_ROLE"),
    ("withdraw", lambda f: f.withdraw(), "SALES_ROLE"),
    ("setDefaultRoyalty", lambda f: f.setDefaultRoyalty(MALLORY.address, 1), "DEFAULT_ADMIN_ROLE"),
    ("grantRole", lambda f: f.grantRole(b"\x00" * 32, MALLORY.address), "DEFAULT_ADMIN_ROLE"),
    ("airdrop", lambda f: f.airdrop([MALLORY.address], [1]), "SALES_ROLE"),
    ("setPhase", lambda f: f.setPhase(0, (1, 2, 0, 0, 1, 1, 0, b"\x00" * 32)), "SALES_ROLE"),
    ("dropLastPhase", lambda f: f.dropLastPhase(), "SALES_ROLE"),
]


def test_it_keeps_role_actions_from_other_accounts(w3: Web3) -> None:
    contract = committed_collection(w3, (1,))
    for name, call, role_name in ROLE_GUARDED:
        assert revert_of(call(contract.functions), MALLORY) == (
            "AccessControlUnauthorizedAccount",
            (MALLORY.address.lower(), role(contract, role_name)),
        ), name


def test_it_lets_the_admin_hand_the_backend_its_roles(w3: Web3, collection: Contract) -> None:
    mint(w3, collection, 1)
    mine(w3)
    f = collection.functions
    transact(w3, f.grantRole(role(collection, "PUBLISHER_ROLE"), MALLORY.address), ADA)
    transact(w3, f.commitSeeds([1]), DORA)
    transact(w3, f.publish([1], [b"\x02" * 32]), MALLORY)
    # The role is only its own: the publisher cannot reopen or lock.
    assert revert_of(f.reopen([1]), MALLORY)[0] == "AccessControlUnauthorizedAccount"
    assert revert_of(f.lockMetadata(), MALLORY)[0] == "AccessControlUnauthorizedAccount"


def test_anyone_can_commit_seeds_since_the_chain_decides_them(
    w3: Web3, collection: Contract
) -> None:
    # Given a mint nobody with a role commits
    mint(w3, collection, 2)
    mine(w3)
    f = collection.functions
    # When a stranger (no role at all) commits it
    receipt = transact(w3, f.commitSeeds([1]), DORA)
    # Then the seeds are the chain's own, whoever sent the transaction
    block_hash = w3.eth.get_block(f.mintBlockOf(1).call())["hash"]
    committed = collection.events.SeedCommitted().process_receipt(receipt, errors=DISCARD)
    assert [(e.args["tokenId"], e.args["seed"]) for e in committed] == [
        (token_id, Web3.solidity_keccak(["bytes32", "uint256"], [block_hash, token_id]))
        for token_id in (1, 2)
    ]
    # and the late path, where a hash is supplied, stays the admin's
    assert revert_of(f.commitLateSeeds([1], [block_hash]), DORA)[0] == (
        "AccessControlUnauthorizedAccount"
    )


def test_it_changes_the_price_and_the_payee(w3: Web3, collection: Contract) -> None:
    f = collection.functions
    receipt = transact(w3, f.setPrice(3 * PRICE), ADA)
    changed = collection.events.PriceChanged().process_receipt(receipt, errors=DISCARD)
    assert [(e.args["oldPrice"], e.args["newPrice"]) for e in changed] == [(PRICE, 3 * PRICE)]
    assert revert_of(f.mint(1), COLIN, PRICE) == ("WrongPayment", (PRICE, 3 * PRICE))
    transact(w3, f.mint(2), COLIN, value=6 * PRICE)

    assert revert_of(f.setPayee("0x" + "00" * 20), ADA) == ("ZeroAddress", ())
    receipt = transact(w3, f.setPayee(DORA.address), ADA)
    payee = collection.events.PayeeChanged().process_receipt(receipt, errors=DISCARD)
    assert [(e.args["oldPayee"], e.args["newPayee"]) for e in payee] == [
        (PAULA.address, DORA.address)
    ]
    assert f.payee().call() == DORA.address


def test_it_withdraws_the_whole_balance_to_the_payee(w3: Web3, collection: Contract) -> None:
    assert revert_of(collection.functions.withdraw(), ADA) == ("NothingToWithdraw", ())
    mint(w3, collection, 3)
    before = w3.eth.get_balance(PAULA.address)

    receipt = transact(w3, collection.functions.withdraw(), ADA)

    withdrawn = collection.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
    assert [(e.args["payee"], e.args["amount"]) for e in withdrawn] == [(PAULA.address, 3 * PRICE)]
    assert w3.eth.get_balance(PAULA.address) == before + 3 * PRICE
    assert w3.eth.get_balance(collection.address) == 0


def test_it_reports_a_payee_that_refuses_ether(w3: Web3, collection: Contract) -> None:
    # Another collection has no receive/fallback, so sending it ether fails.
    mint(w3, collection, 1)
    refuser = deploy(w3, frozen=False)
    transact(w3, collection.functions.setPayee(refuser.address), ADA)
    assert revert_of(collection.functions.withdraw(), ADA) == ("FailedCall", ())
    assert w3.eth.get_balance(collection.address) == PRICE


def test_it_pays_royalties_to_the_configured_receiver(w3: Web3, collection: Contract) -> None:
    f = collection.functions
    # deploy_contract defaults: the deployer receives 5%.
    assert f.royaltyInfo(1, 10**18).call() == [ADA.address, 5 * 10**16]
    receipt = transact(w3, f.setDefaultRoyalty(DORA.address, 750), ADA)
    changed = collection.events.DefaultRoyaltyChanged().process_receipt(receipt, errors=DISCARD)
    assert [(e.args["receiver"], e.args["feeNumerator"]) for e in changed] == [(DORA.address, 750)]
    assert f.royaltyInfo(7, 20_000).call() == [DORA.address, 1_500]
    assert revert_of(f.setDefaultRoyalty(DORA.address, 10_001), ADA) == (
        "ERC2981InvalidDefaultRoyalty",
        (10_001, 10_000),
    )
    assert revert_of(f.setDefaultRoyalty("0x" + "00" * 20, 100), ADA) == (
        "ERC2981InvalidDefaultRoyaltyReceiver",
        ("0x" + "00" * 20,),
    )


@pytest.mark.parametrize(
    ("interface_id", "supported"),
    [
        ("0x01ffc9a7", True),  # ERC-165
        ("0x80ac58cd", True),  # ERC-721
        ("0x5b5e139f", True),  # ERC-721 metadata
        ("0x2a55205a", True),  # ERC-2981
        ("0x49064906", True),  # ERC-4906
        ("0x7965db0b", True),  # AccessControl
        ("0x780e9d63", False),  # ERC-721 enumerable
        ("0xffffffff", False),
    ],
)
def test_it_answers_supports_interface(
    collection: Contract, interface_id: str, supported: bool
) -> None:
    assert (
        collection.functions.supportsInterface(bytes.fromhex(interface_id[2:])).call() is supported
    )
