"""``manage.py deploy_collection`` against a real anvil."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, Anvil, start_anvil
from chain.contract import bind
from generation.models import Collection
from ipfs.store import LocalStore

pytestmark = pytest.mark.django_db(transaction=True)


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
    committer, publisher = ANVIL_ACCOUNTS[1].address, ANVIL_ACCOUNTS[2].address
    assert contract.functions.hasRole(
        contract.functions.SEED_COMMITTER_ROLE().call(), committer
    ).call()
    assert contract.functions.hasRole(contract.functions.PUBLISHER_ROLE().call(), publisher).call()
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

    from chain.deployment import freeze_collection

    # Given a collection whose template was changed behind the form's back
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "late")
    collection = Collection.objects.get(slug="late")
    collection.config_digest = ""
    collection.prompt_template = "art {token_id:>50000000}"
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    nonce = w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address)
    # Then freezing it refuses, before pinning or sending anything
    with pytest.raises(ValidationError, match="format specs"):
        freeze_collection(w3, ANVIL_ACCOUNTS[0].private_key, collection)
    assert w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address) == nonce


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
