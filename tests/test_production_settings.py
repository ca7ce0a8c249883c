"""MINT_ENV=production: Django's deployment checklist passes, and a missing secret stops the
process at start with the variable's name, before anything is served.

Each case starts ``manage.py`` in a subprocess with a clean environment, as systemd would.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HOST = "mint.example.com"
METRICS_TOKEN = secrets.token_urlsafe(32)


def environment(tmp_path: Path, **variables: str | None) -> dict[str, str]:
    """This process's environment without Django's or the site's settings, plus ``variables``
    (a value of None removes the variable). var/ is a fresh directory: no key file in it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MINT_", "SECURE_"))}
    env.update(
        MINT_VAR_DIR=str(tmp_path / "var"),
        MINT_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS=HOST,
        METRICS_TOKEN=METRICS_TOKEN,
        WEB_URL=f"https://{HOST}",
    )
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_deployment_checklist_passes_with_production_settings(tmp_path: Path) -> None:
    result = manage(environment(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_turns_on_https_only_cookies_redirects_and_hsts(tmp_path: Path) -> None:
    env = environment(tmp_path, DJANGO_BEHIND_TLS_PROXY="1")
    names = [
        "DEBUG",
        "ALLOWED_HOSTS",
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "SECURE_PROXY_SSL_HEADER",
    ]
    script = f"from django.conf import settings; print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    result = manage(env, "shell", "-c", f"import json; {script}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "DEBUG": False,
        "ALLOWED_HOSTS": [HOST],
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


def test_the_secret_key_may_come_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text(secrets.token_urlsafe(50) + "\n")
    env = environment(tmp_path, DJANGO_SECRET_KEY=None, DJANGO_SECRET_KEY_FILE=str(key_file))
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"DJANGO_SECRET_KEY": None},
            "MINT_ENV=production needs DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE",
        ),
        (
            {"DJANGO_SECRET_KEY": None, "DJANGO_SECRET_KEY_FILE": "/nonexistent/secret"},
            "DJANGO_SECRET_KEY_FILE='/nonexistent/secret' cannot be read",
        ),
        ({"DJANGO_ALLOWED_HOSTS": None}, "MINT_ENV=production needs DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_DEBUG": "1"}, "DJANGO_DEBUG is on with MINT_ENV=production"),
        ({"MINT_ENV": "prod"}, "MINT_ENV='prod': use development (the default) or production"),
        (
            {"METRICS_TOKEN": None},
            "MINT_ENV=production needs METRICS_TOKEN (or METRICS_TOKEN_FILE",
        ),
        ({"WEB_URL": None}, "MINT_ENV=production needs WEB_URL, the site's public URL"),
        (
            {"BROKER_URL": "http://mq.internal:5672/"},
            "BROKER_URL must be a redis://, rediss:// or unix:// URL (Redis) or an amqp:// or "
            "amqps:// URL (RabbitMQ), not http://",
        ),
    ],
    ids=[
        "no-secret-key",
        "unreadable-key-file",
        "no-allowed-hosts",
        "debug",
        "unknown-env",
        "no-metrics-token",
        "no-web-url",
        "unknown-broker",
    ],
)
def test_a_missing_or_unsafe_setting_stops_the_process_naming_it(
    tmp_path: Path, variables: dict[str, str | None], message: str
) -> None:
    result = manage(environment(tmp_path, **variables), "check", "--deploy")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_production_ignores_the_key_file_the_embedded_stack_generates(tmp_path: Path) -> None:
    # Given a var/ where `make run` once generated its key
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret_key").write_text(secrets.token_urlsafe(50))
    # a production start without DJANGO_SECRET_KEY still refuses to run
    result = manage(environment(tmp_path, DJANGO_SECRET_KEY=None), "check")
    assert result.returncode != 0
    assert "needs DJANGO_SECRET_KEY" in result.stderr


def test_the_embedded_defaults_still_start_without_any_production_variable(
    tmp_path: Path,
) -> None:
    env = environment(
        tmp_path,
        MINT_ENV=None,
        DJANGO_SECRET_KEY=None,
        DJANGO_ALLOWED_HOSTS=None,
        METRICS_TOKEN=None,
        WEB_URL=None,
    )
    result = manage(env, "check")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "secret_key").exists()  # generated for the embedded stack
    # and the deployment checklist names what production would change
    deploy = manage(env, "check", "--deploy")
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in deploy.stdout + deploy.stderr


def test_production_never_signs_with_the_public_anvil_keys_even_on_chain_31337(
    tmp_path: Path,
) -> None:
    # Given production mode on a chain that happens to use anvil's id, and no keys configured
    code = "from chain import wallets; print(wallets.publisher(31337).address)"
    result = manage(environment(tmp_path), "shell", "-c", code)
    # Then no key is made up from anvil's well-known ones: the process says what to set
    assert result.returncode != 0
    assert "PUBLISHER_KEY" in result.stderr and "never with MINT_ENV=production" in result.stderr


def test_the_embedded_stacks_generated_secret_key_is_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    env = environment(tmp_path, MINT_ENV="development", DJANGO_SECRET_KEY=None)
    result = manage(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(key_file.read_text()) > 40


# What a client on the internet gets from the operator's endpoints in production: each request
# goes through the whole Django stack of the production settings, in the subprocess.
PROBE = """
import json
from django.test import Client
client = Client(HTTP_HOST={host!r}, secure=True)
answers = {{}}
for name, headers in {{"none": {{}}, "wrong": {{"Authorization": "Bearer wrong"}},
                       "token": {{"Authorization": "Bearer " + {token!r}}}}}.items():
    ready = client.get("/readyz", headers=headers)
    metrics = client.get("/metrics", headers=headers)
    answers[name] = {{"readyz": [ready.status_code, ready.json()], "metrics": metrics.status_code}}
print(json.dumps(answers))
"""


def test_production_shows_metrics_and_readiness_details_only_for_the_metrics_token(
    tmp_path: Path,
) -> None:
    # Given production settings whose chain and broker are unreachable
    env = environment(tmp_path, RPC_URL="http://10.255.0.1:8545", REDIS_URL="redis://127.0.0.1:1/0")
    code = PROBE.format(host=HOST, token=METRICS_TOKEN)
    result = manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])

    # Without the token, or with a wrong one: /readyz still says 503 for the load balancer,
    # naming no host, path or error; /metrics is refused
    for who in ("none", "wrong"):
        status, body = answers[who]["readyz"]
        assert status == 503
        assert set(body) == {"status", "checks_hidden"} and body["status"] == "not ready"
        assert "10.255.0.1" not in json.dumps(body) and "127.0.0.1" not in json.dumps(body)
        assert answers[who]["metrics"] == 401
    # With it, the operator sees each check and its error
    status, body = answers["token"]["readyz"]
    assert status == 503
    checks = {check["name"]: check for check in body["checks"]}
    assert "10.255.0.1" in checks["chain"]["error"]
    assert answers["token"]["metrics"] == 200
