"""Bindings for the MintOnDemand contract: compiled artifacts, deployment, freeze, a bound instance.

The artifacts are built by ``node contracts/compile.js`` (MintOnDemand, and NaiveBaseline for the
gas benchmark) and committed, with MintOnDemand's ABI also in ``chain/abi`` as package data; the
tests check they match a fresh compile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from chain import abi as abi_package
from chain.errors import ContractDeployError, ContractTransactionError

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "contracts" / "build"
CONTRACT_NAME = "MintOnDemand"
ARTIFACT_PATH = BUILD_DIR / f"{CONTRACT_NAME}.json"

DEPLOY_RECEIPT_TIMEOUT = 120.0


@cache
def _read_artifact(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing. Did you forget to run `node contracts/compile.js`?"
        ) from None
    artifact: dict[str, Any] = json.loads(text)
    return artifact


def artifact_path(name: str = CONTRACT_NAME) -> Path:
    """Where ``node contracts/compile.js`` writes the artifact of contract ``name``."""
    return BUILD_DIR / f"{name}.json"


def load_artifact(name: str = CONTRACT_NAME) -> dict[str, Any]:
    """A compiled artifact (MintOnDemand unless ``name`` says otherwise, e.g. "NaiveBaseline"):
    contractName, abi, bytecode, deployedBytecode, compiler."""
    return _read_artifact(artifact_path(name))


def contract_abi(name: str = CONTRACT_NAME) -> list[dict[str, Any]]:
    """The ABI of contract ``name``: the package data copy when one ships (so an installed
    wheel binds the contract without ``contracts/build``), else the artifact's."""
    if name in abi_package.SHIPPED:
        return abi_package.load_abi(name)
    abi: list[dict[str, Any]] = load_artifact(name)["abi"]
    return abi


@dataclass(frozen=True)
class VrfSettings:
    """The contract's ``VrfConfig``: a Chainlink VRF v2.5 coordinator and subscription (an empty
    coordinator: no VRF)."""

    coordinator: str = ""
    subscription_id: int = 0
    key_hash: bytes = bytes(32)
    request_confirmations: int = 3
    callback_gas_limit: int = 100_000
    native_payment: bool = False

    def as_tuple(self) -> tuple[Any, ...]:
        coordinator = Web3.to_checksum_address(self.coordinator or "0x" + "00" * 20)
        return (
            coordinator,
            self.subscription_id,
            self.key_hash,
            self.request_confirmations,
            self.callback_gas_limit,
            self.native_payment,
        )


def deploy_contract(
    w3: Web3,
    deployer_private_key: str,
    *,
    name: str,
    symbol: str,
    price_wei: int,
    max_supply: int,
    max_per_tx: int = 20,
    max_per_wallet: int = 0,
    reserve: int = 0,
    admin: str | None = None,
    payee: str | None = None,
    splits: Sequence[tuple[str, int]] = (),
    royalty_receiver: str | None = None,
    royalty_bps: int = 500,
    placeholder_uri: str = "",
    seed_delay: int = 0,
    vrf: VrfSettings | None = None,
) -> tuple[str, int]:
    """Deploy MintOnDemand from the deployer's key.

    ``seed_delay``: seeds come from the hash of the block that many blocks after each mint's
    block (0: the mint block itself; at most 255), fixed for the contract's life. ``vrf``: seeds
    come from that Chainlink VRF v2.5 coordinator and subscription instead (``seed_delay`` 0).

    ``admin`` (all three roles), ``payee`` (receives withdrawn proceeds) and ``royalty_receiver``
    default to the deployer; ``max_per_wallet=0`` means no per-wallet cap. ``reserve`` tokens are
    kept out of every sale for the admin's ``airdrop``. ``splits`` (address, basis points; summing
    to 10,000) deploys a ``PaymentSplit`` first and makes it the payee and, unless
    ``royalty_receiver`` is given, the royalty receiver. Minting stays closed until the admin calls
    ``freeze_config``. The ``SaleRules`` library the contract links is deployed first.

    Returns the contract's checksum address and the block number that holds the deployment, which
    is where a chain listener starts scanning.
    """
    deployer = Account.from_key(deployer_private_key)

    def address_or_deployer(value: str | None) -> str:
        return Web3.to_checksum_address(value) if value is not None else deployer.address

    if splits:
        if payee is not None:
            raise ValueError("give payee or splits, not both: a split is the payee")
        payee, _ = deploy_split(w3, deployer_private_key, splits)
        royalty_receiver = royalty_receiver or payee
    sale_rules, _ = _deploy(w3, deployer_private_key, "SaleRules")
    config = (
        name,
        symbol,
        price_wei,
        max_supply,
        max_per_tx,
        max_per_wallet,
        reserve,
        address_or_deployer(admin),
        address_or_deployer(payee),
        address_or_deployer(royalty_receiver),
        royalty_bps,
        placeholder_uri,
        seed_delay,
        (vrf or VrfSettings()).as_tuple(),
    )
    return _deploy(
        w3, deployer_private_key, CONTRACT_NAME, config, libraries={"SaleRules": sale_rules}
    )


