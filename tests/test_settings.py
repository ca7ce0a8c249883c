"""Configuration errors name the variable and what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from foundation.env import env_bool, env_int, env_str


@pytest.mark.parametrize(
    ("reader", "value", "message"),
    [
        (lambda: env_int("MINT_X", 1), "ten", "MINT_X='ten' is not an integer"),
        (lambda: env_int("MINT_X", 1, minimum=0), "-3", "MINT_X=-3 must be at least 0"),
        (lambda: env_bool("MINT_X"), "maybe", "MINT_X='maybe' is not a boolean"),
    ],
)
def test_it_names_the_variable_with_a_bad_value(
    monkeypatch: pytest.MonkeyPatch,
    reader,
    value: str,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("MINT_X", value)
    with pytest.raises(ImproperlyConfigured, match=message.replace("(", r"\(")):
        reader()


def test_it_reads_a_secret_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("0xabc\n")
    monkeypatch.setenv("MINT_KEY_FILE", str(secret))
    assert env_str("MINT_KEY") == "0xabc"
    monkeypatch.setenv("MINT_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="MINT_KEY_FILE"):
        env_str("MINT_KEY")


def test_the_system_check_names_a_variable_no_longer_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.checks import run_checks

    assert not [m for m in run_checks() if m.id == "mintsite.W001"]
    monkeypatch.setenv("API_POLL_INTERVAL", "0.5")
    (warning,) = [m for m in run_checks() if m.id == "mintsite.W001"]
    assert "API_POLL_INTERVAL is set but no longer read" in warning.msg
    assert "API_RECHECK_SECONDS" in warning.msg
