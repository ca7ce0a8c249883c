"""The admin as a collection manager uses it, through Django's test client.

Personas: Ada manages the Aurora collection, Bob manages Borealis, Eve is staff with no
collection, Root is the superuser. Renders use the reference models; the freeze runs on a real
anvil; queued work is read back from the real Redis broker (``REDIS_URL``).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from PIL import Image
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS
from chain.contract import bind, deploy_contract
from chain.models import Chain
from devtools.rarity_fixtures import WEIGHTED
from generation import events, pipeline, review, tasks
from generation.models import Collection, Token, TokenEvent
from generation.render_seed import torch_seed_for
from ipfs.store import LocalStore
from mintsite.admin.forms import RarityInput
from tests.people import staff

pytestmark = pytest.mark.django_db
Status = Token.Status
SEED = "0x" + hashlib.sha256(b"an admin test seed").hexdigest()
DEPLOYER = ANVIL_ACCOUNTS[0]
CHANGELIST = "/admin/generation/token/"
COLLECTIONS = "/admin/generation/collection/"


# --- personas and their collections ----------------------------------------------------------


# staff() and the ada, bob and root fixtures: tests/people.py and tests/conftest.py


def make_collection(
    reference_models: Path, slug: str, managers: list[User] = (), **fields: Any
) -> Collection:  # type: ignore[assignment]
    collection = Collection.objects.create(
        **{
            "slug": slug,
            "name": slug.capitalize(),
            "chain_id": 31337,
            "contract_address": "0x" + hashlib.sha256(slug.encode()).hexdigest()[:40],
            "model_dir": str(reference_models / "diffusion"),
            "clip_dir": str(reference_models / "clip"),
            "prompt_template": "an abstract painting, token {token_id}",
            "style_prompt": "an abstract painting",
            "clip_threshold": -1.0,
            "steps": 2,
            "max_attempts": 2,
            "max_supply": 100,
            **fields,
        }
    )
    collection.managers.set(managers)
    return collection


@pytest.fixture
def aurora(reference_models: Path, ada: User) -> Collection:
    return make_collection(reference_models, "aurora", [ada])


@pytest.fixture
def borealis(reference_models: Path, bob: User) -> Collection:
    return make_collection(reference_models, "borealis", [bob])


def make_token(
    collection: Collection, token_id: int, status: str = Status.SEED_COMMITTED, **fields: Any
) -> Token:
    return Token.objects.create(
        **{
            "collection": collection,
            "token_id": token_id,
            "owner": "0x" + "11" * 20,
            "mint_tx_hash": f"0x{token_id:064x}",
            "mint_log_index": 0,
            "mint_block_number": 1,
            "mint_block_hash": "0x" + "22" * 32,
            "expected_seed": SEED,
            "seed": SEED,
            "status": status,
            **fields,
        }
    )


def as_user(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def notes(response: Any) -> list[str]:
    """The admin messages shown on the page the response (followed) ends on."""
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.fixture
def render_cache(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.RENDER_CACHE_DIR = tmp_path / "renders"
    settings.RENDER_DEVICE = "cpu"
    return settings.RENDER_CACHE_DIR


# --- the broker --------------------------------------------------------------------------------


def take_messages(
    actor_name: str, wanted: Callable[[list], bool] = lambda args: True
) -> list[list]:
    """The args of the queued messages for ``actor_name`` that ``wanted`` accepts, removed from
    the broker (only those: a shared namespace may hold other runs' messages)."""
    broker = dramatiq.get_broker()
    client, namespace = broker.client, broker.namespace  # type: ignore[attr-defined]
    found = []
    for queue in ("render", "io", "render.DQ", "io.DQ"):
        for message_id, raw in client.hgetall(f"{namespace}:{queue}.msgs").items():
            message = json.loads(raw)
            if message["actor_name"] == actor_name and wanted(message["args"]):
                found.append(message["args"])
                client.hdel(f"{namespace}:{queue}.msgs", message_id)
                client.lrem(f"{namespace}:{queue}", 0, message_id)
    return found


def act(client: Client, url: str, action: str, objects: list[Any], capture: Any) -> Any:
    """Run an admin action on ``objects`` as the changelist's form posts it."""
    with capture(execute=True):
        return client.post(
            url, {"action": action, "_selected_action": [o.pk for o in objects]}, follow=True
        )


# --- who sees what ------------------------------------------------------------------------------


def test_a_manager_sees_only_the_collections_granted_to_them(
    ada: User, aurora: Collection, borealis: Collection
) -> None:
    mine, theirs = make_token(aurora, 1), make_token(borealis, 1)
    events.record([mine.pk], Status.SEED_COMMITTED, "seed of aurora")
    events.record([theirs.pk], Status.SEED_COMMITTED, "seed of borealis")
    client = as_user(ada)

    page = client.get(COLLECTIONS)
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [aurora]
    assert b"borealis" not in page.content.lower()

    # Bob's collection and token do not exist as far as Ada can tell
    for url in (f"{COLLECTIONS}{borealis.pk}/change/", f"{CHANGELIST}{theirs.pk}/change/"):
        response = client.get(url, follow=True)
        assert response.redirect_chain[-1][0] == "/admin/"
        assert any("doesn’t exist" in m for m in notes(response))
    assert client.get(f"{CHANGELIST}{theirs.pk}/render/0.png").status_code == 404

    tokens = client.get(CHANGELIST)
    assert list(tokens.context["cl"].result_list) == [mine]
    # asking the filter for Bob's collection finds none of his tokens, and it is not offered
    asked = client.get(CHANGELIST, {"collection__id__exact": borealis.pk})
    assert theirs not in asked.context["cl"].result_list
    assert b"Borealis" not in tokens.content
    history = client.get("/admin/generation/tokenevent/")
    assert [e.detail for e in history.context["cl"].result_list] == ["seed of aurora"]
    # and the operator's lists are not hers
    assert client.get("/admin/chain/chain/").status_code == 403


def test_a_superuser_sees_every_collection(
    root: User, aurora: Collection, borealis: Collection
) -> None:
    make_token(aurora, 1)
    make_token(borealis, 1)
    client = as_user(root)
    assert set(client.get(COLLECTIONS).context["cl"].result_list) == {aurora, borealis}
    assert client.get(CHANGELIST).context["cl"].result_count == 2
    assert client.get(f"{COLLECTIONS}{borealis.pk}/change/").status_code == 200
    assert client.get("/admin/chain/outgoingtransaction/").status_code == 200


def test_a_staff_user_granted_no_collection_sees_none(aurora: Collection) -> None:
    client = as_user(staff("eve"))
    index = client.get("/admin/")
    assert index.status_code == 200
    assert b"/admin/generation/collection/" not in index.content
    assert client.get(COLLECTIONS).status_code == 403
    assert client.get(CHANGELIST).status_code == 403


# --- the collection form ------------------------------------------------------------------------


def rarity_fields(
    table: dict | None = None, *, rows: list[tuple] = (), mode: str = "", json_text: str = ""
) -> dict[str, Any]:  # type: ignore[assignment]
    """The rarity widget's fields: ``table`` shown as rows, or ``rows`` of
    (category, verify, option, prompt, amount) under ``mode``."""
    if table is not None:
        shown = RarityInput.from_table(table)
        mode = shown.mode
        rows = [(r.category, r.verify, r.option, r.prompt, r.amount) for r in shown.rows]
    data: dict[str, Any] = {"rarity-mode": mode, "rarity-rows": len(rows), "rarity-json": json_text}
    for i, (category, verify, option, prompt, amount) in enumerate(rows):
        data.update(
            {
                f"rarity-{i}-category": category,
                f"rarity-{i}-option": option,
                f"rarity-{i}-prompt": prompt,
                f"rarity-{i}-amount": amount,
            }
        )
        if verify:
            data[f"rarity-{i}-verify"] = "on"
    return data


def form_data(collection: Collection, **overrides: Any) -> dict[str, Any]:
    """What the change form posts for ``collection`` as it is, with ``overrides``."""
    data: dict[str, Any] = {
        name: getattr(collection, name)
        for name in (
            "slug",
            "name",
            "description",
            "model_dir",
            "model_config_dir",
            "scheduler",
            "steps",
            "guidance",
            "width",
            "height",
            "prompt_template",
            "negative_prompt",
            "style_prompt",
            "clip_dir",
            "clip_threshold",
            "trait_margin",
            "max_attempts",
            "max_supply",
            "chain_id",
            "contract_address",
            "deployment_block",
            "cid_profile",
        )
    }
    data["uniqueness_threshold"] = collection.uniqueness_threshold or ""
    data["style_images_threshold"] = collection.style_images_threshold or ""
    data["style_images"] = "\n".join(collection.style_images)
    if collection.paused:
        data["paused"] = "on"
    data.update(rarity_fields(collection.rarity))
    data.update(overrides)
    return data


def test_it_saves_a_rarity_table_edited_as_rows_and_shows_its_probabilities(
    ada: User, aurora: Collection
) -> None:
    client = as_user(ada)
    url = f"{COLLECTIONS}{aurora.pk}/change/"
    rows = [
        ("palette", True, "warm", "in warm reds", "3"),
        ("", False, "cold", "in cold blues", "1"),
        ("shape", False, "circle", "with circles", "0.5"),
        ("", False, "square", "with squares", "0.5"),
        ("", False, "", "", ""),  # a blank row is nothing
    ]
    data = form_data(
        aurora,
        prompt_template="an abstract painting {palette} {shape}",
        **rarity_fields(mode="weighted", rows=rows),
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    aurora.refresh_from_db()
    assert aurora.rarity == {
        "mode": "weighted",
        "categories": [
            {
                "name": "palette",
                "verify": True,
                "options": [
                    {"name": "warm", "prompt": "in warm reds", "weight": 3},
                    {"name": "cold", "prompt": "in cold blues", "weight": 1},
                ],
            },
            {
                "name": "shape",
                "verify": False,
                "options": [
                    {"name": "circle", "prompt": "with circles", "weight": 0.5},
                    {"name": "square", "prompt": "with squares", "weight": 0.5},
                ],
            },
        ],
    }
    page = client.get(url).content.decode()
    assert "75.00%" in page and "25.00%" in page and "50.00%" in page
    # shown again as the same rows, so saving it untouched changes nothing
    assert client.post(url, form_data(aurora)).status_code == 302
    assert Collection.objects.get(pk=aurora.pk).rarity == aurora.rarity


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            rarity_fields(
                mode="quota",
                rows=[("palette", False, "warm", "in reds", "30"), ("", False, "cold", "", "30")],
            ),
            "quotas of category &#x27;palette&#x27; sum to 60, but max_supply is 100",
        ),
        (
            {
                "prompt_template": "a painting {palette} with {shape}",
                **rarity_fields(WEIGHTED),
            },
            "unknown placeholder {shape}",
        ),
        (
            rarity_fields(
                mode="weighted",
                rows=[("palette", False, "warm", "", "0"), ("", False, "cold", "", "1")],
            ),
            "categories[0].options[0].weight (category &#x27;palette&#x27;, option "
            "&#x27;warm&#x27;): must be &gt; 0, got 0",
        ),
        (
            rarity_fields(mode="weighted", rows=[("palette", False, "warm", "", "lots")]),
            "row 1 (palette / warm): weight &#x27;lots&#x27; is not a number",
        ),
        (
            rarity_fields(mode="weighted", rows=[("", False, "warm", "", "1")]),
            "row 1: name its category",
        ),
        (rarity_fields(json_text='{"mode": "weighted",'), "the pasted JSON does not parse"),
        (
            rarity_fields(json_text='{"mode": "random", "categories": []}'),
            "mode: must be one of &#x27;weighted&#x27;, &#x27;quota&#x27;, &#x27;none&#x27;",
        ),
    ],
    ids=[
        "quota-not-summing-to-max-supply",
        "unknown-placeholder",
        "zero-weight",
        "weight-not-a-number",
        "option-without-category",
        "broken-json",
        "unknown-mode",
    ],
)
def test_it_refuses_an_invalid_rarity_table_naming_the_problem(
    ada: User, aurora: Collection, fields: dict, message: str
) -> None:
    response = as_user(ada).post(f"{COLLECTIONS}{aurora.pk}/change/", form_data(aurora, **fields))
    assert response.status_code == 200
    assert "Please correct the error" in response.content.decode()
    assert message in response.content.decode()
    aurora.refresh_from_db()
    assert aurora.rarity == {"mode": "none", "categories": []}


