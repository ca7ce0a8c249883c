"""Changing a collection's royalty (``manage.py set_royalty``, chain/royalty.py) on a real anvil:
the contract pays the new royalty and its contract metadata says the same, sent with the admin
key or printed for a multisig, or prepared on the sale page; and its payee (chain/payee.py), the
admin's call too, prepared on the sale page.

Personas: the deployer (anvil #0) is the contract admin; Dora is the new royalty receiver.
"""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, Anvil
from chain.contract import bind, deploy_contract
from chain.freeze import prepare_freeze
from chain.models import Chain
from generation.models import Collection, PinnedContent
from tests.test_admin import as_user, make_collection, notes
from tests.test_deploy_command import pinned

pytestmark = pytest.mark.django_db(transaction=True)
ADMIN, DORA = ANVIL_ACCOUNTS[0], ANVIL_ACCOUNTS[4]
ROYALTY_KEYS = {"seller_fee_basis_points", "fee_recipient"}


@pytest.fixture(autouse=True)
def deployment_file(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.DEPLOYMENT_FILE = tmp_path / "deployment.json"
    return settings.DEPLOYMENT_FILE


def deployed(anvil: Anvil, slug: str) -> Collection:
    """A frozen collection paying 7.5 % to the deployer."""
    call_command("deploy_collection", "--rpc-url", anvil.rpc_url, "--slug", slug,
                 "--royalty-bps", "750")  # fmt: skip
    return Collection.objects.get(slug=slug)


def set_royalty(anvil: Anvil, *args: str) -> str:
    out = StringIO()
    call_command("set_royalty", *args, "--rpc-url", anvil.rpc_url, stdout=out, stderr=StringIO())
    return out.getvalue()


def on_the_sale_page(anvil: Anvil, slug: str, manager: User) -> tuple[Collection, Client, str]:
    """A frozen collection managed by ``manager``, her client, and its sale page's path."""
    collection = deployed(anvil, slug)
    collection.managers.add(manager)
    return collection, as_user(manager), f"/admin/sales/saleaction/sale/{collection.pk}/"


def document_at(client: Client, contract: Any) -> dict[str, Any]:
    return json.loads(pinned(client, contract.functions.contractURI().call()))


def test_a_new_royalty_is_paid_by_the_contract_and_said_by_its_contract_metadata(
    anvil: Anvil, w3: Web3, client: Client
) -> None:
    # Given a frozen collection paying 7.5 % to its deployer
    collection = deployed(anvil, "dreams")
    contract = bind(w3, collection.contract_address)
    before = document_at(client, contract)
    assert (before["seller_fee_basis_points"], before["fee_recipient"]) == (750, ADMIN.address)
    # When the admin makes it 5 % to Dora
    out = set_royalty(anvil, "dreams", DORA.address.lower(), "500")
    # Then the contract pays it, and the contract metadata says it, and nothing else changed
    assert contract.functions.royaltyInfo(1, 10_000).call() == [DORA.address, 500]
    uri = contract.functions.contractURI().call()
    assert document_at(client, contract) == before | {
        "seller_fee_basis_points": 500,
        "fee_recipient": DORA.address,
    }
    collection.refresh_from_db()
    assert collection.contract_uri == uri
    # pinned on each target, in the ledger the pin check reads
    assert (
        PinnedContent.objects.filter(cid=uri.removeprefix("ipfs://")).get().collection == collection
    )
    assert "the contract pays 500 basis points to " + DORA.address in out
    assert "sent setDefaultRoyalty 0x" in out and ", setContractURI 0x" in out

    # When the royalty goes to nothing, the metadata drops its royalty fields
    set_royalty(anvil, "dreams", DORA.address, "0")
    assert contract.functions.royaltyInfo(1, 10_000).call()[1] == 0
    assert document_at(client, contract) == {
        k: v for k, v in before.items() if k not in ROYALTY_KEYS
    }
    # and asking again sends nothing
    block = w3.eth.block_number
    assert "no royalty" in set_royalty(anvil, "dreams", DORA.address, "0")
    assert "nothing to send" in set_royalty(anvil, "dreams")
    assert w3.eth.block_number == block


def test_a_multisig_sends_the_printed_transactions_and_the_command_then_records_them(
    anvil: Anvil, w3: Web3, client: Client
) -> None:
    collection = deployed(anvil, "council")
    contract = bind(w3, collection.contract_address)
    before_uri = collection.contract_uri
    # When the admin's transactions are printed for an external signer
    block = w3.eth.block_number
    calls = json.loads(set_royalty(anvil, "council", DORA.address, "250", "--print"))
    # Then nothing was sent, and they are the two the contract needs, in order
    assert w3.eth.block_number == block
    assert [c["function"] for c in calls] == [
        "setDefaultRoyalty(address,uint96)",
        "setContractURI(string)",
    ]
    assert calls[0]["args"] == [DORA.address, 250]
    assert all(c["to"] == contract.address and c["value"] == 0 for c in calls)
    assert calls[1]["cast"].startswith(
        f'cast send --chain 31337 {contract.address} "setContractURI'
    )
    # the new metadata is pinned already, for the signers to check
    new_uri = calls[1]["args"][0]
    assert json.loads(pinned(client, new_uri))["seller_fee_basis_points"] == 250
    # When the multisig sends them (anvil unlocks the admin's account, as a signer would sign)
    for call in calls:
        tx = w3.eth.send_transaction(
            {"from": ADMIN.address, "to": call["to"], "data": call["data"]}
        )
        assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    collection.refresh_from_db()
    assert collection.contract_uri == before_uri  # not seen here yet
    # Then the command without a royalty finds nothing to send and records the chain's URI
    out = set_royalty(anvil, "council")
    assert "nothing to send" in out and new_uri in out
    collection.refresh_from_db()
    assert collection.contract_uri == new_uri
    assert document_at(client, contract)["fee_recipient"] == DORA.address


def test_the_sale_page_shows_the_royalty_and_says_when_the_contract_metadata_disagrees(
    anvil: Anvil, w3: Web3, ada: User
) -> None:
    collection, client, page = on_the_sale_page(anvil, "market", ada)

    def royalty_row() -> str:
        html = client.get(page).content.decode()
        return html[html.index('<td id="royalty">') :].split("</td>")[0]

    # Given the contract and its metadata agreeing on 7.5 % to the deployer
    assert royalty_row().endswith(f"7.50 % to {ADMIN.address}")
    # When the admin changes the royalty some other way (a multisig sending setDefaultRoyalty
    # alone), the page says the contract metadata disagrees, and what to run
    contract = bind(w3, collection.contract_address)
    tx = contract.functions.setDefaultRoyalty(DORA.address, 300).transact({"from": ADMIN.address})
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    row = royalty_row()
    assert f"3.00 % to {DORA.address}" in row
    assert (
        f"the contract metadata says 7.50 % to {ADMIN.address}: prepare the transaction that "
        "brings it in line below, for the contract admin to send (or the admin runs manage.py "
        "set_royalty market"
    ) in row
    # Then once that has run, they agree again
    assert "sent setContractURI 0x" in set_royalty(anvil, "market")
    assert royalty_row().endswith(f"3.00 % to {DORA.address}")


def test_before_the_freeze_only_the_royalty_is_sent_and_a_prepared_freeze_is_refused(
    anvil: Anvil, w3: Web3, reference_models: Path, ada: User
) -> None:
    # Given a deployed collection not frozen yet
    address, block = deploy_contract(
        w3, ADMIN.private_key, name="Aurora", symbol="AUR", price_wei=10**16, max_supply=10
    )
    Chain.objects.update_or_create(chain_id=31337, defaults={"rpc_urls": anvil.rpc_url})
    collection = make_collection(
        reference_models, "aurora", [ada], contract_address=address, deployment_block=block
    )
    contract = bind(w3, address)
    # When the royalty changes: only setDefaultRoyalty goes (there is no contract metadata yet)
    out = set_royalty(anvil, "aurora", DORA.address, "300")
    assert "sent setDefaultRoyalty 0x" in out and "setContractURI" not in out
    assert contract.functions.royaltyInfo(1, 10_000).call() == [DORA.address, 300]
    assert contract.functions.contractURI().call() == ""
    # and the freeze, prepared now, writes the royalty the contract pays
    call = prepare_freeze(collection, w3)
    prepared = json.loads(pinned(Client(), call.contract_uri))
    assert (prepared["seller_fee_basis_points"], prepared["fee_recipient"]) == (300, DORA.address)
    # Once a freeze is prepared, its metadata would go stale: refused, nothing sent
    block = w3.eth.block_number
    with pytest.raises(CommandError, match="withdraw the prepared freeze"):
        set_royalty(anvil, "aurora", DORA.address, "200")
    assert w3.eth.block_number == block


def sale_page_calls(html: str) -> list[tuple[str, str]]:
    """The admin's transactions the sale page prepared: (function, calldata) each, in order."""
    table = html[html.index('<table id="admin-calls">') :].split("</table>")[0]
    functions = re.findall(r"<td><code>([a-zA-Z]+\([a-z0-9,]*\))</code>", table)
    return list(zip(functions, re.findall(r'class="calldata">(0x[0-9a-f]+)<', table), strict=True))


def sent_by_the_multisig(w3: Web3, to: str, calls: list[tuple[str, str]]) -> None:
    """The contract admin sends the prepared calldata as it is (anvil unlocks its account, as
    the multisig's signers would sign)."""
    for _, data in calls:
        tx = w3.eth.send_transaction({"from": ADMIN.address, "to": to, "data": data})
        assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def test_a_manager_prepares_a_royalty_change_on_the_sale_page_and_records_it_once_sent(
    anvil: Anvil, w3: Web3, ada: User
) -> None:
    collection, client, page = on_the_sale_page(anvil, "atelier", ada)
    contract = bind(w3, collection.contract_address)
    old_uri = collection.contract_uri
    # A bad royalty is refused, naming what is wrong; nothing is pinned or sent
    block, pins = w3.eth.block_number, PinnedContent.objects.count()
    refused = client.post(page, {"_royalty": "1", "receiver": "0x1234", "basis_points": "500"})
    assert "the royalty receiver &#x27;0x1234&#x27; is not a non-zero address" in (
        refused.content.decode()
    )
    refused = client.post(page, {"_royalty": "1", "receiver": DORA.address, "basis_points": "2%"})
    assert "is not a whole number of basis points" in refused.content.decode()
    assert (w3.eth.block_number, PinnedContent.objects.count()) == (block, pins)

    # When Ada asks for 2.5 % to Dora, the page gives the contract admin's two transactions,
    # and sends nothing
    response = client.post(
        page, {"_royalty": "1", "receiver": DORA.address.lower(), "basis_points": "250"}
    )
    calls = sale_page_calls(response.content.decode())
    assert [function for function, _ in calls] == [
        "setDefaultRoyalty(address,uint96)",
        "setContractURI(string)",
    ]
    assert w3.eth.block_number == block
    # Then once the multisig has sent them, the contract pays it and its metadata says so
    sent_by_the_multisig(w3, contract.address, calls)
    assert contract.functions.royaltyInfo(1, 10_000).call() == [DORA.address, 250]
    new_uri = contract.functions.contractURI().call()
    assert json.loads(pinned(Client(), new_uri))["seller_fee_basis_points"] == 250
    html = client.get(page).content.decode()
    assert f"2.50 % to {DORA.address}" in html and 'id="royalty-note"' not in html
    # and the page says the chain's contract metadata is not the one recorded, until Ada
    # records it
    assert 'id="contract-uri-note"' in html
    collection.refresh_from_db()
    assert collection.contract_uri == old_uri
    assert client.post(page, {"_record_contract_uri": "1"}).status_code == 302
    collection.refresh_from_db()
    assert collection.contract_uri == new_uri
    assert 'id="contract-uri-note"' not in client.get(page).content.decode()

    # When the royalty changes some other way (setDefaultRoyalty alone), the page's fix
    # prepares the one transaction that brings the metadata in line
    tx = contract.functions.setDefaultRoyalty(ADMIN.address, 100).transact({"from": ADMIN.address})
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    assert 'id="royalty-note"' in client.get(page).content.decode()
    calls = sale_page_calls(client.post(page, {"_royalty_align": "1"}).content.decode())
    assert [function for function, _ in calls] == ["setContractURI(string)"]
    sent_by_the_multisig(w3, contract.address, calls)
    assert 'id="royalty-note"' not in client.get(page).content.decode()
    document = json.loads(pinned(Client(), contract.functions.contractURI().call()))
    assert document["seller_fee_basis_points"] == 100

    # A contract URI the admin set by hand, to a document that is not this collection's
    # contract metadata, is not recorded, and the page says why
    recorded = Collection.objects.get(pk=collection.pk).contract_uri
    tx = contract.functions.setContractURI("https://example.com/contract.json").transact(
        {"from": ADMIN.address}
    )
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    refused = client.post(page, {"_record_contract_uri": "1"}, follow=True)
    assert any(
        "not recorded: atelier: the contract metadata is at 'https://example.com/contract.json', "
        "not an ipfs:// URI this backend pinned" in note
        for note in notes(refused)
    ), notes(refused)
    assert Collection.objects.get(pk=collection.pk).contract_uri == recorded


def test_a_manager_prepares_a_payee_change_for_the_contract_admin_on_the_sale_page(
    anvil: Anvil, w3: Web3, ada: User
) -> None:
    collection, client, page = on_the_sale_page(anvil, "proceeds", ada)
    contract = bind(w3, collection.contract_address)
    block = w3.eth.block_number
    # The zero address, or one the contract pays already, prepares nothing, and says why
    zero = "0x" + "00" * 20
    refused = client.post(page, {"_payee": "1", "payee": zero}).content.decode()
    assert f"the payee &#x27;{zero}&#x27; is not a non-zero address" in refused
    same = client.post(page, {"_payee": "1", "payee": contract.functions.payee().call()})
    assert "proceeds: nothing to send: the contract pays that payee already" in notes(same)
    # When Ada asks for Dora, the page gives the admin's setPayee, and sends nothing
    response = client.post(page, {"_payee": "1", "payee": DORA.address.lower()})
    calls = sale_page_calls(response.content.decode())
    assert [function for function, _ in calls] == ["setPayee(address)"]
    assert w3.eth.block_number == block
    # Then once the multisig has sent it, withdrawals go to Dora
    sent_by_the_multisig(w3, contract.address, calls)
    assert contract.functions.payee().call() == DORA.address
    assert f"to <code>{DORA.address}</code>" in client.get(page).content.decode()


BAD = [
    (["0x1234", "500"], "the royalty receiver '0x1234' is not a non-zero address"),
    (["0x" + "00" * 20, "500"], "is not a non-zero address"),
    ([DORA.address, "10001"], "from 0 to 10000 basis points (100 %), not 10001"),
    ([DORA.address, "-1"], "from 0 to 10000 basis points"),
    ([DORA.address, "5%"], "the royalty '5%' is not a whole number of basis points"),
    ([DORA.address], "give the royalty as RECEIVER BASIS_POINTS, or nothing"),
]


def test_a_bad_royalty_is_refused_with_what_is_wrong_and_nothing_sent(
    anvil: Anvil, w3: Web3
) -> None:
    collection = deployed(anvil, "strict")
    uri, block = collection.contract_uri, w3.eth.block_number
    pins = PinnedContent.objects.count()
    for args, problem in BAD:
        with pytest.raises(CommandError) as info:
            set_royalty(anvil, "strict", *args)
        assert problem in str(info.value), args
    assert (w3.eth.block_number, PinnedContent.objects.count()) == (block, pins)
    assert bind(w3, collection.contract_address).functions.contractURI().call() == uri


def test_an_unknown_collection_is_named(anvil: Anvil) -> None:
    with pytest.raises(CommandError, match="no collection with the slug 'nowhere'"):
        set_royalty(anvil, "nowhere")
