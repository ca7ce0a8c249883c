"""Error reports (Sentry): off without a DSN; with one, a failing request and a failing task in
a real worker arrive at the receiver, named, with no key, password or token in them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import sentry_sdk

from mintsite.observability.error_reports import FILTERED, Scrubber, is_secret_name
from tests.sentry_receiver import PROJECT_ID, SentryReceiver

REPO = Path(__file__).resolve().parent.parent
HOST = "mint.example.com"


def test_it_is_off_without_a_dsn() -> None:
    # the test run sets no SENTRY_DSN: the SDK was never started, so nothing is sent anywhere
    assert not os.environ.get("SENTRY_DSN")
    assert not sentry_sdk.is_initialized()


def test_a_failing_request_and_a_failing_task_are_reported_without_secrets(
    tmp_path: Path,
) -> None:
    secret = {
        "DEPLOYER_KEY": "0x" + secrets.token_hex(32),
        "PUBLISHER_KEY": "0x" + secrets.token_hex(32),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "METRICS_TOKEN": secrets.token_urlsafe(32),
        "IPFS_PINNING_SERVICE_TOKEN": secrets.token_urlsafe(32),
        "PROBE_API_KEY": f"mint_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}",
        "PROBE_SESSION": secrets.token_urlsafe(24),
        "RPC_PROVIDER_KEY": secrets.token_hex(16),
    }
    client_address = "203.0.113.7"
    (tmp_path / "var").mkdir()
    with SentryReceiver().running() as receiver:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "MINT_", "SENTRY_")) and k != "DATABASE_URL"
        }
        env.update(
            {name: value for name, value in secret.items() if name != "RPC_PROVIDER_KEY"},
            MINT_VAR_DIR=str(tmp_path / "var"),  # an SQLite file with no tables
            MINT_ENV="production",
            DJANGO_ALLOWED_HOSTS=HOST,
            WEB_URL=f"https://{HOST}",
            RPC_URL=f"https://eth.provider.example/v3/{secret['RPC_PROVIDER_KEY']}",
            SENTRY_DSN=receiver.dsn,
            PROBE_CLIENT_ADDRESS=client_address,
        )
        result = subprocess.run(
            [sys.executable, "-m", "tests.sentry_probe"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        events = receiver.events()

    assert receiver.paths and all(p == f"/api/{PROJECT_ID}/envelope/" for p in receiver.paths)

    # Then each failure arrived once at least, naming its exception, tagged with the deployment
    def reported(exception: str) -> dict:
        return next(
            event
            for event in events
            if exception
            in {value["type"] for value in event.get("exception", {}).get("values", [])}
        )

    request_event, task_event = reported("OperationalError"), reported("SigningFailed")
    assert request_event["request"]["url"] == f"https://{HOST}/c/aurora/"
    assert request_event["transaction"] == "/c/{slug}/"
    assert task_event["transaction"] == "publish_batch"
    assert task_event["extra"]["stage"] == "publish_batch"  # the log context came along
    for event in (request_event, task_event):
        assert event["environment"] == "production"
        assert event["release"].startswith("mint-on-demand@")
    # the task's frame kept its variables, with the secret ones filtered
    frame = task_event["exception"]["values"][-1]["stacktrace"]["frames"][-1]
    assert frame["function"] == "publish_batch"
    assert frame["vars"]["batch"] == "7"
    assert frame["vars"]["signer"] == f"{FILTERED!r}"  # by its value: "signer" is no secret name
    assert frame["vars"]["headers"]["Authorization"] == FILTERED
    assert (
        "eth.provider.example" in frame["vars"]["node"]
    )  # the host stays; the key in its path not
    # the request's headers without the credentials, and no cookie
    headers = request_event["request"].get("headers", {})
    assert headers.get("Authorization") in (None, FILTERED)
    assert headers.get("Cookie") in (None, FILTERED)
    assert "cookies" not in request_event["request"] or not request_event["request"]["cookies"]
    assert request_event["request"]["data"] in ("", None)  # bodies are never sent
    # and none of the secrets anywhere in what was sent, in any form
    sent = b"\n".join(envelope.raw for envelope in receiver.envelopes).decode()
    for name, value in secret.items():
        for form in {value, value.removeprefix("0x"), json.dumps(value)[1:-1]}:
            assert form not in sent, f"{name} was sent"
    assert client_address not in sent  # no personal data: the client's address stays here


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("Proxy-Authorization", True),
        ("Cookie", True),
        ("X-Api-Key", True),
        ("private_key", True),
        ("PUBLISHER_KEY", True),
        ("key", True),
        ("keystore_password", True),
        ("DJANGO_SECRET_KEY", True),
        ("METRICS_TOKEN", True),
        ("token", True),
        ("sessionid", True),
        ("mnemonic", True),
        ("Mint-Signature", True),
        ("token_pk", False),
        ("token_id", False),
        ("collection", False),
        ("tx_hash", False),
        ("url", False),
    ],
)
def test_it_knows_a_secret_by_its_name(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (f"signed with 0x{KEY}", f"signed with {FILTERED}"),
        (f"key={KEY}.", f"key={FILTERED}."),
        ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {FILTERED}"),
        ("basic dXNlcjpwYXNz", f"basic {FILTERED}"),
        ("key mint_1a2b3c4d_Zm9vYmFyYmF6cXV4cXV1eA", f"key mint_1a2b3c4d_{FILTERED}"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", f"whsec_{FILTERED}"),
        ("redis://:hunter2hunter2@cache:6379/0", f"redis://{FILTERED}@cache:6379/0"),
        ("https://mainnet.infura.io/v3/0123abcd", f"https://mainnet.infura.io/{FILTERED}"),
        ("https://rpc.example?key=0123abcd", f"https://rpc.example/{FILTERED}"),
        (
            "Max retries exceeded with url: /v3/0123abcd (Caused by",
            f"Max retries exceeded with url: {FILTERED} (Caused by",
        ),
        # the site's own pages keep their path; a host alone has nothing to hide
        (
            "https://mint.example.com/c/aurora/?owner=0x12",
            "https://mint.example.com/c/aurora/?owner=0x12",
        ),
        ("https://rpc.example:8545", "https://rpc.example:8545"),
        ("token_pk=7 collection=aurora attempt 2", "token_pk=7 collection=aurora attempt 2"),
    ],
)
def test_it_scrubs_secrets_from_text(text: str, scrubbed: str) -> None:
    assert Scrubber(own_hosts=[HOST]).text(text) == scrubbed


def test_it_scrubs_by_name_at_any_depth() -> None:
    event = {
        "request": {"headers": {"Authorization": "Bearer x", "Accept": "*/*"}},
        "extra": {"deep": [{"password": "hunter2", "token_pk": 7}]},
        "empty": {"api_key": None},
    }
    assert Scrubber().scrub(event) == {
        "request": {"headers": {"Authorization": FILTERED, "Accept": "*/*"}},
        "extra": {"deep": [{"password": FILTERED, "token_pk": 7}]},
        "empty": {"api_key": None},
    }
