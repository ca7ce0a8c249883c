"""``manage.py deploy_collection`` against a real anvil."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError

from chain.anvil import ANVIL_ACCOUNTS, Anvil, start_anvil
from chain.contract import bind
from generation.models import Collection
from ipfs.store import LocalStore

pytestmark = pytest.mark.django_db(transaction=True)
UNAUTHORIZED = "0x" + keccak(text="AccessControlUnauthorizedAccount(address,bytes32)")[:4].hex()


@pytest.fixture(autouse=True)
def deployment_file(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.DEPLOYMENT_FILE = tmp_path / "deployment.json"
    return settings.DEPLOYMENT_FILE


def test_it_deploys_registers_and_grants_the_backend_its_roles(
    anvil: Anvil, deployment_file: Path
) -> None:
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "studio",
                 "--price-wei", "5", "--max-supply", "7")  # fmt: skip
    collection = Collection.objects.get(slug="studio")
    contract = bind(Web3(Web3.HTTPProvider(anvil.rpc_url)), collection.contract_address)
    assert (contract.functions.price().call(), contract.functions.maxSupply().call()) == (5, 7)
    publisher = ANVIL_ACCOUNTS[2].address
    assert contract.functions.hasRole(contract.functions.PUBLISHER_ROLE().call(), publisher).call()
    # and the deployer (the admin) renounced it: its key cannot publish (commitSeeds needs no
    # role: it reads only chain data)
    deployer = ANVIL_ACCOUNTS[0].address
    assert not contract.functions.hasRole(
        contract.functions.PUBLISHER_ROLE().call(), deployer
    ).call()
    info = json.loads(deployment_file.read_text())
    assert info["contract_address"] == collection.contract_address
    assert {"rpc_url", "chain_id", "web_url", "abi_path"} <= set(info)


def test_it_refuses_an_invalid_collection_before_sending_anything(anvil: Anvil) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    nonce = w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address)
    with pytest.raises(CommandError, match="clip_threshold"):
        call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--clip-threshold", "2")
    assert w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address) == nonce
    assert not Collection.objects.exists()


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("--prompt-template", "art {token_id:>50000000}", "format specs"),
        ("--model-dir", "/etc", "outside the folders models may be loaded from"),
        ("--clip-dir", "../../..", "outside the folders models may be loaded from"),
        ("--description", "x" * 5_001, "at most 5000 characters"),
        ("--negative-prompt", "x" * 1_001, "at most 1000 characters"),
    ],
)
def test_it_refuses_a_config_past_the_managers_limits_before_sending_anything(
    anvil: Anvil, option: str, value: str, field: str
) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    nonce = w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address)
    with pytest.raises(CommandError, match=field):
        call_command("deploy_collection", "--rpc-url", anvil.rpc_url, option, value)
    assert w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address) == nonce


def test_freezing_checks_the_config_whoever_calls(anvil: Anvil) -> None:
    from django.core.exceptions import ValidationError
    from eth_account import Account

    from chain.deployment import send_freeze

    # Given a collection whose template was changed behind the form's back, before its freeze
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "late")
    Collection.objects.filter(slug="late").update(
        config_digest="",
        contract_uri="",
        prepared_config_digest="",
        prepared_contract_uri="",
        prompt_template="art {token_id:>50000000}",
    )
    collection = Collection.objects.get(slug="late")
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    nonce = w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address)
    # Then freezing it refuses, before preparing, pinning or sending anything
    with pytest.raises(ValidationError, match="format specs"):
        send_freeze(w3, Account.from_key(ANVIL_ACCOUNTS[0].private_key), collection)
    assert w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address) == nonce
    assert Collection.objects.get(slug="late").prepared_config_digest == ""


def test_it_asks_for_a_deployer_key_off_the_embedded_chain() -> None:
    with start_anvil(chain_id=4242) as other, pytest.raises(CommandError, match="DEPLOYER_KEY"):
        call_command("deploy_collection", "--rpc-url", other.rpc_url)


def test_it_freezes_the_generation_config_before_minting_opens(anvil: Anvil, settings) -> None:  # type: ignore[no-untyped-def]
    # Given a collection deployed by the command
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "frozen")
    collection = Collection.objects.get(slug="frozen")
    contract = bind(Web3(Web3.HTTPProvider(anvil.rpc_url)), collection.contract_address)
    # Then the chain holds the digest of the generation object its contractURI names
    uri = contract.functions.contractURI().call()
    assert uri == collection.contract_uri
    document = json.loads(LocalStore(settings.IPFS_STORE_DIR).get(uri.removeprefix("ipfs://")))
    canonical = json.dumps(document["generation"], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    assert bytes(contract.functions.configDigest().call()) == digest
    assert document["generation"]["prompt_template"] == collection.prompt_template
    assert document["generation"]["model"]["fingerprint"].startswith("sha256:")


def test_only_the_publisher_publishes_and_anyone_commits_seeds(anvil: Anvil) -> None:
    # Given a collection deployed by the command and a token minted
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "roles")
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    contract = bind(w3, Collection.objects.get(slug="roles").contract_address)
    deployer, committer, publisher, collector = (a.address for a in ANVIL_ACCOUNTS[:4])
    price = contract.functions.price().call()
    w3.eth.wait_for_transaction_receipt(
        contract.functions.mint(1).transact({"from": collector, "value": price})
    )
    w3.provider.make_request("anvil_mine", [1])
    commit, publish = (
        contract.functions.commitSeeds([1]),
        contract.functions.publish([1], [b"1" * 32]),
    )
    # Then the deployer's key cannot publish, as an attacker holding it would find
    with pytest.raises(ContractCustomError) as refused:
        publish.call({"from": deployer})
    assert refused.value.data[:10] == UNAUTHORIZED
    # a collector could commit the seeds (the chain decides them), and the backend's committer
    # and publisher do their work
    commit.call({"from": collector})
    for call, account in ((commit, committer), (publish, publisher)):
        receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": account}))
        assert receipt["status"] == 1


def test_a_deployer_that_is_also_the_publisher_keeps_that_role(anvil: Anvil, settings) -> None:  # type: ignore[no-untyped-def]
    # the same key configured for two roles: nobody else could publish
    settings.PUBLISHER_KEY = ANVIL_ACCOUNTS[0].private_key
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "solo")
    contract = bind(
        Web3(Web3.HTTPProvider(anvil.rpc_url)), Collection.objects.get(slug="solo").contract_address
    )
    deployer = ANVIL_ACCOUNTS[0].address
    assert contract.functions.hasRole(contract.functions.PUBLISHER_ROLE().call(), deployer).call()