def test_frozen_fields_are_read_only_and_a_changed_value_is_not_taken(
    ada: User, aurora: Collection
) -> None:
    Collection.objects.filter(pk=aurora.pk).update(
        config_digest="0x" + "ab" * 32, contract_uri="ipfs://bafkreiexample"
    )
    client = as_user(ada)
    url = f"{COLLECTIONS}{aurora.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="clip_threshold"' not in page and 'name="rarity-mode"' not in page
    assert 'name="name"' in page  # the name is not output-shaping
    assert "0x" + "ab" * 32 in page and "Save and freeze" not in page
    response = client.post(url, form_data(aurora, clip_threshold=0.5, name="Aurora II"))
    assert response.status_code == 302
    aurora.refresh_from_db()
    assert aurora.clip_threshold == -1.0 and aurora.name == "Aurora II"


def test_a_manager_cannot_hand_their_collection_to_someone_else(
    ada: User, bob: User, aurora: Collection
) -> None:
    url = f"{COLLECTIONS}{aurora.pk}/change/"
    response = as_user(ada).post(
        url, form_data(aurora, managers=[bob.pk], contract_address="0x" + "99" * 20)
    )
    assert response.status_code == 302
    aurora.refresh_from_db()
    assert list(aurora.managers.all()) == [ada]
    assert aurora.contract_address != "0x" + "99" * 20


