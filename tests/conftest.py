"""Shared fixtures: real services only (anvil, a Redis broker, the reference models)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.test import override_settings
from web3 import Web3

from chain.anvil import Anvil, start_anvil
from ipfs.store import LocalStore
from mintsite.database_url import current_database_url
from tests.ipfs_servers import KuboRpcServer
from tests.people import staff

if TYPE_CHECKING:
    from django.contrib.auth.models import User

database_url = current_database_url  # the test database, for processes a test starts


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """A real local chain for the module: automine, blocks mined by the tests as needed."""
    with start_anvil() as node:
        yield node


@pytest.fixture
def w3(anvil: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.rpc_url))


@pytest.fixture(scope="session", autouse=True)
def isolated_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the tests' IPFS store and renders out of the ``var/`` that ``make run`` uses."""
    root = tmp_path_factory.mktemp("storage")
    saved = settings.IPFS_STORE_DIR, settings.RENDER_CACHE_DIR
    settings.IPFS_STORE_DIR, settings.RENDER_CACHE_DIR = root / "ipfs", root / "renders"
    yield root
    settings.IPFS_STORE_DIR, settings.RENDER_CACHE_DIR = saved


@pytest.fixture(scope="session", autouse=True)
def static_files_by_plain_names(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Pages link static files by their plain names, served from the apps' folders.

    The hashed, compressed names need a `collectstatic` (most of a minute: the API docs'
    bundles), and pages without it would fail; tests/test_static_files.py runs one and tests
    that configuration as production serves it. STATIC_ROOT is an empty folder, so WhiteNoise
    serves nothing left over in var/static."""
    plain = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=plain, STATIC_ROOT=tmp_path_factory.mktemp("static")):
        yield


@pytest.fixture
def store(settings, tmp_path: Path) -> LocalStore:  # type: ignore[no-untyped-def]
    """An empty local IPFS store, the one the gateway view serves for this test."""
    settings.IPFS_STORE_DIR = tmp_path / "ipfs"
    return LocalStore(tmp_path / "ipfs")


@pytest.fixture
def kubo() -> Iterator[KuboRpcServer]:
    """A Kubo RPC node on 127.0.0.1 that adds, pins and serves content as a healthy one does."""
    with KuboRpcServer().running() as server:
        yield server


@pytest.fixture(scope="session")
def reference_models() -> Path:
    """The reference models under settings.REFERENCE_MODELS_DIR, built once if missing."""
    from generation.reference_models import build_reference_models, manifest_matches

    out = Path(settings.REFERENCE_MODELS_DIR)
    if not manifest_matches(out):
        build_reference_models(out)
    return out


WORLD_RENDER_SEEDS = ("world-render:0", "world-render:1", "world-render:2", "world-render:3")


@pytest.fixture(scope="session")
def world_renders() -> list:  # list[PIL.Image.Image]
    """Four honest renders of the committed reference-world diffusion model (traits drawn with
    the collection's odds from ``WORLD_RENDER_SEEDS``, the world collection's steps and
    guidance, one CPU thread), made once per session: about a second in all."""
    from generation.reference_world.collection import GATE
    from generation.reference_world.samples import render_captions
    from generation.reference_world.world import caption, world_traits
    from generation.rendering import Renderer

    seeds = [name.encode() for name in WORLD_RENDER_SEEDS]
    renderer = Renderer(Path(settings.REFERENCE_WORLD_DIR) / "diffusion", device="cpu")
    return render_captions(
        renderer,
        [caption(world_traits(seed)) for seed in seeds],
        lambda i: seeds[i],
        steps=GATE.steps,
        guidance=GATE.guidance,
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The broker the project's processes and this one share: ``REDIS_URL``.

    ``make test`` sets it (the machine's Redis in CI, else an embedded redis-server started for
    the run by tests/with_broker.py); it must be set before Django loads, which binds the broker.
    """
    configured = os.environ.get("REDIS_URL")
    if not configured:
        pytest.fail(
            "REDIS_URL is not set: run the suite with `make test`, or "
            "`.venv/bin/python -m tests.with_broker .venv/bin/python -m pytest ...`"
        )
    return configured


# --- the admin's personas (tests/people.py) ---------------------------------------------------


@pytest.fixture
def ada() -> User:
    return staff("ada")


@pytest.fixture
def bob() -> User:
    return staff("bob")


@pytest.fixture
def root() -> User:
    return staff("root", superuser=True)
