"""``manage.py deploy_collection`` against a real anvil, and what it publishes for marketplaces:
the contract metadata (ERC-7572) and a published token's metadata, checked field by field
against OpenSea's metadata standards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError

from chain import publishing
from chain.anvil import ANVIL_ACCOUNTS, Anvil, start_anvil
from chain.contract import bind
from chain.listener import Listener
from chain.models import Chain
from chain.seed_commit import commit_seeds
from devtools.rarity_fixtures import WEIGHTED as PALETTE
from generation import pipeline
from generation.collection_image import name_card
from generation.models import Collection, Token
from ipfs.cid import compute_cid
from ipfs.store import LocalStore
from tests.test_listener import mine, mint

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
    # the sale's controls go to the sale worker's account (anvil #5), and only there
    sales_role = contract.functions.SALES_ROLE().call()
    assert contract.functions.hasRole(sales_role, ANVIL_ACCOUNTS[5].address).call()
    assert not contract.functions.hasRole(sales_role, deployer).call()
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


def test_it_deploys_a_reserve_and_a_payment_split_that_takes_proceeds_and_royalties(
    anvil: Anvil,
) -> None:
    from chain.contract import bind_split

    paula, dora = ANVIL_ACCOUNTS[3].address, ANVIL_ACCOUNTS[4].address
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "split",
                 "--max-supply", "9", "--reserve", "4",
                 "--splits", json.dumps([[paula, 7_000], [dora, 3_000]]))  # fmt: skip
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    f = bind(w3, Collection.objects.get(slug="split").contract_address).functions
    assert f.reserve().call() == [4, 0]
    split = bind_split(w3, f.payee().call())
    assert split.functions.split().call() == [[paula, dora], [7_000, 3_000]]
    assert f.royaltyInfo(1, 10_000).call() == [split.address, 500]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--reserve", "8", "--max-supply", "7"], "reserve 8 must be from 0 to max_supply"),
        (["--splits", '[["0xnope", 10000]]'], "is not an Ethereum address"),
        (["--splits", json.dumps([[ANVIL_ACCOUNTS[3].address, 9_999]])], "sum to 9999"),
        (["--splits", json.dumps([[ANVIL_ACCOUNTS[3].address, 10_000]]),
          "--payee", ANVIL_ACCOUNTS[4].address], "give payee or splits, not both"),
    ],
)  # fmt: skip
def test_it_refuses_bad_sale_settings_before_sending_anything(
    anvil: Anvil, options: list[str], problem: str
) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    nonce = w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address)
    with pytest.raises(CommandError, match=problem):
        call_command("deploy_collection", "--rpc-url", anvil.rpc_url, *options)
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


# OpenSea's metadata standards (docs.opensea.io/docs/metadata-standards and contract-level
# metadata, which ERC-7572's schema follows): the keys a marketplace reads, and ours beside them.
OPENSEA_TOKEN_KEYS = {
    "name", "description", "image", "image_data", "external_url", "animation_url",
    "youtube_url", "background_color", "attributes",
}  # fmt: skip
OUR_TOKEN_KEYS = {"rarity", "provenance"}
ATTRIBUTE_KEYS = {"trait_type", "value", "display_type", "max_value"}
DISPLAY_TYPES = {"number", "boost_number", "boost_percentage", "date"}
CONTRACT_KEYS = {
    "name", "description", "image", "banner_image", "featured_image", "external_link",
    "collaborators", "seller_fee_basis_points", "fee_recipient",
}  # fmt: skip
OUR_CONTRACT_KEYS = {"generation", "config_digest", "config_digest_scheme"}


def pinned(client: Client, uri: str) -> bytes:
    """The bytes an ``ipfs://`` URI names, as this site's gateway serves them, checked against
    the CID."""
    assert isinstance(uri, str) and uri.startswith("ipfs://"), uri
    cid = uri.removeprefix("ipfs://")
    response = client.get(f"/ipfs/{cid}")
    assert response.status_code == 200, uri
    data = b"".join(response.streaming_content) if response.streaming else response.content
    assert compute_cid(data) == cid
    return data


def page_at(client: Client, url: str) -> str:
    """The page a published link names: under WEB_URL, served by this site."""
    from django.conf import settings

    assert url.startswith(settings.WEB_URL + "/"), url
    response = client.get(url.removeprefix(settings.WEB_URL))
    assert response.status_code == 200, url
    return response.content.decode()


def published_token(w3: Web3, collection: Collection) -> Token:
    """One token minted by a collector and taken through every stage, as in production."""
    mint(w3, collection, 1)
    mine(w3, 2)
    handed: list[int] = []
    chain = Chain.objects.get(chain_id=collection.chain_id)
    Listener(w3, chain, on_confirmed=lambda c, pks: handed.extend(pks)).poll()
    commit_seeds(w3, collection, handed, lambda token: None)
    (pk,) = handed
    assert pipeline.run_render(pk) == Token.Status.RENDERED
    assert pipeline.run_pin(pk) == Token.Status.PINNED
    assert publishing.publish_batch(collection.pk).published == [pk]
    return Token.objects.get(pk=pk)


@pytest.fixture
def pictures(settings, tmp_path: Path) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """A collection image and a banner in a folder the operator allows."""
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    settings.MODEL_ROOTS = [*settings.MODEL_ROOTS, str(folder)]
    found = {}
    for name, size, colour in (("image", (350, 350), "teal"), ("banner", (1400, 350), "navy")):
        path = folder / f"{name}.png"
        Image.new("RGB", size, colour).save(path)
        found[name] = path
    return found


def test_a_published_token_and_the_contract_metadata_follow_the_marketplace_standards(
    anvil: Anvil, client: Client, pictures: dict[str, Path], settings
) -> None:  # type: ignore[no-untyped-def]
    # Given a collection deployed with a chosen image and banner, and a 7.5 % royalty
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "market",
                 "--rarity", json.dumps(PALETTE), "--prompt-template", "a painting {palette}",
                 "--royalty-bps", "750", "--image", str(pictures["image"]),
                 "--banner-image", str(pictures["banner"]))  # fmt: skip
    collection = Collection.objects.get(slug="market")
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    contract = bind(w3, collection.contract_address)
    # When a collector's token is published
    token = published_token(w3, collection)
    store = LocalStore(settings.IPFS_STORE_DIR)

    # Then its metadata has the standard's keys only, and ours beside them
    metadata = json.loads(pinned(client, contract.functions.tokenURI(1).call()))
    assert set(metadata) <= OPENSEA_TOKEN_KEYS | OUR_TOKEN_KEYS
    assert set(metadata) == {
        "name", "description", "image", "external_url", "attributes", "rarity", "provenance"
    }  # fmt: skip
    assert metadata["name"] == f"{collection.name} #1"
    assert metadata["description"] == collection.description
    # image: an ipfs:// URI of the pinned PNG
    assert metadata["image"] == f"ipfs://{token.image_cid}"
    assert pinned(client, metadata["image"]).startswith(b"\x89PNG")
    assert store.has(token.image_cid)
    # external_url: the token's own page on this site
    page = page_at(client, metadata["external_url"])
    assert f"{collection.name} #1</h1>" in page and token.image_cid in page
    # attributes: trait_type and value, nothing else (display_type and max_value are for
    # numbers; an option is a name)
    assert metadata["attributes"] == [{"trait_type": "palette", "value": token.traits["palette"]}]
    for attribute in metadata["attributes"]:
        assert set(attribute) <= ATTRIBUTE_KEYS
        assert isinstance(attribute["trait_type"], str)
        assert isinstance(attribute["value"], str | int | float)
        assert attribute.get("display_type", "number") in DISPLAY_TYPES
        assert isinstance(attribute.get("max_value", 0), int | float)
    # the rarity figures beside them, keyed by trait_type
    assert metadata["rarity"] == {"palette": {"warm": 0.75, "cold": 0.25}[token.traits["palette"]]}
    assert metadata["provenance"]["traits"] == token.traits

    # And the contract metadata has ERC-7572's keys (OpenSea's royalty fields among them)
    document = json.loads(pinned(client, contract.functions.contractURI().call()))
    assert set(document) <= CONTRACT_KEYS | OUR_CONTRACT_KEYS
    assert set(document) - OUR_CONTRACT_KEYS == {
        "name", "description", "image", "banner_image", "external_link",
        "seller_fee_basis_points", "fee_recipient",
    }  # fmt: skip
    assert (document["name"], document["description"]) == (
        collection.name,
        collection.description,
    )
    # the chosen pictures, pinned as they are
    assert pinned(client, document["image"]) == pictures["image"].read_bytes()
    assert pinned(client, document["banner_image"]) == pictures["banner"].read_bytes()
    # external_link: the collection's page on this site
    assert f"<h1>{collection.name}</h1>" in page_at(client, document["external_link"])
    # the royalty the contract pays (ERC-2981)
    receiver, amount = contract.functions.royaltyInfo(1, 10_000).call()
    assert document["seller_fee_basis_points"] == amount == 750
    assert document["fee_recipient"] == receiver == ANVIL_ACCOUNTS[0].address


def test_with_no_image_chosen_the_collection_image_is_the_first_style_image_or_a_name_card(
    anvil: Anvil, client: Client, pictures: dict[str, Path]
) -> None:
    def image_of(slug: str) -> bytes:
        collection = Collection.objects.get(slug=slug)
        document = json.loads(pinned(client, collection.contract_uri))
        assert "banner_image" not in document  # only ever chosen
        return pinned(client, document["image"])

    # a collection with style images: the first of them
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "styled",
                 "--style-images", json.dumps([str(pictures["banner"]), str(pictures["image"])]),
                 "--style-images-threshold", "-1")  # fmt: skip
    assert image_of("styled") == pictures["banner"].read_bytes()
    # one without: a card with its name, rendered at the freeze
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", "plain",
                 "--name", "Plain Shapes")  # fmt: skip
    assert image_of("plain") == name_card("Plain Shapes", "plain")


def test_it_refuses_a_collection_image_it_cannot_read_before_sending_anything(
    anvil: Anvil, pictures: dict[str, Path]
) -> None:
    not_an_image = pictures["image"].with_name("notes.txt")
    not_an_image.write_text("not a picture")
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    nonce = w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address)
    with pytest.raises(CommandError, match="not a readable image"):
        call_command("deploy_collection", "--rpc-url", anvil.rpc_url,
                     "--image", str(not_an_image))  # fmt: skip
    with pytest.raises(CommandError, match="outside the folders models may be loaded from"):
        call_command(
            "deploy_collection", "--rpc-url", anvil.rpc_url, "--banner-image", "/etc/hosts"
        )
    assert w3.eth.get_transaction_count(ANVIL_ACCOUNTS[0].address) == nonce