# --- freeze -------------------------------------------------------------------------------------


@pytest.fixture
def undeployed(w3: Web3, anvil, reference_models: Path, ada: User) -> Collection:  # type: ignore[no-untyped-def]
    """A collection whose contract is deployed and NOT frozen (deploy_collection's first steps)."""
    address, block = deploy_contract(
        w3, DEPLOYER.private_key, name="Aurora", symbol="AUR", price_wei=10**16, max_supply=100
    )
    Chain.objects.update_or_create(chain_id=31337, defaults={"rpc_urls": anvil.rpc_url})
    return make_collection(
        reference_models,
        "aurora",
        [ada],
        contract_address=address,
        deployment_block=block,
        rarity=WEIGHTED,
        prompt_template="an abstract painting {palette}",
    )


def freeze_page(client: Client, collection: Collection) -> str:
    return client.get(f"{COLLECTIONS}{collection.pk}/freeze/").content.decode()


def sent_nothing(w3: Web3, block: int, contract_address: str) -> bool:
    """No block was mined (anvil mines one per transaction) and the contract is not frozen."""
    digest = bind(w3, contract_address).functions.configDigest().call()
    return w3.eth.block_number == block and digest == bytes(32)


def sign_elsewhere(w3: Web3, call: dict[str, str]) -> None:
    """The contract admin signs the prepared transaction outside the backend (anvil unlocks
    its accounts, as a hardware wallet or a multisig would sign)."""
    tx = w3.eth.send_transaction({"from": DEPLOYER.address, "to": call["to"], "data": call["data"]})
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def shown_call(page: str) -> dict[str, str]:
    """The transaction's fields as the freeze page shows them."""
    import re

    rows = re.findall(r"<tr><th>([A-Za-z ]+)</th><td><code[^>]*>([^<]*)</code>", page)
    return dict(rows)


