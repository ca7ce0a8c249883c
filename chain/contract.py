"""Bindings for the MintOnDemand contract: the compiled artifact, deployment, and a bound instance.

The artifact is built by ``node contracts/compile.js`` and committed; the tests check it matches a
fresh compile.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.contract import Contract

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACT_PATH = REPO_ROOT / "contracts" / "build" / "MintOnDemand.json"

DEPLOY_RECEIPT_TIMEOUT = 120.0


class ContractDeployError(RuntimeError):
    """The deployment transaction was mined but reverted, or produced no contract."""


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


def load_artifact() -> dict[str, Any]:
    """The compiled artifact: contractName, abi, bytecode, deployedBytecode, compiler."""
    return _read_artifact(ARTIFACT_PATH)


def contract_abi() -> list[dict[str, Any]]:
    abi: list[dict[str, Any]] = load_artifact()["abi"]
    return abi


def deploy_contract(
    w3: Web3,
    deployer_private_key: str,
    *,
    name: str,
    symbol: str,
    price_wei: int,
    max_supply: int,
    admin: str | None = None,
) -> tuple[str, int]:
    """Deploy MintOnDemand from the deployer's key; ``admin`` defaults to the deployer.

    Returns the contract's checksum address and the block number that holds the deployment, which
    is where a chain listener starts scanning.
    """
    deployer = Account.from_key(deployer_private_key)
    admin_address = Web3.to_checksum_address(admin) if admin is not None else deployer.address
    artifact = load_artifact()
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor(name, symbol, price_wei, max_supply, admin_address).build_transaction(
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


def bind(w3: Web3, address: str) -> Contract:
    """A web3 contract object for a deployed MintOnDemand at ``address``."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=contract_abi())
