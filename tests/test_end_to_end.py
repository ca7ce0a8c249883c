"""The walking skeleton end to end on real components.

Given a real anvil (blocks every 0.5 s), a real broker (Redis; RabbitMQ in ``make
test-rabbitmq``), real Dramatiq worker processes,
the real listener daemon and the reference models,
when a collector mints 3 tokens in two transactions,
then every tokenURI gets set, and each token checks out against the chain's own data, with
checks written here rather than borrowed from the project's helpers.

The same run carries the bad inputs: a mint on a contract the backend does not know, and a
collection whose model is corrupt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import override_settings
from eth_account import Account
from eth_utils import keccak
from multiformats import CID, multihash
from PIL import Image
from web3 import Web3

from chain.anvil import ANVIL_ACCOUNTS, Anvil, free_port, start_anvil
from chain.contract import bind, deploy_contract, freeze_config
from chain.deployment import CollectionSpec, deploy_collection
from chain.models import Chain
from chain.vrf import fulfil_pending
from generation.models import Collection, Token, TokenEvent
from tests.conftest import database_url

# django_db makes pytest-django create the test database; the stack fixture commits its rows
# outside the per-test transaction, so every test sees them and none can undo them.
pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.django_db]

REPO = Path(__file__).resolve().parent.parent
DEPLOYER, COLLECTOR = ANVIL_ACCOUNTS[0], ANVIL_ACCOUNTS[3]
FUTURE_DELAY = 4
PRICE = 10**16
TIMEOUT = 300.0


@dataclass
class Stack:
    w3: Web3
    anvil: Anvil
    good: Collection
    broken: Collection
    future: Collection  # future-block seeds: the block FUTURE_DELAY blocks after the mint
    vrf: Collection  # Chainlink VRF seeds, the mock coordinator fulfilled by a stand-in node
    stranger: str
    gateway: str
    web_url: str
    mint_blocks: dict[int, int] = field(default_factory=dict)
    rows: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    stages: dict[tuple[str, int], list[str]] = field(default_factory=dict)


def _mint(w3: Web3, address: str, quantity: int) -> int:
    contract = bind(w3, address)
    account = Account.from_key(COLLECTOR.private_key)
    tx = contract.functions.mint(quantity).build_transaction(
        {
            "from": account.address,
            "value": PRICE * quantity,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        }
    )
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    assert receipt["status"] == 1
    return receipt["blockNumber"]


def _corrupt_copy(models: Path, dest: Path) -> Path:
    shutil.copytree(models / "diffusion", dest)
    for weights in dest.rglob("*.safetensors"):
        if weights.parent.name == "unet":
            weights.write_bytes(b"this is not a safetensors file")
    return dest


def _start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen:
    out = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), *argv],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def stack(
    django_db_setup: None,
    django_db_blocker: Any,
    redis_url: str,
    reference_models: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e")
    logs = tmp / "logs"
    logs.mkdir()
    store = settings.IPFS_STORE_DIR  # shared with this process, which pins collection documents
    web_port = free_port()
    anvil = start_anvil(block_time=0.5)
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    processes: list[subprocess.Popen] = []
    stopping = threading.Event()
    with django_db_blocker.unblock():
        good = deploy_collection(
            w3, DEPLOYER.private_key, CollectionSpec(slug="e2e", steps=2, price_wei=PRICE)
        )
        corrupt = _corrupt_copy(reference_models, tmp / "corrupt-diffusion")
        with override_settings(MODEL_ROOTS=[reference_models, tmp]):  # an allowed folder
            broken = deploy_collection(
                w3,
                DEPLOYER.private_key,
                CollectionSpec(
                    slug="broken", name="Broken", price_wei=PRICE, model_dir=str(corrupt)
                ),
            )
        future = deploy_collection(
            w3,
            DEPLOYER.private_key,
            CollectionSpec(slug="e2e-future", steps=2, price_wei=PRICE, seed_delay=FUTURE_DELAY),
        )
        vrf = deploy_collection(
            w3,
            DEPLOYER.private_key,
            CollectionSpec(slug="e2e-vrf", steps=2, price_wei=PRICE, vrf_coordinator="local"),
        )
        stranger, _ = deploy_contract(
            w3, DEPLOYER.private_key, name="Stranger", symbol="STR", price_wei=PRICE, max_supply=10
        )
        freeze_config(w3, DEPLOYER.private_key, stranger, b"\x01" * 32, "ipfs://stranger")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mintsite.settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url,
            "BROKER_URL": settings.BROKER_URL,  # RabbitMQ in make test-rabbitmq, else Redis
            "DRAMATIQ_NAMESPACE": f"mint-e2e-{os.getpid()}",
            "RPC_URL": anvil.rpc_url,
            "IPFS_STORE_DIR": str(store),
            "RENDER_CACHE_DIR": str(settings.RENDER_CACHE_DIR),
            "RENDER_DEVICE": "cpu",
            "CHAIN_POLL_INTERVAL": "0.25",
            "SEED_BLOCK_POLL": "0.5",
            "WEB_URL": f"http://127.0.0.1:{web_port}",
        }
        processes = [
            _start("web", ["runserver", f"127.0.0.1:{web_port}", "--noreload"], env, logs),
            _start("listener", ["listen_chain"], env, logs),
            _start(
                "render-worker",
                [
                    "rundramatiq",
                    "--processes",
                    "1",
                    "--threads",
                    "1",
                    "--queues",
                    "render",
                    "--worker-shutdown-timeout",
                    "5000",
                ],
                env,
                logs,
            ),
            _start(
                "io-worker",
                [
                    "rundramatiq",
                    "--processes",
                    "1",
                    "--threads",
                    "2",
                    "--queues",
                    "io",
                    "--worker-shutdown-timeout",
                    "5000",
                ],
                env,
                logs,
            ),
        ]
        s = Stack(
            w3=w3,
            anvil=anvil,
            good=good,
            broken=broken,
            future=future,
            vrf=vrf,
            stranger=stranger,
            gateway=f"http://127.0.0.1:{web_port}/ipfs",
            web_url=f"http://127.0.0.1:{web_port}",
            logs={p.name: p for p in logs.iterdir()},
        )
        try:
            # When a collector mints 2 then 1 on the collection, and 1 on each of the others
            for quantity, first in ((2, 1), (1, 3)):
                block = _mint(w3, good.contract_address, quantity)
                for token_id in range(first, first + quantity):
                    s.mint_blocks[token_id] = block
            s.mint_blocks[-1] = _mint(w3, future.contract_address, 1)
            _mint(w3, vrf.contract_address, 1)
            oracle = threading.Thread(
                target=_stand_in_vrf_node, args=(w3, vrf.vrf_coordinator, stopping), daemon=True
            )
            oracle.start()
            _mint(w3, broken.contract_address, 1)
            _mint(w3, stranger, 1)
            good_contract = bind(w3, good.contract_address)
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                # tokenURI names the placeholder until publication: wait for the digests
                digests = [good_contract.functions.metadataDigestOf(i).call() for i in (1, 2, 3)]
                for other in (future, vrf):
                    digests.append(
                        bind(w3, other.contract_address).functions.metadataDigestOf(1).call()
                    )
                broken_row = Token.objects.filter(collection=broken, token_id=1).first()
                broken_done = broken_row is not None and broken_row.status == Token.Status.FAILED
                if all(d != bytes(32) for d in digests) and broken_done:
                    break
                for p in processes:
                    assert p.poll() is None, f"{p.args} exited early: see {logs}"
                time.sleep(0.5)
            # Let the listener see the publish transactions confirmed.
            time.sleep(2.5)
            for row in Token.objects.select_related("collection").values(
                "collection__slug", "collection__contract_address", "token_id", "status",
                "failure_reason", "seed", "expected_seed", "image_cid", "metadata_cid",
                "publish_tx_hash",
            ):  # fmt: skip
                s.rows[(row["collection__slug"], row["token_id"])] = row
            for event in TokenEvent.objects.order_by("at", "pk").values(
                "token__collection__slug", "token__token_id", "status"
            ):
                key = (event["token__collection__slug"], event["token__token_id"])
                s.stages.setdefault(key, []).append(event["status"])
            yield s
        finally:
            stopping.set()
            for p in processes:
                p.terminate()
            for p in processes:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
            anvil.stop()
            Collection.objects.filter(pk__in=[good.pk, broken.pk, future.pk, vrf.pk]).delete()
            Chain.objects.filter(chain_id=good.chain_id).delete()


def _log_tail(stack: Stack) -> str:
    return "\n".join(
        f"--- {name}\n" + path.read_text(errors="replace")[-3000:]
        for name, path in stack.logs.items()
    )


def test_it_sets_the_token_uri_of_every_minted_token(stack: Stack) -> None:
    contract = bind(stack.w3, stack.good.contract_address)
    uris = {i: contract.functions.tokenURI(i).call() for i in (1, 2, 3)}
    assert all(uri.startswith("ipfs://") for uri in uris.values()), (uris, _log_tail(stack))
    assert len(set(uris.values())) == 3


@pytest.mark.parametrize("token_id", [1, 2, 3])
def test_it_records_every_stage_a_token_went_through(stack: Stack, token_id: int) -> None:
    stages = stack.stages[(stack.good.slug, token_id)]
    first_seen = list(dict.fromkeys(stages))  # a retried stage appears again; order of firsts
    expected = ["CONFIRMED", "SEED_COMMITTED", "RENDERING", "RENDERED", "PINNED", "PUBLISHING"]
    assert first_seen[: len(expected) + 1] == [*expected, "PUBLISHED"], stages
    assert stages[-1] == stack.rows[(stack.good.slug, token_id)]["status"]
    broken = stack.stages[(stack.broken.slug, 1)]
    assert broken[-1] == "FAILED" and "PINNED" not in broken, broken


@pytest.mark.parametrize("token_id", [1, 2, 3])
def test_it_commits_the_seed_of_the_mint_block_hash_and_token_id(
    stack: Stack, token_id: int
) -> None:
    contract = bind(stack.w3, stack.good.contract_address)
    # The block that held the mint, as the mint's own receipt gave it, and that block's hash.
    assert contract.functions.mintBlockOf(token_id).call() == stack.mint_blocks[token_id]
    block_hash = bytes(stack.w3.eth.get_block(stack.mint_blocks[token_id])["hash"])
    expected = keccak(block_hash + token_id.to_bytes(32, "big"))
    assert bytes(contract.functions.seedOf(token_id).call()) == expected
    assert stack.rows[("e2e", token_id)]["seed"] == "0x" + expected.hex()


def test_a_future_block_seed_waits_for_its_block_then_comes_from_its_hash(stack: Stack) -> None:
    # Given a collection whose seeds come from the block FUTURE_DELAY blocks after the mint
    contract = bind(stack.w3, stack.future.contract_address)
    seed_block = stack.mint_blocks[-1] + FUTURE_DELAY
    assert contract.functions.seedBlockOf(1).call() == seed_block
    # Then the backend committed the seed of that block's hash, not the mint block's
    block_hash = bytes(stack.w3.eth.get_block(seed_block)["hash"])
    expected = keccak(block_hash + (1).to_bytes(32, "big"))
    assert bytes(contract.functions.seedOf(1).call()) == expected
    row = stack.rows[("e2e-future", 1)]
    assert row["seed"] == row["expected_seed"] == "0x" + expected.hex()
    # and the token went all the way, its metadata naming the seed block
    assert stack.stages[("e2e-future", 1)][-1] in ("PUBLISHED", "FINAL")
    metadata = json.loads(httpx.get(f"{stack.gateway}/{row['metadata_cid']}", timeout=10).content)
    assert metadata["provenance"]["seed_block_number"] == seed_block
    assert metadata["provenance"]["seed_block_hash"] == "0x" + block_hash.hex()


def _stand_in_vrf_node(w3: Web3, coordinator: str, stopping: threading.Event) -> None:
    """What a Chainlink node does for the coordinator: fulfil each request as it comes."""
    while not stopping.wait(0.5):
        fulfil_pending(w3, DEPLOYER.private_key, coordinator)


def test_a_vrf_seed_is_requested_fulfilled_and_published_by_the_workers(stack: Stack) -> None:
    contract = bind(stack.w3, stack.vrf.contract_address)
    request_id, word = contract.functions.vrfRequestOf(1).call()
    expected = keccak(word.to_bytes(32, "big") + (1).to_bytes(32, "big"))
    assert request_id > 0 and bytes(contract.functions.seedOf(1).call()) == expected
    row = stack.rows[("e2e-vrf", 1)]
    assert row["seed"] == row["expected_seed"] == "0x" + expected.hex()
    assert stack.stages[("e2e-vrf", 1)][-1] in ("PUBLISHED", "FINAL")
    metadata = json.loads(httpx.get(f"{stack.gateway}/{row['metadata_cid']}", timeout=10).content)
    assert metadata["provenance"]["vrf"]["request_id"] == str(request_id)
    assert metadata["provenance"]["vrf"]["coordinator"] == stack.vrf.vrf_coordinator
    assert "Chainlink VRF" in metadata["provenance"]["seed_scheme"]


def _fetch_metadata(stack: Stack, token_id: int) -> tuple[bytes, dict[str, Any]]:
    contract = bind(stack.w3, stack.good.contract_address)
    cid = contract.functions.tokenURI(token_id).call().removeprefix("ipfs://")
    response = httpx.get(f"{stack.gateway}/{cid}", timeout=10)
    assert response.status_code == 200, response.text
    return response.content, response.json()


@pytest.mark.parametrize("token_id", [1, 2, 3])
def test_it_serves_metadata_that_hashes_to_the_onchain_digest(stack: Stack, token_id: int) -> None:
    contract = bind(stack.w3, stack.good.contract_address)
    body, _ = _fetch_metadata(stack, token_id)
    digest = bytes(contract.functions.metadataDigestOf(token_id).call())
    assert hashlib.sha256(body).digest() == digest
    # and the tokenURI is the CIDv1 (raw, sha2-256) of exactly those bytes
    cid = CID("base32", 1, "raw", multihash.wrap(hashlib.sha256(body).digest(), "sha2-256"))
    assert contract.functions.tokenURI(token_id).call() == f"ipfs://{cid}"


@pytest.mark.parametrize("token_id", [1, 2, 3])
def test_it_serves_the_image_named_by_the_metadata_as_a_png(stack: Stack, token_id: int) -> None:
    _, metadata = _fetch_metadata(stack, token_id)
    image_cid = metadata["image"].removeprefix("ipfs://")
    response = httpx.get(f"{stack.gateway}/{image_cid}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert (
        multihash.unwrap(CID.decode(image_cid).digest) == hashlib.sha256(response.content).digest()
    )
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (stack.good.width, stack.good.height)


@pytest.mark.parametrize("token_id", [1, 2, 3])
def test_it_names_the_seed_and_the_model_fingerprint_in_the_provenance(
    stack: Stack, token_id: int, reference_models: Path
) -> None:
    contract = bind(stack.w3, stack.good.contract_address)
    _, metadata = _fetch_metadata(stack, token_id)
    provenance = metadata["provenance"]
    assert provenance["seed"] == "0x" + bytes(contract.functions.seedOf(token_id).call()).hex()
    assert provenance["token_id"] == str(token_id)
    assert provenance["contract"] == stack.good.contract_address
    mint_block = stack.w3.eth.get_block(stack.mint_blocks[token_id])
    assert provenance["mint_block_hash"] == "0x" + bytes(mint_block["hash"]).hex()
    # The fingerprint, recomputed here from the weights files as the README documents it.
    digest = hashlib.sha256()
    root = reference_models / "diffusion"
    for path in sorted(p for p in root.rglob("*") if p.suffix in {".safetensors", ".bin"}):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    assert provenance["model"]["fingerprint"] == f"sha256:{digest.hexdigest()}"


def test_it_reports_a_published_token_through_the_api(stack: Stack) -> None:
    response = httpx.get(f"{stack.web_url}/api/collections/e2e/tokens/2/", timeout=10)
    assert response.status_code == 200
    doc = response.json()
    contract = bind(stack.w3, stack.good.contract_address)
    assert doc["status"] in {"PUBLISHED", "FINAL"}
    assert doc["token_uri"] == contract.functions.tokenURI(2).call()
    assert doc["seed"] == "0x" + bytes(contract.functions.seedOf(2).call()).hex()
    assert httpx.get(doc["image_url"], timeout=10).content.startswith(b"\x89PNG")
    assert set(doc["clip_scores"]) == {"style"}


def test_it_ignores_a_mint_on_a_contract_it_does_not_know(stack: Stack) -> None:
    assert bind(stack.w3, stack.stranger).functions.totalSupply().call() == 1
    contracts = {row["collection__contract_address"] for row in stack.rows.values()}
    assert stack.stranger not in contracts
    assert sorted(k for k in stack.rows if k[0] == "e2e") == [("e2e", 1), ("e2e", 2), ("e2e", 3)]


def test_it_fails_a_token_whose_render_fails_and_publishes_nothing_of_it(stack: Stack) -> None:
    row = stack.rows[("broken", 1)]
    assert row["status"] == "FAILED"
    assert "cannot load the diffusion model" in row["failure_reason"]
    assert row["image_cid"] == row["metadata_cid"] == row["publish_tx_hash"] == ""
    contract = bind(stack.w3, stack.broken.contract_address)
    # tokenURI still names the collection's "being generated" placeholder
    assert contract.functions.tokenURI(1).call() == contract.functions.placeholderURI().call()
    assert bytes(contract.functions.metadataDigestOf(1).call()) == bytes(32)


def test_it_warms_the_render_worker_before_it_takes_work(stack: Stack) -> None:
    log = stack.logs["render-worker.log"].read_text()
    assert "warm: e2e models loaded" in log
    assert "could not warm up broken" in log
    # and the warm-up came before the first token's render
    assert log.index("warm: e2e") < log.index("attempt 0 rendered")