def test_the_freeze_action_prepares_the_transaction_and_sends_nothing(
    w3: Web3, ada: User, undeployed: Collection, django_capture_on_commit_callbacks: Any
) -> None:
    # Given Ada's collection, deployed and not frozen
    client = as_user(ada)
    block = w3.eth.block_number
    # When she runs the freeze action
    response = act(client, COLLECTIONS, "freeze", [undeployed], django_capture_on_commit_callbacks)
    # Then nothing is sent: the web tier holds no chain key
    assert sent_nothing(w3, block, undeployed.contract_address)
    [note] = notes(response)
    assert "aurora: freeze prepared" in note and f"{undeployed.pk}/freeze/" in note
    undeployed.refresh_from_db()
    assert undeployed.config_digest == "" and undeployed.prepared_config_digest.startswith("0x")
    # and the freeze page shows the transaction for the contract admin to sign
    call = shown_call(freeze_page(client, undeployed))
    contract = bind(w3, undeployed.contract_address)
    digest = bytes.fromhex(undeployed.prepared_config_digest[2:])
    assert call["to"] == contract.address and call["value"] == "0"
    assert call["data"] == contract.encode_abi(
        "freezeConfig", args=[digest, undeployed.prepared_contract_uri]
    )
    assert call["config digest"] == undeployed.prepared_config_digest
    assert call["contract URI"] == undeployed.prepared_contract_uri
    # and what shapes the output is locked while it waits for the signature
    page = client.get(f"{COLLECTIONS}{undeployed.pk}/change/").content.decode()
    assert 'name="prompt_template"' not in page and "Save and prepare" not in page


def test_the_listener_records_a_freeze_signed_elsewhere(
    w3: Web3, ada: User, undeployed: Collection, django_capture_on_commit_callbacks: Any
) -> None:
    from chain.listener import Listener

    client = as_user(ada)
    act(client, COLLECTIONS, "freeze", [undeployed], django_capture_on_commit_callbacks)
    call = shown_call(freeze_page(client, undeployed))
    # When the contract admin signs and sends it outside the backend
    sign_elsewhere(w3, call)
    chain = Chain.objects.get(chain_id=31337)
    listener = Listener(w3, chain, on_confirmed=lambda collection, pks: None)
    # Then the page says so, and the listener records it once it has its confirmations
    assert "frozen with the prepared config digest" in freeze_page(client, undeployed)
    w3.provider.make_request("anvil_mine", [chain.confirmations])
    listener.poll()
    undeployed.refresh_from_db()
    assert undeployed.config_digest == call["config digest"]
    assert undeployed.contract_uri == call["contract URI"]
    page = client.get(f"{COLLECTIONS}{undeployed.pk}/change/").content.decode()
    assert undeployed.config_digest in page and "Save and prepare" not in page
    # a second freeze prepares nothing
    again = act(client, COLLECTIONS, "freeze", [undeployed], django_capture_on_commit_callbacks)
    assert any("already frozen" in m for m in notes(again))


def test_the_listener_does_not_record_a_freeze_of_another_config(
    w3: Web3,
    ada: User,
    undeployed: Collection,
    django_capture_on_commit_callbacks: Any,
    caplog: Any,
) -> None:
    from chain.listener import Listener

    client = as_user(ada)
    act(client, COLLECTIONS, "freeze", [undeployed], django_capture_on_commit_callbacks)
    # the admin's key froze the contract with some other digest
    contract = bind(w3, undeployed.contract_address)
    other = contract.encode_abi("freezeConfig", args=[b"\x07" * 32, "ipfs://other"])
    sign_elsewhere(w3, {"to": contract.address, "data": other})
    chain = Chain.objects.get(chain_id=31337)
    listener = Listener(w3, chain, on_confirmed=lambda collection, pks: None)
    w3.provider.make_request("anvil_mine", [chain.confirmations])
    listener.poll()
    listener.poll()
    assert Collection.objects.get(pk=undeployed.pk).config_digest == ""
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"aurora: the contract holds config digest 0x{'07' * 32}, but the freeze prepared here "
        f"is {Collection.objects.get(pk=undeployed.pk).prepared_config_digest}; not recorded"
    ]
    assert "NOT the one prepared here" in freeze_page(client, undeployed)


