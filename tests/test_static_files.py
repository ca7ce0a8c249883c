"""Static files come from the web process itself (WhiteNoise), as production serves them.

``collectstatic`` writes every file under a name with its content hash, with gzip and brotli
copies beside it; gunicorn, started with the production settings (``MINT_ENV=production``, so
DEBUG off) and terminating TLS itself with no proxy in front, answers a hashed name with the
compressed copy the client asked for and a ten-year cache lifetime. The pages link the hashed
names.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import brotli
import httpx
import pytest
from django.test import Client, override_settings

from chain.anvil import free_port
from generation.models import Collection
from mintsite import settings as project_settings

REPO = Path(__file__).resolve().parent.parent
HOST = "mint.example.com"
TEN_YEARS = "max-age=315360000"


def production_environment(var_dir: Path) -> dict[str, str]:
    """What a production web host sets (docs/deploy.md), and nothing of this process's site."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MINT_", "GUNICORN_"))
    }
    env.update(
        MINT_VAR_DIR=str(var_dir),
        MINT_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS=HOST,
        METRICS_TOKEN=secrets.token_urlsafe(32),
        WEB_URL=f"https://{HOST}",
    )
    return env


@dataclass(frozen=True)
class Collected:
    root: Path  # STATIC_ROOT
    env: dict[str, str]
    manifest: dict[str, str]  # plain name -> hashed name


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Collected:
    """``collectstatic`` with the production settings. The API docs' bundles and DRF's
    browsable-API files (unused: the API answers JSON only) are left out: compressing them takes
    most of a minute and they add nothing the mint page's files do not show."""
    var = tmp_path_factory.mktemp("var")
    env = production_environment(var)
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput",
         "-i", "drf_spectacular_sidecar", "-i", "rest_framework"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    root = var / "static"
    manifest = json.loads((root / "staticfiles.json").read_text())["paths"]
    return Collected(root, env, manifest)


@pytest.fixture(scope="module")
def gunicorn(collected: Collected, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The production web server on HTTPS (a self-signed certificate), one worker."""
    tls = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={HOST}", "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    env = {
        **collected.env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_CERTFILE": str(tls / "cert.pem"),
        "GUNICORN_KEYFILE": str(tls / "key.pem"),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "4",
    }
    log = tmp_path_factory.mktemp("logs") / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "mintsite/gunicorn_conf.py"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", headers={"Host": HOST}, verify=False, timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"gunicorn did not start:\n{log.read_text()}") from None
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def fetch(base: str, path: str, encoding: str) -> httpx.Response:
    return httpx.get(
        f"{base}{path}",
        headers={"Host": HOST, "Accept-Encoding": encoding},
        verify=False,  # the test's self-signed certificate
        timeout=10,
    )


@pytest.mark.parametrize(
    ("accept", "served", "decode"),
    [("gzip", "gzip", gzip.decompress), ("br, gzip", "br", brotli.decompress)],
    ids=["gzip", "brotli"],
)
def test_it_serves_a_hashed_file_compressed_with_a_ten_year_lifetime(
    collected: Collected, gunicorn: str, accept: str, served: str, decode
) -> None:
    hashed = collected.manifest["mintsite/mint.js"]
    assert hashed != "mintsite/mint.js" and hashed.startswith("mintsite/mint.")
    # Given a collector's browser asking for the mint page's script by its hashed name
    with httpx.stream(
        "GET",
        f"{gunicorn}/static/{hashed}",
        headers={"Host": HOST, "Accept-Encoding": accept},
        verify=False,
        timeout=10,
    ) as response:
        raw = b"".join(response.iter_raw())  # the bytes on the wire, not decoded by httpx
    # Then it gets the compressed copy, cacheable for good, of the file as committed
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == served
    assert "javascript" in response.headers["Content-Type"]
    assert TEN_YEARS in response.headers["Cache-Control"]
    assert "immutable" in response.headers["Cache-Control"]
    assert "Accept-Encoding" in response.headers["Vary"]
    source = (REPO / "mintsite" / "static" / "mintsite" / "mint.js").read_bytes()
    assert decode(raw) == source
    assert len(raw) < len(source) / 2


def test_a_client_that_accepts_no_compression_gets_the_file_as_is(
    collected: Collected, gunicorn: str
) -> None:
    response = fetch(gunicorn, f"/static/{collected.manifest['mintsite/site.css']}", "identity")
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert response.content == (REPO / "mintsite/static/mintsite/site.css").read_bytes()


def test_a_plain_name_is_served_but_kept_only_briefly(collected: Collected, gunicorn: str) -> None:
    # an old page (or a bookmark) may still ask for the plain name: it answers, but a browser
    # must not keep it, since the next release may change it under the same name
    response = fetch(gunicorn, "/static/mintsite/mint.js", "gzip")
    assert response.status_code == 200
    assert "immutable" not in response.headers["Cache-Control"]
    assert TEN_YEARS not in response.headers["Cache-Control"]


def test_a_file_that_was_not_collected_is_not_found(collected: Collected, gunicorn: str) -> None:
    assert fetch(gunicorn, "/static/mintsite/nothing.0123456789ab.js", "gzip").status_code == 404


@pytest.mark.django_db
def test_the_mint_page_links_the_hashed_names(collected: Collected, client: Client) -> None:
    Collection.objects.create(
        slug="aurora",
        name="Aurora",
        chain_id=31337,
        contract_address=f"0x{1:040x}",
        model_dir="m",
        clip_dir="c",
        prompt_template="p",
        style_prompt="s",
        clip_threshold=0.2,
    )
    # the project's static storage (tests/conftest.py swaps in plain names for the other tests)
    with override_settings(STORAGES=project_settings.STORAGES, STATIC_ROOT=collected.root):
        page = client.get("/c/aurora/").content.decode()
    for name in ("mintsite/mint.js", "mintsite/vendor/ethers.umd.min.js", "mintsite/site.css"):
        assert f"/static/{collected.manifest[name]}" in page
        assert f"/static/{name}" not in page
