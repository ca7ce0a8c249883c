"""The provenance verifier on tokens the real pipeline published, and on each kind of forgery.

Tokens are produced once per module as the stages run them in production (listener, seed
commit, render with the reference models, pin, publish) on a real anvil; the gateway is the
app's own ``/ipfs/<cid>`` view served by ``live_server``. A lying gateway (a small HTTP server
here) serves altered bytes for chosen CIDs and passes everything else through. Forgeries the
operator would commit (an attribute edited before publishing, a seed forged through the late
path) are made for real: on the chain and in the database the pipeline reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from web3 import Web3

import verifier
from chain import publishing
from chain.anvil import ANVIL_ACCOUNTS, Anvil, start_anvil
from chain.contract import bind, send_and_wait
from chain.deployment import CollectionSpec, deploy_collection
from chain.listener import Listener
from chain.models import Chain
from chain.seed_commit import commit_seeds
from chain.seeds import derive_seed
from chain.vrf import fulfil_pending
from devtools.rarity_fixtures import QUOTA
from devtools.rarity_fixtures import WEIGHTED as PALETTE
from generation import pipeline
from generation.canonical import canonical_json
from generation.models import Collection, Token
from ipfs.backends import pinner_from_settings
from ipfs.profiles import UNIXFS_V1_2025
from ipfs.store import LocalStore
from ipfs.tree import build_tree, tree_cid
from tests.test_listener import mine, mint

pytestmark = pytest.mark.django_db(transaction=True)
DEPLOYER = ANVIL_ACCOUNTS[0]
Status = Token.Status
REPO = Path(__file__).resolve().parent.parent
HONEST, OTHER, FORGED_ATTRIBUTE, FORGED_SEED, BEFORE_ISSUE_19 = 1, 2, 3, 4, 5


@dataclass
class World:
    rpc_url: str
    contract: str
    gateway: str  # the app's own
    tokens: dict[int, Token]
    quota_contract: str  # a quota-mode collection of 3, every token published honestly
    quota_traits: list[str]  # their palettes, in token order
    single_file_contract: str  # a collection on a single-file checkpoint, token 1 published
    checkpoint: Path  # that checkpoint (its component configs: reference_models/diffusion)
    future_contract: str  # future-block seeds (seed delay 3), token 1 published
    vrf_contract: str  # Chainlink VRF seeds (the mock coordinator), token 1 published


def listen(w3: Web3, collection: Collection) -> list[int]:
    handed: list[int] = []
    chain = Chain.objects.get(chain_id=collection.chain_id)
    Listener(w3, chain, on_confirmed=lambda c, pks: handed.extend(pks)).poll()
    return handed


def through_pipeline(
    w3: Web3, collection: Collection, pks: list[int], before_publish: Callable[[Token], None]
) -> None:
    commit_seeds(w3, collection, pks, lambda token: None)
    for pk in pks:
        assert pipeline.run_render(pk) == Status.RENDERED
        assert pipeline.run_pin(pk) == Status.PINNED
        before_publish(Token.objects.get(pk=pk))
    assert sorted(publishing.publish_batch(collection.pk).published) == sorted(pks)


def forge_attribute(token: Token) -> None:
    """The operator edits the assigned trait in the metadata, then publishes that digest."""
    store = pinner_from_settings()
    document = json.loads(LocalStore(settings_store()).get(token.metadata_cid))
    attribute = document["attributes"][0]
    attribute["value"] = "cold" if attribute["value"] == "warm" else "warm"
    data = canonical_json(document)
    cid = store.pin(data, name="forged.json")
    Token.objects.filter(pk=token.pk).update(
        metadata_cid=cid, metadata_sha256=hashlib.sha256(data).hexdigest()
    )


def as_published_before_issue_19(token: Token) -> None:
    """The metadata in the shape tokens were published in before issue 19 (each attribute's
    rarity inside it, no ``external_url``), pinned, and its digest is what goes on-chain: a
    token published then, which no one can rewrite."""
    store = pinner_from_settings()
    document = json.loads(LocalStore(settings_store()).get(token.metadata_cid))
    figures = document.pop("rarity")
    del document["external_url"]
    for attribute in document["attributes"]:
        attribute["rarity"] = figures[attribute["trait_type"]]
    data = canonical_json(document)
    cid = store.pin(data, name="before-issue-19.json")
    Token.objects.filter(pk=token.pk).update(
        metadata_cid=cid, metadata_sha256=hashlib.sha256(data).hexdigest()
    )


def settings_store() -> Path:
    from django.conf import settings

    return Path(settings.IPFS_STORE_DIR)


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """A chain without the EIP-2935 history (Cancun): a mint block leaves every on-chain source
    of its hash after 256 blocks, which opens the admin's late path for the forged seed."""
    with start_anvil(hardfork="cancun") as node:
        yield node