def test_a_prepared_freeze_can_be_withdrawn_until_it_is_on_chain(
    w3: Web3, ada: User, undeployed: Collection, django_capture_on_commit_callbacks: Any
) -> None:
    client = as_user(ada)
    url = f"{COLLECTIONS}{undeployed.pk}/freeze/"
    client.post(url, {"_prepare": "1"})
    call = shown_call(freeze_page(client, undeployed))
    response = client.post(url, {"_withdraw": "1"}, follow=True)
    assert any("prepared freeze withdrawn by ada" in m for m in notes(response))
    # the config can change again
    change = f"{COLLECTIONS}{undeployed.pk}/change/"
    client.post(change, form_data(Collection.objects.get(pk=undeployed.pk), steps=3))
    assert Collection.objects.get(pk=undeployed.pk).steps == 3
    # once the chain holds a freeze, withdrawing is refused
    client.post(url, {"_prepare": "1"})
    call = shown_call(freeze_page(client, undeployed))
    sign_elsewhere(w3, call)
    response = client.post(url, {"_withdraw": "1"}, follow=True)
    assert any("not withdrawn" in m and "already frozen" in m for m in notes(response))
    assert Collection.objects.get(pk=undeployed.pk).prepared_config_digest == call["config digest"]


def test_the_freeze_action_refuses_an_invalid_config_and_prepares_nothing(
    w3: Web3, ada: User, undeployed: Collection, django_capture_on_commit_callbacks: Any
) -> None:
    # saved behind the form's back: a template naming a category the table lacks
    Collection.objects.filter(pk=undeployed.pk).update(prompt_template="a painting {mood}")
    response = act(
        as_user(ada), COLLECTIONS, "freeze", [undeployed], django_capture_on_commit_callbacks
    )
    [note] = notes(response)
    assert "aurora: not prepared, its config is invalid" in note
    assert "unknown placeholder {mood}" in note
    assert bind(w3, undeployed.contract_address).functions.configDigest().call() == bytes(32)
    assert Collection.objects.get(pk=undeployed.pk).prepared_config_digest == ""


def test_save_and_prepare_from_the_change_page(w3: Web3, ada: User, undeployed: Collection) -> None:
    url = f"{COLLECTIONS}{undeployed.pk}/change/"
    client = as_user(ada)
    block = w3.eth.block_number
    assert "Save and prepare the freeze transaction" in client.get(url).content.decode()
    response = client.post(
        url, {**form_data(undeployed, name="Aurora I"), "_freeze": "1"}, follow=True
    )
    undeployed.refresh_from_db()
    assert undeployed.name == "Aurora I" and undeployed.prepared_config_digest
    assert response.redirect_chain[-1][0] == f"{COLLECTIONS}{undeployed.pk}/freeze/"
    assert shown_call(response.content.decode())["data"].startswith("0x")
    assert sent_nothing(w3, block, undeployed.contract_address)


def test_the_web_tier_freezes_with_no_deployer_key_and_the_command_signs(
    ada: User,
    reference_models: Path,
    settings,
    capsys: Any,  # type: ignore[no-untyped-def]
) -> None:
    from django.core.management import CommandError, call_command

    from chain.anvil import start_anvil

    # Given a chain that is not the embedded one, and no DEPLOYER_KEY in the web process
    assert settings.DEPLOYER_KEY is None and settings.DEPLOYER_KEYSTORE is None
    with start_anvil(chain_id=4242) as other:
        w3 = Web3(Web3.HTTPProvider(other.rpc_url))
        address, block = deploy_contract(
            w3, DEPLOYER.private_key, name="Gale", symbol="G", price_wei=1, max_supply=10
        )
        Chain.objects.create(chain_id=4242, rpc_urls=other.rpc_url, confirmations=1)
        gale = make_collection(
            reference_models, "gale", [ada], chain_id=4242, contract_address=address,
            deployment_block=block,
        )  # fmt: skip
        # When Ada prepares the freeze, the admin works and sends nothing
        client = as_user(ada)
        response = client.post(
            f"{COLLECTIONS}{gale.pk}/change/", {**form_data(gale), "_freeze": "1"}, follow=True
        )
        assert shown_call(response.content.decode())["to"] == address
        assert sent_nothing(w3, w3.eth.block_number, address)
        # --print needs no key: the same transaction, for an external signer
        call_command("freeze_collection", "gale", "--print")
        printed = json.loads(capsys.readouterr().out)
        assert printed["data"] == shown_call(freeze_page(client, gale))["data"]
        assert (printed["to"], printed["value"], printed["chain_id"]) == (address, 0, 4242)
        # The command needs the admin key, and says which
        with pytest.raises(CommandError, match="DEPLOYER_KEY"):
            call_command("freeze_collection", "gale")
        # On the machine holding it, the command freezes the prepared config for real
        settings.DEPLOYER_KEY = DEPLOYER.private_key
        call_command("freeze_collection", "gale")
        gale.refresh_from_db()
        contract = bind(w3, address)
        assert contract.functions.configDigest().call() == bytes.fromhex(gale.config_digest[2:])
        assert gale.config_digest == gale.prepared_config_digest
        assert "gale: frozen, config digest" in capsys.readouterr().out
        assert "not frozen yet" not in freeze_page(client, gale)
        assert gale.config_digest in client.get(f"{COLLECTIONS}{gale.pk}/change/").content.decode()


