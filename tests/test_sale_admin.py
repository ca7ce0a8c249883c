"""Running a sale from the admin: a manager schedules phases (an allowlist among them), pauses
and unpauses minting, sets the base price, airdrops from the reserve and withdraws, and the
sale worker sends each transaction through the sender on its own queue.

Real components: anvil, PostgreSQL, the Redis broker and a real Dramatiq worker in this process
serving only the ``sales`` queue; the web process (the test client) holds no key.
Personas: Ada manages Aurora, Bob manages Borealis; Colin collects; Paula is the payee.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from dramatiq import Worker
from web3 import Web3

import sales.tasks  # noqa: F401  (declares the sale worker's actor on the broker)
from chain.anvil import ANVIL_ACCOUNTS, Anvil
from chain.contract import bind, deploy_contract, freeze_config, send_and_wait
from chain.models import Chain
from generation.models import Collection
from generation.stages import SALES_QUEUE
from ipfs.store import LocalStore
from sales.allowlist import Entry
from sales.building import create_allowlist
from sales.models import SaleAction, SalePhase
from tests.test_admin import as_user, make_collection, notes
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.django_db(transaction=True)

DEPLOYER, COLIN, _, PAULA, DORA, SALES = ANVIL_ACCOUNTS[:6]
PRICE = 10**16
ACTIONS = "/admin/sales/saleaction/"
PHASES = "/admin/sales/salephase/"


@pytest.fixture
def broker(redis_url: str) -> Iterator[dramatiq.Broker]:
    broker = dramatiq.get_broker()
    broker.flush(SALES_QUEUE)
    yield broker
    broker.flush(SALES_QUEUE)


@pytest.fixture
def aurora(w3: Web3, anvil: Anvil, reference_models: Path, ada: User) -> Collection:
    """Aurora's contract: 10 tokens, 3 of them reserved, frozen so it sells."""
    address, block = deploy_contract(
        w3, DEPLOYER.private_key, name="Aurora", symbol="AUR", price_wei=PRICE, max_supply=10,
        reserve=3, payee=PAULA.address,
    )  # fmt: skip
    freeze_config(w3, DEPLOYER.private_key, address, b"\x01" * 32, "ipfs://aurora")
    # the sale worker's account (anvil #5 on the embedded chain) holds SALES_ROLE, nothing more
    contract = bind(w3, address)
    sales_role = contract.functions.SALES_ROLE().call()
    send_and_wait(w3, DEPLOYER.private_key, contract.functions.grantRole(sales_role, SALES.address))
    Chain.objects.update_or_create(chain_id=31337, defaults={"rpc_urls": anvil.rpc_url})
    return make_collection(
        reference_models, "aurora", [ada], contract_address=address, deployment_block=block
    )


@pytest.fixture
def borealis(reference_models: Path, bob: User) -> Collection:
    return make_collection(reference_models, "borealis", [bob])


