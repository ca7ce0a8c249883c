"""Several IPFS targets and a quorum: every pin goes to each target, a token is PINNED when
``IPFS_PIN_QUORUM`` of them hold it, the ledger says which target holds what, and the pin check
(``manage.py check_pins``, the listener's sweep) pins again what a target lost, so a provider's
exit costs a config change, not tokens.

Real local stores on disk, and the Kubo RPC server of tests/ipfs_servers.py for a node that
hangs, lies about a CID, loses its pins or goes away (failures that cannot be caused on demand
with a real node here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import Client

from foundation.broker_contents import contents
from generation import errors, pipeline, tasks
from generation.models import Pin, PinnedContent, Token
from generation.pin_check import CHECK_PINS_ACTOR, check_pins, send_check
from generation.pin_ledger import pin_bytes, pin_folder
from generation.stages import IO_QUEUE
from ipfs.backends import pinner_from_settings
from ipfs.cid import compute_cid
from ipfs.errors import QuorumNotReached
from ipfs.profiles import UNIXFS_V1_2025
from ipfs.store import LocalStore
from ipfs.tree import build_tree, fetch_tree
from mintsite.observability.health import CheckFailed, check_ipfs
from tests.ipfs_servers import TIMEOUT, KuboRpcServer, PinningServiceServer
from tests.test_ipfs import make_folder
from tests.test_metrics import scrape, value
from tests.test_pipeline import make_token

pytestmark = pytest.mark.django_db

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
METADATA = b'{"name":"token 1"}'


@pytest.fixture(autouse=True)
def empty_ledger() -> None:
    """Each test starts from a ledger of its own pins (an end-to-end test before it may have
    left its stack's rows; this test's transaction puts them back)."""
    PinnedContent.objects.all().delete()


@pytest.fixture
def kubo_b() -> Iterator[KuboRpcServer]:
    with KuboRpcServer().running() as server:
        yield server


def use_targets(settings, quorum: int = 0, **targets: dict) -> None:  # type: ignore[no-untyped-def]
    """``IPFS_TARGETS`` as ``name=own settings``, fast to fail."""
    settings.IPFS_TARGETS = list(targets)
    settings.IPFS_TARGET_SETTINGS = targets
    settings.IPFS_PIN_QUORUM = quorum
    settings.IPFS_TIMEOUT, settings.IPFS_RETRIES, settings.IPFS_RETRY_BACKOFF = TIMEOUT, 0, 0.0


def rendered_token(reference_models: Path, slug: str) -> Token:
    """A token of its own collection, rendered on the reference models and waiting to pin."""
    token = make_token(reference_models, threshold=-1.0, slug=slug)
    assert pipeline.run_render(token.pk) == Token.Status.RENDERED
    return token


def pins_at(target: str) -> dict[str, str]:
    """CID -> state of every copy the ledger records at ``target``."""
    return dict(Pin.objects.filter(target=target).values_list("content__cid", "state").order_by())


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "quorum", "message"),
    [
        ({"pinata": {}}, 0, "IPFS_TARGET_PINATA_BACKEND must say which it is"),
        ({"Bad_Name": {}}, 0, "IPFS_TARGETS names 'Bad_Name'"),
        ({"local": {}, "kubo": {}}, 3, "IPFS_PIN_QUORUM=3 must be between 1 and the 2 targets"),
        (
            {"kubo": {}, "backup": {"backend": "kubo"}},
            0,
            "IPFS_TARGETS 'kubo' and 'backup' are the same place",
        ),
        (
            {"kubo": {"kubo_url": "kubo:5001"}},
            0,
            "IPFS_TARGET_KUBO_KUBO_URL='kubo:5001' must be an http:// or https:// URL",
        ),
        ({"s3": {"backend": "s3"}}, 0, "IPFS_TARGET_S3_BACKEND='s3' is not one of local, kubo"),
        (
            {"pinata": {"backend": "pinning-service", "pinning_service_url": "https://p.example"}},
            0,
            "IPFS_PINNING_SERVICE_TOKEN",
        ),
    ],
)
def test_a_wrong_target_setting_is_named(settings, targets, quorum, message) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_PINNING_SERVICE_TOKEN = None
    use_targets(settings, quorum, **targets)
    with pytest.raises(ImproperlyConfigured, match=message):
        pinner_from_settings()


def test_it_reads_each_targets_settings_from_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mintsite.settings",
        "DJANGO_SECRET_KEY": "test",
        "MINT_VAR_DIR": str(tmp_path / "var"),
        "IPFS_TARGETS": "kubo, Pinata",
        "IPFS_TARGET_PINATA_BACKEND": "pinning-service",
        "IPFS_TARGET_PINATA_PINNING_SERVICE_URL": "https://api.pinata.example/psa/",
        "IPFS_TARGET_PINATA_PINNING_SERVICE_TOKEN_FILE": str(token_file),
        "IPFS_PIN_QUORUM": "1",
    }
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        "from ipfs.backends import pinner_from_settings; p = pinner_from_settings(); "
        "print(json.dumps({'quorum': p.quorum, 'targets': [str(t) for t in p.targets], "
        "'token': p.target('pinata').pinner._http._client.headers['Authorization']}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == {
        "quorum": 1,
        "targets": [
            "kubo (Kubo RPC at http://127.0.0.1:5001)",
            "pinata (pinning service https://api.pinata.example/psa)",
        ],
        "token": "Bearer s3cret",
    }


# --- pinning to a quorum ----------------------------------------------------------------------


def test_a_token_is_pinned_once_a_quorum_holds_it_and_the_check_fills_the_rest(
    reference_models: Path, settings, store: LocalStore
) -> None:  # type: ignore[no-untyped-def]
    token = rendered_token(reference_models, "quorum")
    with KuboRpcServer(behaviour="times-out").running() as kubo:
        use_targets(settings, 1, local={}, kubo={"kubo_url": kubo.url})

        # When the Kubo node hangs, the local store alone is the quorum of one
        assert pipeline.run_pin(token.pk) == Token.Status.PINNED
        token.refresh_from_db()
        cids = {token.image_cid, token.metadata_cid}
        assert all(store.has_block(cid) for cid in cids) and not kubo.pins
        assert pins_at("local") == dict.fromkeys(cids, "PINNED")
        assert pins_at("kubo") == dict.fromkeys(cids, "MISSING")
        assert "BackendUnavailable" in Pin.objects.filter(target="kubo").first().error  # type: ignore[union-attr]

        # and the metrics say the node lacks both
        samples = scrape()
        assert value(samples, "mint_ipfs_pins", target="kubo", state="MISSING") == 2
        assert value(samples, "mint_ipfs_pins", target="local", state="PINNED") == 2
        assert value(samples, "mint_ipfs_cids_below_quorum") == 0

        # Once the node answers, the check copies both to it from the local store
        kubo.behaviour = "pins"
        outcome = check_pins()
        assert (outcome.checked, outcome.targets["kubo"].repinned) == (2, 2)
        assert outcome.targets["local"].held == 2
        assert kubo.pins == cids
        assert pins_at("kubo") == dict.fromkeys(cids, "PINNED")
        assert value(scrape(), "mint_ipfs_pins", target="kubo", state="MISSING") == 0


def test_below_the_quorum_the_stage_retries_and_then_asks_only_the_target_that_lacked_it(
    reference_models: Path, settings, kubo: KuboRpcServer
) -> None:  # type: ignore[no-untyped-def]
    token = rendered_token(reference_models, "below-quorum")
    with KuboRpcServer(behaviour="times-out").running() as slow:
        use_targets(
            settings, 0, kubo={"kubo_url": kubo.url}, slow={"backend": "kubo", "kubo_url": slow.url}
        )

        # Both must hold it: one hangs, so the stage raises for Dramatiq to retry it
        with pytest.raises(QuorumNotReached) as excinfo:
            pipeline.run_pin(token.pk)
        error = excinfo.value
        assert error.retryable and error.held == ["kubo"] and list(error.failed) == ["slow"]
        assert "fewer than IPFS_PIN_QUORUM=2" in str(error)
        token.refresh_from_db()
        assert token.status == Token.Status.RENDERED and token.image_cid == ""
        adds = kubo.calls_to("add")

        # The retry, once the slow node answers, asks only the node that lacked the pins
        slow.behaviour = "pins"
        assert pipeline.run_pin(token.pk) == Token.Status.PINNED
        token.refresh_from_db()
        assert kubo.calls_to("add") == adds + 1  # the metadata: it names the image, so new
        assert slow.pins == kubo.pins == {token.image_cid, token.metadata_cid}


def test_a_target_that_names_the_bytes_differently_never_counts(
    reference_models: Path, settings, store: LocalStore
) -> None:  # type: ignore[no-untyped-def]
    token = rendered_token(reference_models, "liar")
    with KuboRpcServer(behaviour="wrong-cid").running() as liar:
        use_targets(settings, 2, local={}, kubo={"kubo_url": liar.url})
        # two must hold it and the node answers another CID: no retry can help, the token fails
        with pytest.raises(errors.PinFailed) as excinfo:
            pipeline.run_pin(token.pk)
        assert excinfo.value.public == (
            "held by 1 IPFS target(s), fewer than IPFS_PIN_QUORUM=2 (kubo: CidMismatch)"
        )
        assert liar.url not in excinfo.value.public
        assert not liar.pins

        # with a quorum of one the local copy carries it, and the check cannot copy to the liar
        settings.IPFS_PIN_QUORUM = 1
        assert pipeline.run_pin(token.pk) == Token.Status.PINNED
        with pytest.raises(CommandError, match="2 pins still missing"):
            call_command("check_pins")
        assert "CidMismatch" in Pin.objects.filter(target="kubo").first().error  # type: ignore[union-attr]
        assert not liar.pins


# --- a provider's exit ------------------------------------------------------------------------


def test_a_providers_exit_costs_a_config_change_and_one_check(
    settings, store: LocalStore, kubo_b: KuboRpcServer, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    folder = make_folder(tmp_path / "weights")
    with KuboRpcServer().running() as kubo_a:
        use_targets(settings, 0, local={}, kubo={"kubo_url": kubo_a.url})
        cids = {
            pin_bytes(IMAGE, name="1.png", profile=UNIXFS_V1_2025),
            pin_bytes(METADATA, name="1.json", profile=UNIXFS_V1_2025),
            pin_folder(build_tree(folder, profile=UNIXFS_V1_2025), name="weights", source=folder),
        }
        assert set(kubo_a.pins) == cids
    # Provider A closes. The operator names provider B in its place and runs the check once.
    use_targets(settings, 0, local={}, kubo={"kubo_url": kubo_b.url})
    call_command("check_pins")  # no error: nothing is missing afterwards
    out = capsys.readouterr().out
    assert "checked 3 pinned CIDs" in out
    assert "kubo: 0 held, 3 pinned again, 0 missing" in out
    assert "local: 3 held, 0 pinned again, 0 missing" in out
    assert set(kubo_b.pins) == cids  # the folder too, built again from its files
    # The next check finds everything in place.
    call_command("check_pins")
    assert "kubo: 3 held, 0 pinned again, 0 missing" in capsys.readouterr().out


def test_a_check_reports_what_it_could_not_ask_and_a_dry_run_pins_nothing(
    settings, store: LocalStore, kubo: KuboRpcServer, capsys
) -> None:  # type: ignore[no-untyped-def]
    use_targets(settings, 1, local={}, kubo={"kubo_url": kubo.url})
    cid = pin_bytes(IMAGE, name="1.png", profile=UNIXFS_V1_2025)
    kubo.pins.clear()  # the node lost its pin (a garbage-collected repository)

    with pytest.raises(CommandError, match="1 pins still missing"):
        call_command("check_pins", "--dry-run")
    assert pins_at("kubo") == {cid: "MISSING"} and not kubo.pins

    kubo.behaviour = "times-out"
    with pytest.raises(CommandError, match="0 pins still missing, 1 not checked"):
        call_command("check_pins", "--target", "kubo")
    assert "check failed: BackendUnavailable" in Pin.objects.get(target="kubo").error
    assert "kubo: 0 held, 0 pinned again, 0 missing, 1 not asked" in capsys.readouterr().out

    with pytest.raises(CommandError, match="no IPFS target 'pinata'"):
        call_command("check_pins", "--target", "pinata")


def test_a_lost_folder_is_built_again_from_its_files_or_fetched_from_another_target(
    settings, store: LocalStore, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    backup = tmp_path / "backup"
    use_targets(settings, 0, local={}, backup={"backend": "local", "store_dir": str(backup)})
    folder = make_folder(tmp_path / "weights")
    root = pin_folder(build_tree(folder), name="weights", source=folder)
    shutil.rmtree(backup)  # the backup disk was replaced

    outcome = check_pins()
    assert outcome.targets["backup"].repinned == 1
    assert LocalStore(backup).has_block(root)

    # Files that changed since are no source: the folder comes block by block from the local
    # store, each block and file checked against its CID, and the copy is whole
    shutil.rmtree(backup)
    (folder / "weights.bin").write_bytes(b"retrained")
    outcome = check_pins()
    assert outcome.targets["backup"].repinned == 1 and not outcome.problems
    out = fetch_tree(
        root, tmp_path / "out", get_block=LocalStore(backup).block, get_file=LocalStore(backup).get
    )
    assert build_tree(out).root == root

    # With no target holding it and its files changed, the check says what it could not do
    shutil.rmtree(backup)
    shutil.rmtree(store.root)
    outcome = check_pins()
    assert outcome.targets["backup"].missing == outcome.targets["local"].missing == 1
    assert f"now give {build_tree(folder).root}, not {root}" in outcome.problems[0]
    assert "would not serve it" in outcome.problems[0]


def test_a_folder_whose_files_are_gone_is_fetched_from_a_kubo_node_that_holds_it(
    settings, store: LocalStore, kubo: KuboRpcServer, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    use_targets(settings, 0, local={}, kubo={"kubo_url": kubo.url})
    folder = make_folder(tmp_path / "weights")
    root = pin_folder(build_tree(folder, profile=UNIXFS_V1_2025), name="w", source=folder)
    shutil.rmtree(folder)
    shutil.rmtree(store.root)

    outcome = check_pins()
    assert outcome.targets["local"].repinned == 1 and outcome.targets["kubo"].held == 1
    assert kubo.calls_to("block/get") >= 1 and store.has_block(root)


# --- readiness, the sweep, the admin ----------------------------------------------------------


def test_readyz_passes_while_a_quorum_of_targets_answers(settings, store: LocalStore) -> None:  # type: ignore[no-untyped-def]
    with KuboRpcServer(behaviour="times-out").running() as kubo:
        use_targets(settings, 1, local={}, kubo={"kubo_url": kubo.url})
        line = check_ipfs(TIMEOUT)
        assert line.startswith("quorum 1 of 2: local: local store")
        assert "DOWN" in line and "kubo: BackendUnavailable" in line
        settings.IPFS_PIN_QUORUM = 2
        with pytest.raises(CheckFailed, match="only 1 of 2 IPFS targets answer"):
            check_ipfs(TIMEOUT)


def test_the_sweep_sends_a_check_that_an_io_worker_runs(
    settings, store: LocalStore, kubo: KuboRpcServer
) -> None:  # type: ignore[no-untyped-def]
    use_targets(settings, 1, local={}, kubo={"kubo_url": kubo.url})
    settings.PIN_CHECK_BATCH = 7
    cid = pin_bytes(IMAGE, name="1.png", profile=UNIXFS_V1_2025)
    kubo.pins.clear()

    broker = dramatiq.get_broker()
    broker.flush(IO_QUEUE)
    send_check()
    (message,) = waiting_messages(IO_QUEUE)
    assert (message["actor_name"], message["args"]) == (CHECK_PINS_ACTOR, [7])
    broker.flush(IO_QUEUE)

    tasks.check_pins(*message["args"])  # what the io worker runs for it
    assert kubo.pins == {cid}


def waiting_messages(queue: str) -> list[dict]:
    """The messages on ``queue``, as the broker holds them (read, not consumed)."""
    reader = contents(2.0)
    try:
        return list(reader.messages([queue]))
    finally:
        reader.close()


def test_the_admin_shows_each_tokens_pins_per_target(
    reference_models: Path, settings, store: LocalStore, kubo: KuboRpcServer
) -> None:  # type: ignore[no-untyped-def]
    token = rendered_token(reference_models, "admin-pins")
    use_targets(settings, 1, local={}, kubo={"kubo_url": kubo.url})
    kubo.behaviour = "wrong-cid"
    assert pipeline.run_pin(token.pk) == Token.Status.PINNED
    root = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(root)

    page = client.get(f"/admin/generation/token/{token.pk}/change/").content.decode()
    assert page.count("<b>local</b>: pinned") == 2
    assert page.count("<b>kubo</b>: MISSING") == 2 and "CidMismatch" in page

    token.refresh_from_db()
    below = "/admin/generation/pinnedcontent/?quorum=below"
    assert token.image_cid not in client.get(below).content.decode()  # local is the quorum
    settings.IPFS_PIN_QUORUM = 2
    listing = client.get(below).content.decode()
    assert token.image_cid in listing and token.metadata_cid in listing

    kubo.behaviour = "pins"
    image = PinnedContent.objects.get(cid=token.image_cid)
    broker = dramatiq.get_broker()
    broker.flush(IO_QUEUE)
    response = client.post(
        "/admin/generation/pinnedcontent/",
        {"action": "check_now", "_selected_action": [image.pk]},
        follow=True,
    )
    assert "Sent a check of 1 CIDs to the io workers" in response.content.decode()
    (message,) = waiting_messages(IO_QUEUE)
    broker.flush(IO_QUEUE)
    assert (message["actor_name"], message["args"]) == (CHECK_PINS_ACTOR, [1, [image.cid]])
    tasks.check_pins(*message["args"])  # what the io worker runs for it
    assert kubo.pins == {image.cid}  # the selected image only
    page = client.get(f"/admin/generation/pinnedcontent/{image.pk}/change/").content.decode()
    assert "<b>kubo</b>: pinned" in page and "<b>local</b>: pinned" in page

    # a manager sees her collection's pins, and cannot send checks
    ada = User.objects.create_user("ada", "ada@example.com", "pw", is_staff=True)
    token.collection.managers.add(ada)
    client.force_login(ada)
    listing = client.get("/admin/generation/pinnedcontent/").content.decode()
    assert token.image_cid in listing and "check_now" not in listing


@pytest.mark.django_db(transaction=True)
def test_the_migration_adopts_what_was_pinned_before_the_ledger(
    settings, store: LocalStore
) -> None:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("generation", "0018_cid_profile")], [("generation", "0019_pins")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    image, metadata = compute_cid(IMAGE, UNIXFS_V1_2025), compute_cid(METADATA, UNIXFS_V1_2025)
    collection = old.get_model("generation", "Collection").objects.create(
        slug="old", name="Old", chain_id=31337, contract_address="0x" + "ab" * 20,
        cid_profile="unixfs-v1-2025", contract_uri="ipfs://" + metadata, clip_threshold=0.2,
    )  # fmt: skip
    old.get_model("generation", "Token").objects.create(
        collection=collection, token_id=1, owner="0x" + "11" * 20, mint_tx_hash="0x" + "1" * 64,
        mint_log_index=0, mint_block_number=1, mint_block_hash="0x" + "2" * 64,
        image_cid=image, metadata_cid=metadata, status="FINAL",
    )  # fmt: skip
    store.add(IMAGE, UNIXFS_V1_2025)
    store.add(METADATA, UNIXFS_V1_2025)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)

    adopted = dict(PinnedContent.objects.values_list("cid", "label"))
    assert adopted == {image: "old-1.png", metadata: "old-1.json"}  # one row per CID
    assert not Pin.objects.exists()  # nothing is known of any target yet
    settings.IPFS_TARGETS = []
    outcome = check_pins()  # the first check asks, and records the local copies
    assert outcome.targets["local"].held == 2 and pins_at("local") == {
        image: "PINNED",
        metadata: "PINNED",
    }


def test_a_pinning_service_that_dropped_a_pin_is_asked_again(
    settings, store: LocalStore, kubo: KuboRpcServer
) -> None:  # type: ignore[no-untyped-def]
    with PinningServiceServer(polls_to_pin=1).running() as service:
        use_targets(
            settings,
            0,
            local={},
            pinata={
                "backend": "pinning-service",
                "pinning_service_url": service.url,
                "pinning_service_token": service.token,
                "kubo_url": kubo.url,  # the node that provides the bytes
            },
        )
        settings.IPFS_PIN_POLL_INTERVAL = 0.02
        cid = pin_bytes(IMAGE, name="1.png", profile=UNIXFS_V1_2025)
        assert service.count("POST") == 1 and pins_at("pinata") == {cid: "PINNED"}

        service.requests.clear()  # the service lost the request
        outcome = check_pins()
        assert outcome.targets["pinata"].repinned == 1 and outcome.targets["local"].held == 1
        assert service.count("POST") == 2
        assert [r["status"] for r in service.requests.values()] == ["pinned"]