def deploy_split(
    w3: Web3, deployer_private_key: str, splits: Sequence[tuple[str, int]]
) -> tuple[str, int]:
    """Deploy a ``PaymentSplit`` paying each (address, basis points) its share (the shares sum to
    10,000); returns its address and deployment block."""
    payees = [Web3.to_checksum_address(address) for address, _ in splits]
    shares = [int(bps) for _, bps in splits]
    return _deploy(w3, deployer_private_key, "PaymentSplit", payees, shares)


def bind_split(w3: Web3, address: str) -> Contract:
    """A web3 contract object for a deployed ``PaymentSplit``."""
    return w3.eth.contract(
        address=Web3.to_checksum_address(address), abi=contract_abi("PaymentSplit")
    )


def link_bytecode(artifact: Mapping[str, Any], libraries: Mapping[str, str]) -> str:
    """The artifact's creation bytecode with each linked library's placeholder replaced by the
    address in ``libraries`` (by library name); raises ``ContractDeployError`` for one missing."""
    code = str(artifact["bytecode"]).removeprefix("0x")
    for unit in artifact.get("linkReferences", {}).values():
        for name, spots in unit.items():
            if name not in libraries:
                raise ContractDeployError(
                    f"{artifact['contractName']} links {name}: no address given"
                )
            address = Web3.to_checksum_address(libraries[name])[2:].lower()
            for spot in spots:
                start = 2 * spot["start"]
                code = code[:start] + address + code[start + 2 * spot["length"] :]
    return "0x" + code


def deploy_artifact(
    w3: Web3, deployer_private_key: str, contract_name: str, *constructor_args: Any
) -> tuple[str, int]:
    """Deploy any compiled contract by artifact name (the gas benchmark deploys NaiveBaseline)."""
    return _deploy(w3, deployer_private_key, contract_name, *constructor_args)


def _deploy(
    w3: Web3,
    deployer_private_key: str,
    contract_name: str,
    *constructor_args: Any,
    libraries: Mapping[str, str] | None = None,
) -> tuple[str, int]:
    deployer = Account.from_key(deployer_private_key)
    artifact = load_artifact(contract_name)
    bytecode = link_bytecode(artifact, libraries or {})
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=bytecode)
    tx = factory.constructor(*constructor_args).build_transaction(
        {
            "from": deployer.address,
            "nonce": w3.eth.get_transaction_count(deployer.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    signed = deployer.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=DEPLOY_RECEIPT_TIMEOUT)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise ContractDeployError(
            f"deployment transaction {tx_hash.to_0x_hex()} failed: {dict(receipt)}"
        )
    return Web3.to_checksum_address(receipt["contractAddress"]), int(receipt["blockNumber"])


def freeze_config(
    w3: Web3, admin_private_key: str, address: str, digest: bytes, contract_uri: str
) -> None:
    """Commit the collection config ``digest`` and set ``contractURI``; minting opens with it.

    For tests and simple scripts: signs with the admin key, sends, waits for the receipt and raises
    ``ContractTransactionError`` if it reverted (the backend sends through ``chain.sender``).
    """
    fn = bind(w3, address).functions.freezeConfig(digest, contract_uri)
    send_and_wait(w3, admin_private_key, fn)


# State can change between the estimate and the block that includes the transaction (a sale
# phase's first second prices on a shorter path than the next): the sender's margin too.
GAS_MARGIN_PERCENT = 20


def send_and_wait(w3: Web3, private_key: str, fn: ContractFunction, value: int = 0) -> TxReceipt:
    """Sign ``fn`` with ``private_key``, send it, wait, and raise if it reverted."""
    account = Account.from_key(private_key)
    gas = fn.estimate_gas({"from": account.address, "value": value})
    tx = fn.build_transaction(
        {
            "from": account.address,
            "value": value,
            "gas": gas + gas * GAS_MARGIN_PERCENT // 100,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=DEPLOY_RECEIPT_TIMEOUT)
    if receipt["status"] != 1:
        raise ContractTransactionError(
            f"transaction {tx_hash.to_0x_hex()} ({getattr(fn, 'fn_name', 'constructor')}) reverted: {dict(receipt)}"
        )
    return receipt


def bind(w3: Web3, address: str) -> Contract:
    """A web3 contract object for a deployed MintOnDemand at ``address``."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=contract_abi())


def call_per_token(w3: Web3, contract: Contract, view: str, token_ids: list[int]) -> dict[int, Any]:
    """``contract.<view>(token_id)`` for each id, in one JSON-RPC batch (one HTTP request)."""
    if not token_ids:
        return {}
    with w3.batch_requests() as batch:
        for token_id in token_ids:
            batch.add(getattr(contract.functions, view)(token_id))
        answers = batch.execute()
    return dict(zip(token_ids, answers, strict=True))