# --- retry, approve, re-render ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "stage", "status", "actor", "args"),
    [
        (
            {"seed": ""},
            "seed commit",
            Status.CONFIRMED,
            "commit_seeds",
            lambda t: [t.collection_id, [t.pk]],
        ),
        ({}, "render", Status.SEED_COMMITTED, "render_token", lambda t: [t.pk]),
        ({"image_sha256": "ab" * 32}, "pin", Status.RENDERED, "pin_token", lambda t: [t.pk]),
        (
            {
                "image_sha256": "ab" * 32,
                "metadata_cid": "bafkreiexample",
                "metadata_sha256": "cd" * 32,
            },
            "publish",
            Status.PINNED,
            "publish_pending",
            lambda t: [t.collection_id],
        ),
    ],
    ids=["seed-commit", "render", "pin", "publish"],
)
def test_retry_sends_a_failed_token_back_to_the_stage_that_failed(
    ada: User,
    aurora: Collection,
    redis_url: str,
    django_capture_on_commit_callbacks: Any,
    fields: dict,
    stage: str,
    status: str,
    actor: str,
    args: Callable[[Token], list],
) -> None:
    failed = make_token(aurora, 1, Status.FAILED, failure_reason="it broke", **fields)
    published = make_token(aurora, 2, Status.PUBLISHED)
    response = act(
        as_user(ada), CHANGELIST, "retry", [failed, published], django_capture_on_commit_callbacks
    )

    failed.refresh_from_db()
    assert failed.status == status and failed.failure_reason == ""
    assert take_messages(actor, lambda a: a == args(failed)) == [args(failed)]
    assert f"Sent back to the stage that failed by ada: #1 ({stage} stage)." in notes(response)
    assert "Skipped aurora #2: it is published, not failed." in notes(response)
    event = failed.events.last()
    assert (event.status, event.detail) == (
        status,
        f"retry of the {stage} stage by ada (it had failed: it broke)",
    )
    assert Token.objects.get(pk=published.pk).status == Status.PUBLISHED


def rejected_token(reference_models: Path, ada: User, token_id: int = 1) -> Token:
    """A token the gate rejected for real: threshold 1.0 is out of any image's reach."""
    collection = make_collection(
        reference_models, "aurora", [ada], clip_threshold=1.0, max_attempts=1
    )
    token = make_token(collection, token_id)
    assert pipeline.run_render(token.pk) == Status.NEEDS_REVIEW
    token.refresh_from_db()
    return token