@pytest.fixture(scope="module")
def world(
    django_db_setup,
    django_db_blocker,
    anvil: Anvil,
    reference_models: Path,
    live_server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:  # type: ignore[no-untyped-def]
    from generation.single_file import export_single_file

    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    with django_db_blocker.unblock():
        collection = deploy_collection(
            w3,
            DEPLOYER.private_key,
            CollectionSpec(slug="verify", rarity=PALETTE, publish_weights=True),
        )
        # tokens 1 and 2: honest
        mint(w3, collection, 2)
        mine(w3, 2)
        through_pipeline(w3, collection, listen(w3, collection), lambda token: None)
        # token 3: an attribute edited before its digest went on-chain
        mint(w3, collection, 1)
        mine(w3, 2)
        through_pipeline(w3, collection, listen(w3, collection), forge_attribute)
        # token 4: its seed forged through the late path. The operator lets the mint block leave
        # the 256-block window of blockhash() (this chain has no EIP-2935 history), commits a
        # block hash of its choosing with commitLateSeeds, and its database accepts the seed.
        mint(w3, collection, 1)
        mine(w3, 2)
        (pk,) = listen(w3, collection)
        mine(w3, 300)
        fake = hashlib.sha256(b"a block hash the operator likes").digest()
        contract = bind(w3, collection.contract_address)
        send_and_wait(
            w3, DEPLOYER.private_key, contract.functions.commitLateSeeds([FORGED_SEED], [fake])
        )
        forged = "0x" + derive_seed(fake, FORGED_SEED).hex()
        Token.objects.filter(pk=pk).update(expected_seed=forged)
        through_pipeline(w3, collection, [pk], lambda token: None)
        mine(w3, 2)
        listen(w3, collection)
        # token 5: honest, published in the metadata format before issue 19
        mint(w3, collection, 1)
        mine(w3, 2)
        through_pipeline(w3, collection, listen(w3, collection), as_published_before_issue_19)
        tokens = {t.token_id: t for t in Token.objects.filter(collection=collection)}
        # a quota collection: token k's trait depends on the seeds of tokens 1..k
        quota = deploy_collection(
            w3,
            DEPLOYER.private_key,
            CollectionSpec(slug="verify-quota", rarity=QUOTA, max_supply=3,
                           prompt_template="a painting {palette}"),
        )  # fmt: skip
        mint(w3, quota, 3)
        mine(w3, 2)
        through_pipeline(w3, quota, listen(w3, quota), lambda token: None)
        palettes = list(
            Token.objects.filter(collection=quota)
            .order_by("token_id")
            .values_list("traits__palette", flat=True)
        )
        # a collection whose model is one .safetensors file in the original SD layout
        checkpoint = export_single_file(
            reference_models / "diffusion", tmp_path_factory.mktemp("ckpt") / "model.safetensors"
        )
        # the test's own folder is one the operator allows models from
        with override_settings(MODEL_ROOTS=[reference_models, checkpoint.parent]):
            single = deploy_collection(
                w3,
                DEPLOYER.private_key,
                CollectionSpec(slug="verify-single-file", rarity=PALETTE, model_dir=str(checkpoint),
                               model_config_dir=str(reference_models / "diffusion"),
                               publish_weights=True),
            )  # fmt: skip
        mint(w3, single, 1)
        mine(w3, 2)
        through_pipeline(w3, single, listen(w3, single), lambda token: None)
        # a collection whose seeds come from the block 3 blocks after the mint
        future = deploy_collection(
            w3,
            DEPLOYER.private_key,
            CollectionSpec(slug="verify-future", rarity=PALETTE, seed_delay=3),
        )
        mint(w3, future, 1)
        mine(w3, 2)
        pks = listen(w3, future)
        mine(w3, 3)  # the seed block and its 2 confirmations
        through_pipeline(w3, future, pks, lambda token: None)
        # a collection seeded by Chainlink VRF: the first commit requests, the coordinator fulfils
        vrf = deploy_collection(
            w3,
            DEPLOYER.private_key,
            CollectionSpec(slug="verify-vrf", rarity=PALETTE, vrf_coordinator="local"),
        )
        mint(w3, vrf, 1)
        mine(w3, 2)
        pks = listen(w3, vrf)
        commit_seeds(w3, vrf, pks, lambda token: None)
        fulfil_pending(w3, DEPLOYER.private_key, vrf.vrf_coordinator)
        through_pipeline(w3, vrf, pks, lambda token: None)
    yield World(
        anvil.rpc_url,
        collection.contract_address,
        f"{live_server.url}/ipfs",
        tokens,
        quota.contract_address,
        palettes,
        single.contract_address,
        checkpoint,
        future.contract_address,
        vrf.contract_address,
    )


class LyingGateway:
    """Serves ``overrides[cid]`` for the CIDs it lies about, the real gateway's bytes for the
    rest; it allows any origin, as public gateways do, so a page's script can read it too."""

    def __init__(self, upstream: str) -> None:
        self.overrides: dict[str, bytes] = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                cid = self.path.removeprefix("/ipfs/")
                body = gateway.overrides.get(cid)
                status = 200
                if body is None:
                    response = httpx.get(f"{upstream}/{cid}")
                    status, body = response.status_code, response.content
                self.send_response(status)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fetch(self, cid: str) -> bytes:
        return httpx.get(f"{self.url}/ipfs/{cid}").content


@pytest.fixture
def liar(world: World) -> Iterator[LyingGateway]:
    gateway = LyingGateway(world.gateway)
    yield gateway
    gateway.server.shutdown()
    gateway.server.server_close()


def run(world: World, token_id: int, gateway: str | None = None, weights=None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    checks = verifier.verify_token(
        world.rpc_url, world.contract, token_id, gateway or world.gateway, weights
    )
    return {c.name: c.status for c in checks}


def failures(results: dict[str, str]) -> set[str]:
    return {name for name, status in results.items() if status == verifier.FAIL}


def test_a_published_token_passes_every_check_with_the_weights(
    world: World, reference_models: Path
) -> None:
    checks = verifier.verify_token(
        world.rpc_url, world.contract, HONEST, world.gateway, reference_models
    )
    assert [(c.name, c.status) for c in checks if c.status != verifier.PASS] == []
    by_name = {c.name: c for c in checks}
    assert "committed on-chain: blockhash(mintBlock)" in by_name["seed"].detail
    assert by_name["rerender"].detail.startswith("bit-exact")
    assert world.tokens[HONEST].image_cid in by_name["image"].detail


def test_without_weights_the_weight_checks_are_skipped_and_the_verdict_passes(
    world: World, capsys
) -> None:  # type: ignore[no-untyped-def]
    args = ["--rpc", world.rpc_url, "--contract", world.contract, "--gateway", world.gateway]
    assert verifier.main([*args, "--token", str(OTHER)]) == 0
    table = capsys.readouterr().out
    assert "verdict: PASS (11 checks passed, 3 skipped)" in table
    assert "no weights given (--weights)" in table
    assert verifier.main([*args, "--all", "--json"]) == 1  # tokens 3 and 4 are forged
    document = json.loads(capsys.readouterr().out)
    verdicts = {t["token_id"]: t["verdict"] for t in document["tokens"]}
    assert verdicts == {
        HONEST: "PASS (11 checks passed, 3 skipped)",
        OTHER: "PASS (11 checks passed, 3 skipped)",
        FORGED_ATTRIBUTE: "FAIL: traits",
        FORGED_SEED: "FAIL: seed",
        BEFORE_ISSUE_19: "PASS (11 checks passed, 3 skipped)",
    }
    assert document["verdict"] == "FAIL"


def test_the_record_says_whether_a_digest_can_still_change_and_every_reopen(
    world: World,
) -> None:
    w3 = Web3(Web3.HTTPProvider(world.rpc_url))
    contract = bind(w3, world.contract)

    def record() -> verifier.Check:
        checks = verifier.verify_token(world.rpc_url, world.contract, OTHER, world.gateway)
        (check,) = [c for c in checks if c.name == "metadata_record"]
        assert check.status == verifier.PASS
        return check

    assert record().detail == "not locked: the admin can still reopen this digest; never reopened"
    # When the admin reopens the token and the publisher publishes the same bytes again
    digest = contract.functions.metadataDigestOf(OTHER).call()
    reopened = send_and_wait(w3, DEPLOYER.private_key, contract.functions.reopen([OTHER]))
    publisher = ANVIL_ACCOUNTS[2].private_key
    send_and_wait(w3, publisher, contract.functions.publish([OTHER], [digest]))
    # Then every check still passes, and the record lists the reopen
    assert failures(run(world, OTHER)) == set()
    assert record().detail.endswith(f"; reopened 1 time (block {reopened['blockNumber']})")
    # and once the admin locks the collection, the record says no digest can change
    send_and_wait(w3, DEPLOYER.private_key, contract.functions.lockMetadata())
    assert record().detail.startswith("locked: no digest of this collection can be reopened")


def test_an_rpc_that_caps_log_ranges_skips_the_reopen_history_only(world: World) -> None:
    from tests.rpc_proxy import FlakyRpcProxy

    # a public RPC that refuses eth_getLogs over more than 4 blocks (the world's chain is
    # hundreds of blocks past the token's mint)
    with FlakyRpcProxy(world.rpc_url, max_log_range=4) as limited:
        checks = verifier.verify_token(limited.url, world.contract, HONEST, world.gateway)
    statuses = {c.name: c.status for c in checks}
    assert statuses["metadata_record"] == verifier.SKIPPED
    assert [n for n, s in statuses.items() if s == verifier.FAIL] == []
    (record,) = [c for c in checks if c.name == "metadata_record"]
    assert "would not list" in record.detail and "max block range" in record.detail


def test_the_module_and_the_management_command_run_the_same_checks(world: World) -> None:
    args = ["--rpc", world.rpc_url, "--contract", world.contract, "--gateway", world.gateway]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-m", "verifier", *args, "--token", str(FORGED_SEED)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "verdict: FAIL: seed" in done.stdout
    assert "LATE: block hash supplied by the admin" in done.stdout

    from io import StringIO

    out = StringIO()
    call_command("verify_token", *args, "--token", str(HONEST), stdout=out)
    assert "verdict: PASS" in out.getvalue()
    with pytest.raises(CommandError, match="verification failed"):
        call_command("verify_token", *args, "--token", str(FORGED_ATTRIBUTE), stdout=StringIO())


def test_bad_input_is_named(world: World, capsys) -> None:  # type: ignore[no-untyped-def]
    nowhere = "0x" + "12" * 20
    status = verifier.main(
        ["--rpc", world.rpc_url, "--contract", nowhere, "--token", "1", "--gateway", world.gateway]
    )
    assert status == 2
    assert f"no contract at {nowhere}" in capsys.readouterr().err
    with pytest.raises(verifier.VerifyError, match="lacks"):
        verifier.verify_token(world.rpc_url, world.contract, 1, world.gateway, Path("/nonexistent"))


def test_metadata_edited_on_the_gateway_fails_the_digest_check_only(
    world: World, liar: LyingGateway
) -> None:
    cid = world.tokens[HONEST].metadata_cid
    document = json.loads(liar.fetch(cid))
    document["description"] = "a nicer story"
    liar.overrides[cid] = canonical_json(document)
    results = run(world, HONEST, liar.url)
    assert failures(results) == {"metadata_digest"}
    assert results["traits"] == verifier.SKIPPED  # nothing is read from unverified bytes


def test_an_attribute_changed_on_the_gateway_fails_the_digest_check(
    world: World, liar: LyingGateway
) -> None:
    cid = world.tokens[HONEST].metadata_cid
    document = json.loads(liar.fetch(cid))
    document["attributes"][0]["value"] = (
        "cold" if document["attributes"][0]["value"] == "warm" else "warm"
    )
    liar.overrides[cid] = canonical_json(document)
    assert failures(run(world, HONEST, liar.url)) == {"metadata_digest"}


def test_an_attribute_changed_before_publishing_fails_the_traits_check_only(world: World) -> None:
    checks = verifier.verify_token(world.rpc_url, world.contract, FORGED_ATTRIBUTE, world.gateway)
    assert [c.name for c in checks if c.failed] == ["traits"]
    (traits,) = [c for c in checks if c.name == "traits"]
    assert "!= recomputed" in traits.detail


def test_a_token_published_before_issue_19_verifies_in_its_own_format(world: World) -> None:
    # Given token 5, published with each attribute's rarity inside it (the digest on-chain is
    # of those bytes), and token 1, published in today's format
    def traits_check(token_id: int) -> verifier.Check:
        checks = verifier.verify_token(world.rpc_url, world.contract, token_id, world.gateway)
        assert [c.name for c in checks if c.failed] == []
        (check,) = [c for c in checks if c.name == "traits"]
        return check

    # Then both pass, and the traits check says which format it read
    old, new = traits_check(BEFORE_ISSUE_19), traits_check(HONEST)
    assert old.status == new.status == verifier.PASS
    assert old.detail.endswith("metadata format: rarity inside each attribute (before issue 19)")
    assert new.detail.endswith("metadata format: OpenSea attributes, rarity beside them")


def test_an_attribute_changed_before_publishing_says_the_format_it_read(world: World) -> None:
    checks = verifier.verify_token(world.rpc_url, world.contract, FORGED_ATTRIBUTE, world.gateway)
    (traits,) = [c for c in checks if c.name == "traits"]
    assert traits.detail.startswith("metadata format: OpenSea attributes, rarity beside them: ")


def test_a_seed_forged_through_the_late_path_fails_the_seed_check_only(world: World) -> None:
    checks = verifier.verify_token(world.rpc_url, world.contract, FORGED_SEED, world.gateway)
    assert [c.name for c in checks if c.failed] == ["seed"]
    (seed,) = [c for c in checks if c.name == "seed"]
    assert "LATE" in seed.detail and "keccak256(block hash, token id)" in seed.detail


def test_a_rarity_table_changed_after_freeze_fails_the_config_check_only(
    world: World, liar: LyingGateway
) -> None:
    uri = bind(Web3(Web3.HTTPProvider(world.rpc_url)), world.contract).functions.contractURI()
    cid = uri.call().removeprefix("ipfs://")
    document = json.loads(liar.fetch(cid))
    document["generation"]["rarity"]["categories"][0]["options"][0]["weight"] = 1
    liar.overrides[cid] = canonical_json(document)
    results = run(world, HONEST, liar.url)
    assert failures(results) == {"config_digest"}
    assert results["traits"] == verifier.SKIPPED


def test_a_swapped_image_fails_the_image_check_only(
    world: World, liar: LyingGateway, reference_models: Path
) -> None:
    honest, other = world.tokens[HONEST], world.tokens[OTHER]
    liar.overrides[honest.image_cid] = liar.fetch(other.image_cid)
    results = run(world, HONEST, liar.url, reference_models)
    assert failures(results) == {"image"}
    assert results["rerender"] == results["clip_scores"] == verifier.SKIPPED


def test_weights_that_do_not_match_the_fingerprint_fail_that_check_only(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from generation.reference_models import build_reference_models

    other = tmp_path_factory.mktemp("other-weights")
    build_reference_models(other, seed=1)
    results = run(world, HONEST, weights=other)
    assert failures(results) == {"model_fingerprint"}
    assert results["rerender"] == results["clip_scores"] == verifier.SKIPPED


def test_quota_traits_are_replayed_over_the_earlier_tokens(world: World) -> None:
    # token 3 of a quota collection gets what tokens 1 and 2 left: the verifier replays the draw
    # from the three on-chain seeds and the frozen table, and the final counts are exact
    for token_id in (1, 2, 3):
        checks = verifier.verify_token(world.rpc_url, world.quota_contract, token_id, world.gateway)
        by_name = {c.name: c for c in checks}
        assert by_name["traits"].status == verifier.PASS, by_name["traits"].detail
        assert f"quota replay over tokens 1..{token_id}" in by_name["traits"].detail
        assert [c.name for c in checks if c.status == verifier.FAIL] == []
    assert sorted(world.quota_traits) == ["cold", "warm", "warm"]


def test_a_token_rendered_from_a_single_file_checkpoint_verifies_against_that_file(
    world: World, reference_models: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    args = ["--rpc", world.rpc_url, "--contract", world.single_file_contract, "--token", "1"]
    args += ["--gateway", world.gateway, "--json", "--clip", str(reference_models / "clip")]
    with_configs = ["--model-config", str(reference_models / "diffusion")]
    assert verifier.main([*args, "--diffusion", str(world.checkpoint), *with_configs]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["tokens"][0]["checks"]}
    assert {c["status"] for c in checks.values()} == {verifier.PASS}
    digest = hashlib.sha256(world.checkpoint.read_bytes()).hexdigest()
    assert f"diffusion sha256:{digest}" in checks["model_fingerprint"]["detail"]
    assert checks["rerender"]["detail"].startswith("bit-exact")
    # the same weights as a diffusers folder are not the file the provenance names
    folder = ["--diffusion", str(reference_models / "diffusion")]
    assert verifier.main([*args, *folder]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["tokens"][0]["verdict"] == "FAIL: model_fingerprint"


def test_a_future_block_token_verifies_against_its_seed_blocks_hash(
    world: World, reference_models: Path
) -> None:
    checks = verifier.verify_token(
        world.rpc_url, world.future_contract, 1, world.gateway, reference_models
    )
    assert [(c.name, c.status, c.detail) for c in checks if c.status != verifier.PASS] == []
    by_name = {c.name: c for c in checks}
    mint_block = int(by_name["mint_block"].detail.split()[1].rstrip(","))
    assert f"seed block {mint_block + 3} (mint block + 3)" in by_name["mint_block"].detail
    assert f"keccak256(hash of block {mint_block + 3}, token id)" in by_name["seed"].detail
    assert "blockhash(seedBlock), a block after the mint's" in by_name["seed"].detail
    assert "block hash, seed block and seed agree" in by_name["provenance"].detail
    assert by_name["rerender"].detail.startswith("bit-exact")


def test_a_vrf_token_verifies_against_the_coordinators_fulfilment(
    world: World, reference_models: Path
) -> None:
    checks = verifier.verify_token(
        world.rpc_url, world.vrf_contract, 1, world.gateway, reference_models
    )
    assert [(c.name, c.status, c.detail) for c in checks if c.status != verifier.PASS] == []
    by_name = {c.name: c for c in checks}
    assert (
        "= keccak256(random word, token id); the word fulfilled VRF request"
        in by_name["seed"].detail
    )
    assert "RandomWordsFulfilled in 0x" in by_name["seed"].detail
    assert "VRF request and word" in by_name["provenance"].detail
    assert by_name["rerender"].detail.startswith("bit-exact")


# ------------------------------------------------------------------ weights published on IPFS


def test_the_frozen_config_names_each_published_weight_by_cid_beside_its_fingerprint(
    world: World, reference_models: Path
) -> None:
    gateway = verifier.Gateway(world.gateway)
    contract_uri = bind(Web3(Web3.HTTPProvider(world.rpc_url)), world.contract)
    document = json.loads(gateway.fetch(contract_uri.functions.contractURI().call()))
    config = document["generation"]
    published = config["weights"]
    # a collection made now names its content under unixfs-v1-2025, and says so
    assert config["cid_profile"] == UNIXFS_V1_2025.record()
    assert published["diffusion"] == {
        "cid": tree_cid(reference_models / "diffusion", UNIXFS_V1_2025),
        "fingerprint": config["model"]["fingerprint"],
    }
    assert published["clip"]["fingerprint"] == config["clip"]["fingerprint"]
    assert "ipfs add -r --cid-version=1 --raw-leaves" in published["scheme"]
    # a single-file checkpoint: the file, by name, and the component configs' folder
    single = bind(Web3(Web3.HTTPProvider(world.rpc_url)), world.single_file_contract)
    other = json.loads(gateway.fetch(single.functions.contractURI().call()))["generation"]
    assert other["weights"]["diffusion"]["name"] == "model.safetensors"
    assert other["weights"]["diffusion"]["cid"] == tree_cid(world.checkpoint, UNIXFS_V1_2025)
    assert other["weights"]["diffusion_configs"]["cid"] == tree_cid(
        reference_models / "diffusion", UNIXFS_V1_2025
    )


def test_fetch_weights_re_renders_a_token_from_ipfs_alone(world: World, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    checks = verifier.verify_token(
        world.rpc_url, world.contract, HONEST, world.gateway, verifier.FetchWeights(cache)
    )
    by_name = {c.name: c for c in checks}
    assert [(c.name, c.status, c.detail) for c in checks if c.status != verifier.PASS] == []
    assert (
        len(checks) == 15 and "2 fetched, 0 from the cache" in by_name["published_weights"].detail
    )
    assert by_name["rerender"].detail.startswith("bit-exact")
    assert (cache / "ipfs").is_dir()
    # a second run reads the cache, each entry checked against its CID again
    again = verifier.verify_token(
        world.rpc_url, world.contract, OTHER, world.gateway, verifier.FetchWeights(cache)
    )
    assert {c.name: c.status for c in again}["rerender"] == verifier.PASS
    assert "0 fetched, 2 from the cache" in {c.name: c for c in again}["published_weights"].detail
    # a cached file edited by hand is not used: it is fetched again
    (weights_file,) = (cache / "ipfs").glob("*/open_clip_model.safetensors")
    weights_file.write_bytes(weights_file.read_bytes()[:-1] + b"\0")
    third = verifier.verify_token(
        world.rpc_url, world.contract, HONEST, world.gateway, verifier.FetchWeights(cache)
    )
    assert "1 fetched, 1 from the cache" in {c.name: c for c in third}["published_weights"].detail
    assert {c.name: c.status for c in third}["rerender"] == verifier.PASS


def test_fetch_weights_refuses_weights_a_gateway_altered(
    world: World, liar: LyingGateway, reference_models: Path, tmp_path: Path
) -> None:
    clip = build_tree(reference_models / "clip", profile=UNIXFS_V1_2025)
    (weights_file,) = [f for f in clip.files if f.path.endswith(".safetensors")]
    data = bytearray(weights_file.source.read_bytes())
    data[-1] ^= 1
    liar.overrides[weights_file.cid] = bytes(data)
    checks = verifier.verify_token(
        world.rpc_url, world.contract, HONEST, liar.url, verifier.FetchWeights(tmp_path)
    )
    by_name = {c.name: c for c in checks}
    assert by_name["published_weights"].status == verifier.FAIL
    assert f"the bytes served for {weights_file.cid}" in by_name["published_weights"].detail
    assert by_name["rerender"].status == by_name["clip_scores"].status == verifier.SKIPPED
    assert not list((tmp_path / "ipfs").glob("*/open_clip_model.safetensors"))


def test_fetch_weights_re_renders_a_single_file_checkpoint(
    world: World, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    args = ["--rpc", world.rpc_url, "--contract", world.single_file_contract, "--token", "1"]
    args += ["--gateway", world.gateway, "--json", "--fetch-weights"]
    assert verifier.main([*args, "--weights-cache", str(tmp_path)]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["tokens"][0]["checks"]}
    assert {c["status"] for c in checks.values()} == {verifier.PASS}
    assert checks["rerender"]["detail"].startswith("bit-exact")
    # local weights and a fetch are not asked for together
    assert verifier.main([*args, "--weights", str(tmp_path)]) == 2
    assert "--fetch-weights takes no local weights" in capsys.readouterr().err


def test_fetch_weights_skips_a_collection_that_publishes_none(world: World, tmp_path: Path) -> None:
    checks = verifier.verify_token(
        world.rpc_url, world.quota_contract, 1, world.gateway, verifier.FetchWeights(tmp_path)
    )
    by_name = {c.name: c for c in checks}
    assert by_name["published_weights"].status == verifier.SKIPPED
    assert "does not publish its weights" in by_name["published_weights"].detail
    assert by_name["rerender"].status == verifier.SKIPPED


def test_a_re_render_in_another_precision_is_measured_against_the_tolerance(
    world: World, reference_models: Path
) -> None:
    # The token was rendered in float32 on this CPU; a verifier re-rendering in bfloat16 (as a
    # machine without the recorded precision might) gets close pixels, not the same bytes.
    models = verifier.Models()

    def rerender(tolerance: float) -> verifier.Check:
        checks = verifier.verify_token(
            world.rpc_url, world.contract, HONEST, world.gateway, reference_models,
            dtype="bfloat16", pixel_tolerance=tolerance, models=models,
        )  # fmt: skip
        (check,) = [c for c in checks if c.name == "rerender"]
        assert [c.name for c in checks if c.failed] == (
            [] if check.status == verifier.PASS else ["rerender"]
        )
        return check

    close = rerender(verifier.PIXEL_TOLERANCE)
    assert close.status == verifier.PASS, close.detail
    assert close.detail.startswith("not bit-exact, within tolerance: max ")
    assert "bfloat16 (recorded: float32)" in close.detail
    mean = float(close.detail.split("mean ")[1].split()[0])
    assert 0 < mean <= verifier.PIXEL_TOLERANCE
    strict = rerender(mean / 2)
    assert strict.status == verifier.FAIL
    assert f"mean {mean:.4f} (tolerance: mean <= {mean / 2})" in strict.detail


def test_gateways_are_tried_in_order_but_wrong_bytes_are_never_routed_around(
    world: World, liar: LyingGateway
) -> None:
    from chain.anvil import free_port

    closed = f"http://127.0.0.1:{free_port()}/ipfs"
    gateway = verifier.Gateway([closed, world.gateway])
    results = run(world, HONEST, gateway)
    assert failures(results) == set()
    assert gateway.served == [world.gateway.removesuffix("/ipfs")]
    # a gateway that answers with wrong bytes is caught, even with an honest one behind it
    cid = world.tokens[HONEST].metadata_cid
    document = json.loads(liar.fetch(cid))
    document["description"] = "a nicer story"
    liar.overrides[cid] = canonical_json(document)
    assert failures(run(world, HONEST, verifier.Gateway([liar.url, world.gateway]))) == {
        "metadata_digest"
    }
    # nothing answers: the check names every gateway it tried
    checks = verifier.verify_token(world.rpc_url, world.contract, HONEST, [closed])
    (digest,) = [c for c in checks if c.name == "metadata_digest"]
    assert (
        digest.status == verifier.FAIL
        and f"cannot fetch {closed.removesuffix('/ipfs')}" in digest.detail
    )


def test_every_token_of_a_run_shares_the_loaded_models(
    world: World, reference_models: Path
) -> None:
    models = verifier.Models()
    for token_id in (HONEST, OTHER):
        checks = verifier.verify_token(
            world.rpc_url, world.contract, token_id, world.gateway, reference_models, models=models
        )
        assert [c.name for c in checks if c.status != verifier.PASS] == []
    assert sorted(key[0] for key in models._loaded) == ["clip", "render"]


def test_a_reader_that_stops_early_gets_no_traceback(world: World) -> None:
    # `true` exits without reading: the verifier's first write meets a closed pipe
    args = ["--rpc", world.rpc_url, "--contract", world.contract, "--gateway", world.gateway]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    command = f"{sys.executable} -m verifier {' '.join(args)} --all | true"
    done = subprocess.run(
        ["bash", "-c", f"{command}; echo verifier exit ${{PIPESTATUS[0]}}"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.stdout == "verifier exit 1\n"
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


# ------------------------------------------------------------------ the verifier as a third party has it


def test_the_verifier_imports_no_django_even_where_django_is_installed(world: World) -> None:
    args = ["--rpc", world.rpc_url, "--contract", world.contract, "--gateway", world.gateway]
    script = (
        "import sys, verifier\n"
        f"status = verifier.main({[*args, '--token', str(HONEST)]!r})\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'django', 'mintsite', 'torch'})\n"
        "print('status', status, 'loaded', loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "status 0 loaded []"


def test_a_wheel_installed_without_django_verifies_a_published_token(
    world: World, tmp_path: Path
) -> None:
    # Given the project built into a wheel (from a copy, so no build/ is left in the checkout),
    # installed with its base dependencies only into a fresh venv
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    # every package the wheel ships (pyproject's packages.find include list)
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in (name.rstrip("*") for name in include["packages"]["find"]["include"]):
        shutil.copytree(
            REPO / package,
            source / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "vendor"),
        )
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-q", "-w", str(dist), str(source)], check=True, timeout=300)
    (wheel,) = dist.glob("mint_on_demand-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)]
    subprocess.run(pip, check=True, timeout=600)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV")
    }

    def in_venv(*command: str) -> subprocess.CompletedProcess[str]:
        # run outside the checkout, so nothing is imported from it
        return subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    no_django = in_venv(str(venv / "bin" / "python"), "-c", "import django")
    assert no_django.returncode == 1 and "No module named 'django'" in no_django.stderr

    # When its mintverify checks a token the pipeline published on the test chain
    args = ["--rpc", world.rpc_url, "--contract", world.contract, "--gateway", world.gateway]
    mintverify = str(venv / "bin" / "mintverify")
    done = in_venv(mintverify, *args, "--token", str(HONEST), "--json")

    # Then every check that needs no weights passes, the three that do are skipped
    assert done.returncode == 0, done.stderr
    (token,) = json.loads(done.stdout)["tokens"]
    statuses = {c["name"]: c["status"] for c in token["checks"]}
    weighted = {"model_fingerprint", "rerender", "clip_scores"}
    assert {n for n, s in statuses.items() if s == verifier.SKIPPED} == weighted
    assert {n for n, s in statuses.items() if s == verifier.PASS} == set(statuses) - weighted
    # and a forged token still fails there, and weights without torch are refused by name
    forged = in_venv(mintverify, *args, "--token", str(FORGED_SEED))
    assert forged.returncode == 1 and "verdict: FAIL: seed" in forged.stdout
    weights = in_venv(mintverify, *args, "--token", str(HONEST), "--weights", str(tmp_path))
    assert weights.returncode == 2
    assert "pip install 'mint-on-demand[render]'" in weights.stderr

    # And given the render extra's libraries too (torch, diffusers, open_clip: read from the
    # test's own environment through a .pth line, not installed again), still no project
    # checkout, database, settings or local weights
    venv_site = next((venv / "lib").glob("python3*/site-packages"))
    (venv_site / "render-extra.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = in_venv(str(venv / "bin" / "python"), "-c", "import verifier; print(verifier.__file__)")
    assert where.stdout.startswith(str(venv_site)), where
    # When it fetches the weights the collection published, by CID, from the gateway alone
    fetched = in_venv(
        mintverify, *args, "--token", str(HONEST), "--fetch-weights", "--json",
        "--weights-cache", str(tmp_path / "cache"),
    )  # fmt: skip
    # Then it re-renders the token bit-exact: every one of the 15 checks passes
    assert fetched.returncode == 0, fetched.stderr
    (token,) = json.loads(fetched.stdout)["tokens"]
    assert {c["name"]: c["status"] for c in token["checks"] if c["status"] != verifier.PASS} == {}
    assert len(token["checks"]) == 15
    rerender = next(c for c in token["checks"] if c["name"] == "rerender")
    assert rerender["detail"].startswith("bit-exact")
