"""Shared fixtures: real services only (anvil, a Redis broker, the reference models)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from chain.anvil import free_port


@pytest.fixture(scope="session", autouse=True)
def isolated_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the tests' IPFS store and renders out of the ``var/`` that ``make run`` uses."""
    root = tmp_path_factory.mktemp("storage")
    saved = settings.IPFS_STORE_DIR, settings.RENDER_CACHE_DIR
    settings.IPFS_STORE_DIR, settings.RENDER_CACHE_DIR = root / "ipfs", root / "renders"
    yield root
    settings.IPFS_STORE_DIR, settings.RENDER_CACHE_DIR = saved


@pytest.fixture(scope="session")
def reference_models() -> Path:
    """The reference models under settings.REFERENCE_MODELS_DIR, built once if missing."""
    from generation.reference_models import build_reference_models, manifest_matches

    out = Path(settings.REFERENCE_MODELS_DIR)
    if not manifest_matches(out):
        build_reference_models(out)
    return out


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``REDIS_URL`` when set (CI: the machine's Redis), else the embedded redis-server."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    from mintsite.embedded_redis import start_embedded_redis

    port = free_port()
    process = start_embedded_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def dramatiq_namespace() -> str:
    """A namespace of its own, so no test sees another's (or a running stack's) messages."""
    return f"mint-test-{uuid.uuid4().hex[:12]}"
