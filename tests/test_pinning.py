"""The backend registry: ``IPFS_BACKEND`` picks a class by name, the other ``IPFS_*`` settings
configure it, and a wrong value is named.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from ipfs.backends import (
    BACKENDS,
    PinningConfig,
    backend_class,
    build_pinner,
    pinner_from_settings,
)
from ipfs.backends.kubo import KuboPinner
from ipfs.backends.local import LocalPinner
from ipfs.backends.pinning_service import PinningServicePinner
from ipfs.cid import compute_cid
from ipfs.errors import BackendMisconfigured, IpfsError, UnknownBackend
from ipfs.store import LocalStore
from tests.ipfs_servers import KuboRpcServer

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # one chunk
METADATA = b'{"name":"token 1"}'


@pytest.mark.parametrize(
    ("name", "cls"),
    [("local", LocalPinner), ("kubo", KuboPinner), ("pinning-service", PinningServicePinner)],
)
def test_it_registers_each_backend_under_its_name(name: str, cls: type) -> None:
    assert backend_class(name) is cls
    assert BACKENDS[name].backend == name


def test_it_names_the_known_backends_when_asked_for_another(settings) -> None:  # type: ignore[no-untyped-def]
    config = dataclasses.replace(PinningConfig.from_settings(settings), backend="s3")
    with pytest.raises(UnknownBackend) as excinfo:
        build_pinner(config)
    error = excinfo.value
    assert str(error) == "IPFS_BACKEND='s3' is not one of local, kubo, pinning-service"
    assert error.setting == "IPFS_BACKEND"
    assert isinstance(error, IpfsError) and isinstance(error, LookupError)
    assert isinstance(error, BackendMisconfigured)


def test_it_builds_a_backend_from_plain_values_without_django_settings(tmp_path: Path) -> None:
    config = PinningConfig(
        backend="local",
        store_dir=tmp_path,
        kubo_url="http://127.0.0.1:5001",
        timeout=1.0,
        retries=0,
        retry_backoff=0.0,
        pinning_service_url="",
        pinning_service_token=None,
        pin_deadline=1.0,
        pin_poll_interval=1.0,
    )
    assert LocalStore(tmp_path).get(build_pinner(config).pin(METADATA)) == METADATA


def test_it_keeps_the_token_out_of_the_config_repr(settings) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_PINNING_SERVICE_TOKEN = "s3cret"
    assert "s3cret" not in repr(PinningConfig.from_settings(settings))


def test_it_uses_the_local_store_by_default(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_STORE_DIR = tmp_path / "ipfs"
    pinner = pinner_from_settings()
    (only,) = pinner.targets  # without IPFS_TARGETS, the one IPFS_BACKEND
    assert (only.name, pinner.quorum) == ("local", 1)
    assert isinstance(only.pinner, LocalPinner)
    assert pinner is pinner_from_settings()  # one instance per configuration
    cid = pinner.pin(METADATA)
    assert LocalStore(tmp_path / "ipfs").get(cid) == METADATA


def test_it_pins_through_the_configured_kubo(settings, kubo: KuboRpcServer) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_BACKEND = "kubo"
    settings.IPFS_KUBO_URL = kubo.url
    assert pinner_from_settings().pin(IMAGE) == compute_cid(IMAGE)
    assert kubo.pins == {compute_cid(IMAGE)}


def test_it_builds_the_pinning_service_backend_from_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_BACKEND = "pinning-service"
    settings.IPFS_PINNING_SERVICE_URL = "https://pins.example/psa"
    settings.IPFS_PINNING_SERVICE_TOKEN = "t0ken"
    pinner = pinner_from_settings().target("pinning-service").pinner
    assert isinstance(pinner, PinningServicePinner)
    assert isinstance(pinner.provider, KuboPinner)
    assert pinner.provider.url == settings.IPFS_KUBO_URL


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"IPFS_BACKEND": "s3"}, "IPFS_BACKEND='s3' is not one of local, kubo, pinning-service"),
        ({"IPFS_BACKEND": "kubo", "IPFS_KUBO_URL": "127.0.0.1:5001"}, "IPFS_KUBO_URL"),
        ({"IPFS_BACKEND": "kubo", "IPFS_TIMEOUT": 0}, "IPFS_TIMEOUT=0 must be positive"),
        (
            {"IPFS_BACKEND": "pinning-service", "IPFS_PINNING_SERVICE_URL": "https://p.example"},
            "IPFS_PINNING_SERVICE_TOKEN",
        ),
        (
            {"IPFS_BACKEND": "pinning-service", "IPFS_PINNING_SERVICE_TOKEN": "t"},
            "IPFS_PINNING_SERVICE_URL",
        ),
    ],
)
def test_it_names_the_setting_that_is_wrong(settings, overrides: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_PINNING_SERVICE_URL = ""
    settings.IPFS_PINNING_SERVICE_TOKEN = None
    for name, value in overrides.items():
        setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        pinner_from_settings()


def test_it_reads_the_ipfs_settings_from_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mintsite.settings",
        "DJANGO_SECRET_KEY": "test",
        "MINT_VAR_DIR": str(tmp_path / "var"),
        "IPFS_BACKEND": "Pinning-Service",
        "IPFS_KUBO_URL": "http://kubo:5001/",
        "IPFS_PINNING_SERVICE_URL": "https://pins.example/psa/",
        "IPFS_PINNING_SERVICE_TOKEN_FILE": str(token_file),
        "IPFS_RETRIES": "5",
    }
    names = [
        "IPFS_BACKEND",
        "IPFS_KUBO_URL",
        "IPFS_TIMEOUT",
        "IPFS_RETRIES",
        "IPFS_RETRY_BACKOFF",
        "IPFS_PINNING_SERVICE_URL",
        "IPFS_PINNING_SERVICE_TOKEN",
        "IPFS_PIN_DEADLINE",
        "IPFS_PIN_POLL_INTERVAL",
    ]
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == {
        "IPFS_BACKEND": "pinning-service",
        "IPFS_KUBO_URL": "http://kubo:5001",
        "IPFS_TIMEOUT": 60.0,
        "IPFS_RETRIES": 5,
        "IPFS_RETRY_BACKOFF": 0.5,
        "IPFS_PINNING_SERVICE_URL": "https://pins.example/psa",
        "IPFS_PINNING_SERVICE_TOKEN": "s3cret",
        "IPFS_PIN_DEADLINE": 60.0,
        "IPFS_PIN_POLL_INTERVAL": 2.0,
    }