def run_admin_worker(broker: dramatiq.Broker, timeout: float = 120) -> None:
    """A real worker on the admin queue until no action is waiting or under way."""
    worker = Worker(broker, queues={SALES_QUEUE}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        deadline = time.monotonic() + timeout
        unfinished = (SaleAction.State.QUEUED, SaleAction.State.SENDING)
        while SaleAction.objects.filter(state__in=unfinished).exists():
            assert time.monotonic() < deadline, "the sale worker did not finish in time"
            time.sleep(0.2)
    finally:
        worker.stop()


def sale_page(collection: Collection) -> str:
    return f"{ACTIONS}sale/{collection.pk}/"


def test_a_manager_schedules_an_allowlist_and_a_public_phase_that_the_worker_sends(
    w3: Web3, aurora: Collection, ada: User, broker: dramatiq.Broker, store: LocalStore
) -> None:
    # Given Ada's allowlist and two phases: the allowlist, then a public Dutch auction
    allowlist = create_allowlist(aurora, "early", [Entry(COLIN.address, 2, 1)])
    start = timezone.now() + timedelta(hours=1)
    first = SalePhase.objects.create(
        collection=aurora, position=0, name="Early access", starts_at=start,
        ends_at=start + timedelta(hours=1), price_wei=PRICE, allowlist=allowlist,
    )  # fmt: skip
    second = SalePhase.objects.create(
        collection=aurora, position=1, name="Public", kind=SalePhase.Kind.DUTCH,
        starts_at=start + timedelta(hours=1), ends_at=start + timedelta(hours=3),
        price_wei=5 * PRICE, floor_price_wei=PRICE, drop_per_step_wei=PRICE, step_seconds=600,
        max_per_wallet=2,
    )  # fmt: skip
    client = as_user(ada)

    # When she schedules both from the phase list
    response = client.post(
        PHASES,
        {"action": "schedule", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert sum("queued for the sale worker" in m for m in notes(response)) == 2
    run_admin_worker(broker)

    # Then the contract holds both phases exactly, and each action shows its transaction
    contract = bind(w3, aurora.contract_address)
    assert contract.functions.phaseCount().call() == 2
    assert contract.functions.scheduledPhase(0).call() == first.as_struct()
    assert contract.functions.scheduledPhase(1).call() == second.as_struct()
    done = SaleAction.objects.filter(collection=aurora, state=SaleAction.State.DONE)
    assert done.count() == 2 and all(a.tx_hash and a.requested_by == "ada" for a in done)
    listed = client.get(ACTIONS).content.decode()
    assert all(a.tx_hash in listed for a in done)
    # and the phase list says each is on chain
    assert client.get(PHASES).content.decode().count("Done (") == 2
    # and once it opens, the mint page calls the phase by the manager's name
    w3.provider.make_request("evm_mine", [first.as_struct()[0]])  # type: ignore[list-item]
    assert "Early access (Allowlist)" in client.get(f"/c/{aurora.slug}/").content.decode()


def test_a_phase_that_cannot_be_scheduled_is_refused_with_the_reason(
    aurora: Collection, ada: User, broker: dramatiq.Broker
) -> None:
    past = timezone.now() - timedelta(hours=2)
    ended = SalePhase.objects.create(
        collection=aurora, position=0, name="Over", starts_at=past,
        ends_at=past + timedelta(hours=1), price_wei=PRICE,
    )  # fmt: skip
    later = timezone.now() + timedelta(hours=2)
    gap = SalePhase.objects.create(
        collection=aurora, position=2, name="Gap", starts_at=later,
        ends_at=later + timedelta(hours=1), price_wei=PRICE,
    )  # fmt: skip
    dutch = SalePhase.objects.create(
        collection=aurora, position=1, name="Bad auction", kind=SalePhase.Kind.DUTCH,
        starts_at=later - timedelta(minutes=30), ends_at=later, price_wei=PRICE,
        floor_price_wei=2 * PRICE, step_seconds=60, drop_per_step_wei=1,
    )  # fmt: skip
    response = as_user(ada).post(
        PHASES,
        {"action": "schedule", "_selected_action": [ended.pk, gap.pk, dutch.pk]},
        follow=True,
    )
    shown = " ".join(notes(response))
    assert "ended at" in shown and "nothing to sell" in shown
    assert "positions run from 0 without gaps" in shown
    assert "the floor must be below the start price" in shown
    assert not SaleAction.objects.exists()


def test_the_sale_page_pauses_airdrops_prices_and_withdraws_through_the_worker(
    w3: Web3, aurora: Collection, ada: User, broker: dramatiq.Broker
) -> None:
    contract = bind(w3, aurora.contract_address)
    f = contract.functions
    send_and_wait(w3, COLIN.private_key, f.mint(2), 2 * PRICE)
    client = as_user(ada)
    page = sale_page(aurora)
    shown = client.get(page).content.decode()
    assert "2 of 10 (5 left to sell)" in shown and "0 of 3 minted" in shown

    # Pause: minting stops on-chain. Until the sale worker sends it, /metrics shows it waiting
    client.post(page, {"_pause": "1"})
    samples = scrape()
    assert value(samples, "mint_sale_actions", state="queued") == 1
    assert value(samples, "mint_oldest_unsent_sale_action_age_seconds") > 0
    run_admin_worker(broker)
    assert f.paused().call() is True
    assert "<strong>paused</strong>" in client.get(page).content.decode()

    # Airdrop from the reserve, while paused
    client.post(page, {"_airdrop": "1", "recipients": f"{DORA.address},2\n{COLIN.address},1"})
    run_admin_worker(broker)
    assert [f.ownerOf(i).call() for i in (3, 4, 5)] == [DORA.address, DORA.address, COLIN.address]
    assert f.reserve().call() == [3, 3]

    # One more than the reserve holds: the contract refuses, and the page says why
    client.post(page, {"_airdrop": "1", "recipients": f"{DORA.address},1"})
    run_admin_worker(broker)
    failed = SaleAction.objects.get(state=SaleAction.State.FAILED)
    assert "ReserveExceeded" in failed.error
    samples = scrape()
    assert value(samples, "mint_sale_actions", state="failed") == 1
    assert value(samples, "mint_sale_actions", state="done") == 2
    assert value(samples, "mint_oldest_unsent_sale_action_age_seconds") == 0
    assert "ReserveExceeded" in client.get(page).content.decode()

    # A bad line is refused on the form, naming it; nothing is asked of the worker
    before = SaleAction.objects.count()
    response = client.post(
        page,
        {"_airdrop": "1", "recipients": f"{DORA.address},1\nnot-an-address,1\n{COLIN.address},x"},
    )
    text = response.content.decode()
    assert "line 2" in text and "quantity &#x27;x&#x27; is not a whole number" in text
    assert SaleAction.objects.count() == before

    # Base price, unpause, withdraw
    client.post(page, {"_set_price": "1", "price_eth": "0.02"})
    client.post(page, {"_unpause": "1"})
    client.post(page, {"_withdraw": "1"})
    paula = w3.eth.get_balance(PAULA.address)
    run_admin_worker(broker)
    assert f.price().call() == 2 * PRICE
    assert f.paused().call() is False
    assert w3.eth.get_balance(PAULA.address) == paula + 2 * PRICE
    assert w3.eth.get_balance(contract.address) == 0
    kinds = list(
        SaleAction.objects.filter(state=SaleAction.State.DONE).values_list("kind", flat=True)
    )
    assert sorted(kinds) == sorted(["pause", "airdrop", "set_price", "unpause", "withdraw"])
    assert all(a.tx_hash for a in SaleAction.objects.filter(state=SaleAction.State.DONE))


def test_a_manager_neither_sees_nor_runs_another_collections_sale(
    aurora: Collection, borealis: Collection, bob: User, broker: dramatiq.Broker
) -> None:
    SalePhase.objects.create(
        collection=aurora, position=0, name="Secret", starts_at=timezone.now(),
        ends_at=timezone.now() + timedelta(days=1), price_wei=PRICE,
    )  # fmt: skip
    client = as_user(bob)
    assert client.get(sale_page(aurora)).status_code == 404
    assert client.post(sale_page(aurora), {"_pause": "1"}).status_code == 404
    assert "Secret" not in client.get(PHASES).content.decode()
    assert not SaleAction.objects.exists()