def test_approve_accepts_the_rejected_image_as_it_is_and_pins_it(
    reference_models: Path,
    render_cache: Path,
    ada: User,
    redis_url: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    token = rejected_token(reference_models, ada)
    [rejected] = (render_cache / "by-inputs").glob("*.png")
    client = as_user(ada)
    # Ada sees the image the gate rejected before she decides
    preview = client.get(f"{CHANGELIST}{token.pk}/render/0.png")
    assert preview.status_code == 200
    assert Image.open(io.BytesIO(preview.content)).tobytes() == Image.open(rejected).tobytes()
    page = client.get(f"{CHANGELIST}{token.pk}/change/").content.decode()
    assert "Approve attempt 0 as shown" in page

    response = act(client, CHANGELIST, "approve", [token], django_capture_on_commit_callbacks)
    assert any("Approval queued" in m and "#1 (attempt 0)" in m for m in notes(response))
    [args] = take_messages("approve_token", lambda a: a[0] == token.pk)
    assert args == [token.pk, "ada", 0]

    # the render worker runs it: a cache hit, nothing rendered
    renderer, _ = pipeline.load_models(token.collection, "cpu")
    renders_before = renderer.renders
    with django_capture_on_commit_callbacks(execute=True):
        tasks.approve_token.fn(*args)
    assert renderer.renders == renders_before
    token.refresh_from_db()
    assert token.status == Status.RENDERED and token.attempt == 0
    assert token.render_record["approved_by"] == "ada"
    assert "below the threshold" in token.render_record["gate_rejection"]
    assert token.render_record["clip"]["review"]["decision"] == "approved"
    assert token.clip_scores["scores"]["style"] < token.clip_scores["thresholds"]["style"]
    assert pipeline.render_cache_path(token, 0).read_bytes() == rejected.read_bytes()
    assert token.image_sha256 == hashlib.sha256(rejected.read_bytes()).hexdigest()
    assert token.image_embedding is not None
    assert token.events.last().detail.startswith("attempt 0 approved by ada despite the CLIP gate")
    assert take_messages("pin_token", lambda a: a == [token.pk]) == [[token.pk]]
    # the approval delivered again (its worker died before sending the pin): the pin again
    tasks.approve_token.fn(*args)
    assert take_messages("pin_token", lambda a: a == [token.pk]) == [[token.pk]]

    # the record is the one a passing render gets, plus the approval
    passing = make_token(make_collection(reference_models, "passing"), 1)
    pipeline.run_render(passing.pk)
    passing.refresh_from_db()
    assert set(passing.render_record) | {"approved_by", "approved_at", "gate_rejection"} == set(
        token.render_record
    )
    # and it pins like any other token; the metadata says a person accepted the scores
    assert pipeline.run_pin(token.pk) == Status.PINNED
    token.refresh_from_db()
    metadata = json.loads(LocalStore(Path(_ipfs_dir())).path_for(token.metadata_cid).read_bytes())
    assert metadata["provenance"]["clip"]["review"]["decision"] == "approved"
    assert "ada" not in json.dumps(metadata)


def _ipfs_dir() -> str:
    from django.conf import settings

    return str(settings.IPFS_STORE_DIR)


def test_approve_refuses_when_the_rejected_image_left_the_cache(
    reference_models: Path, render_cache: Path, ada: User
) -> None:
    token = rejected_token(reference_models, ada)
    for png in (render_cache / "by-inputs").glob("*.png"):
        png.unlink()
    assert review.approve(token.pk, "ada", 0) == Status.NEEDS_REVIEW
    token.refresh_from_db()
    assert token.status == Status.NEEDS_REVIEW
    assert "is not in the render cache" in token.failure_reason
    assert token.events.last().detail.startswith("approval of attempt 0 by ada refused")


def test_rerender_continues_the_attempt_counter(
    reference_models: Path,
    render_cache: Path,
    ada: User,
    redis_url: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    token = rejected_token(reference_models, ada)  # attempt 0 rejected
    client = as_user(ada)
    response = act(client, CHANGELIST, "rerender", [token], django_capture_on_commit_callbacks)
    assert any("Re-render queued" in m and "#1 (attempts 1..1)" in m for m in notes(response))
    [args] = take_messages("rerender_token", lambda a: a[0] == token.pk)
    assert args == [token.pk, "ada", 2]

    # the gate still rejects attempt 1: back in review, the counter where it stopped
    assert review.rerender(*args) == Status.NEEDS_REVIEW
    token.refresh_from_db()
    assert token.attempt == 2
    assert "re-render by ada" in token.failure_reason

    # another round, with a collection that now accepts anything (not frozen in this test)
    Collection.objects.filter(pk=token.collection_id).update(clip_threshold=-1.0)
    act(client, CHANGELIST, "rerender", [token], django_capture_on_commit_callbacks)
    [args] = take_messages("rerender_token", lambda a: a[0] == token.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.rerender_token.fn(*args) is None
    token.refresh_from_db()
    assert token.status == Status.RENDERED and token.attempt == 2
    assert token.render_record["torch_seed"] == torch_seed_for(bytes.fromhex(SEED[2:]), 2)
    assert token.render_record["rerendered_by"] == "ada"
    assert take_messages("pin_token", lambda a: a == [token.pk]) == [[token.pk]]
    tasks.rerender_token.fn(*args)  # delivered again: the pin again, nothing rendered
    assert take_messages("pin_token", lambda a: a == [token.pk]) == [[token.pk]]
    assert Token.objects.get(pk=token.pk).attempt == 2
    details = [e.detail for e in token.events.all()]
    assert "re-render by ada: attempts 1..1" in details
    assert "re-render by ada: attempts 2..2" in details


def test_a_rerender_delivered_while_another_run_renders_the_token_comes_back_later(
    aurora: Collection, redis_url: str
) -> None:
    # Given a re-render's first delivery rendering the token, its lease live
    token = make_token(
        aurora, 1, Status.RENDERING, attempt=1, render_lease_owner="host:1:first",
        render_lease_expires=timezone.now() + timedelta(seconds=60),
    )  # fmt: skip
    # When the message is delivered a second time
    tasks.rerender_token.fn(token.pk, "ada", 2)
    # Then it stands down, sends itself again for when the lease lapses, and pins nothing
    assert take_messages("rerender_token", lambda a: a[0] == token.pk) == [[token.pk, "ada", 2]]
    assert take_messages("pin_token", lambda a: a == [token.pk]) == []
    token.refresh_from_db()
    assert (token.status, token.render_lease_owner) == (Status.RENDERING, "host:1:first")


def test_approve_and_rerender_skip_tokens_not_in_review_and_paused_collections(
    ada: User, aurora: Collection, redis_url: str, django_capture_on_commit_callbacks: Any
) -> None:
    rendering = make_token(aurora, 1, Status.RENDERING)
    in_review = make_token(aurora, 2, Status.NEEDS_REVIEW, attempt=2)
    Collection.objects.filter(pk=aurora.pk).update(paused=True)
    client = as_user(ada)
    response = act(
        client, CHANGELIST, "rerender", [rendering, in_review], django_capture_on_commit_callbacks
    )
    assert (
        "Skipped aurora #1: it is rendering, not in review, aurora #2: collection aurora is "
        "paused; unpause it to render again." in notes(response)
    )
    assert take_messages("rerender_token", lambda a: a[0] in (rendering.pk, in_review.pk)) == []


# --- pause --------------------------------------------------------------------------------------


def test_pause_stops_nothing_already_done_and_is_shown(
    ada: User, aurora: Collection, redis_url: str, django_capture_on_commit_callbacks: Any
) -> None:
    published = make_token(aurora, 1, Status.PUBLISHED)
    waiting = make_token(aurora, 2, Status.SEED_COMMITTED)
    client = as_user(ada)
    response = act(client, COLLECTIONS, "pause", [aurora], django_capture_on_commit_callbacks)
    assert any(
        m.startswith("Paused by ada: aurora: no token of it starts") for m in notes(response)
    )
    assert Collection.objects.get(pk=aurora.pk).paused
    assert Token.objects.get(pk=published.pk).status == Status.PUBLISHED
    assert Token.objects.get(pk=waiting.pk).status == Status.SEED_COMMITTED
    assert any(m.startswith("Paused: aurora.") for m in notes(client.get(CHANGELIST)))
    row = client.get(COLLECTIONS).content.decode()
    assert 'alt="True"' in row  # the paused column

    response = act(client, COLLECTIONS, "unpause", [aurora], django_capture_on_commit_callbacks)
    assert any("aurora (1 token(s) sent to render)" in m for m in notes(response))
    assert not Collection.objects.get(pk=aurora.pk).paused
    assert take_messages("render_token", lambda a: a == [waiting.pk]) == [[waiting.pk]]
    take_messages("publish_pending", lambda a: a == [aurora.pk])


# --- the token list -----------------------------------------------------------------------------


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_token_list_shows_thumbnails_scores_and_the_stage_history(
    ada: User, bob: User, aurora: Collection, render_cache: Path
) -> None:
    from django.conf import settings

    image = png((200, 30, 30))
    cid = LocalStore(Path(settings.IPFS_STORE_DIR)).add(image)
    clip = {
        "model_fingerprint": "sha256:x",
        "scores": {"style": 0.31, "uniqueness_max": 0.5},
        "thresholds": {"style": 0.25, "uniqueness_max": 0.9},
    }
    pinned = make_token(
        aurora, 1, Status.PINNED, image_cid=cid, image_sha256="ab" * 32, clip_scores=clip
    )
    rendered = make_token(
        aurora, 2, Status.RENDERED, image_sha256="cd" * 32, attempt=1, clip_scores=clip
    )
    rendered_png = pipeline.render_cache_path(rendered, 1)
    rendered_png.parent.mkdir(parents=True)
    rendered_png.write_bytes(png((30, 30, 200)))
    events.record([pinned.pk], Status.CONFIRMED, "mint seen")
    events.record([pinned.pk], Status.PINNED, f"image {cid}")

    client = as_user(ada)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    html = page.content.decode()
    assert f'<img src="/ipfs/{cid}"' in html
    render_url = f"{CHANGELIST}{rendered.pk}/render/1.png"
    assert f'<img src="{render_url}"' in html
    assert "style 0.3100 (needs ≥ 0.2500)" in html and "2 of 2 (accepted: attempt 1)" in html
    assert client.get(f"/ipfs/{cid}").content == image
    served = client.get(render_url)
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert served.getvalue() == rendered_png.read_bytes()
    assert as_user(bob).get(render_url).status_code == 404

    detail = client.get(f"{CHANGELIST}{pinned.pk}/change/").content.decode()
    assert "stage history" in detail.lower()
    assert "mint seen" in detail and f"image {cid}" in detail
    # filtering by status keeps only those tokens
    only = client.get(CHANGELIST, {"status__exact": Status.RENDERED}).context["cl"].result_list
    assert list(only) == [rendered]
    assert TokenEvent.objects.filter(token=pinned).count() == 2
