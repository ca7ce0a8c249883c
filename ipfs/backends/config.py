"""What the pinning backends are configured with: the ``IPFS_*`` settings, as plain values.

The backends never read Django's settings themselves; :meth:`PinningConfig.from_settings`
reads the values from any object that has them (``django.conf.settings`` in the project), and
the checks below raise :class:`~ipfs.errors.BackendMisconfigured` naming the setting at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ipfs.errors import BackendMisconfigured

__all__ = ["PinningConfig", "setting_name"]


def setting_name(field_name: str) -> str:
    """The setting (and environment variable) a :class:`PinningConfig` field is read from."""
    return f"IPFS_{field_name.upper()}"


@dataclass(frozen=True)
class PinningConfig:
    """Every field is the setting ``IPFS_<FIELD>`` (mintsite/settings.py documents each).

    Frozen and hashable: one pinner (and connection pool) is kept per distinct configuration.
    """

    backend: str
    store_dir: Path
    kubo_url: str
    timeout: float
    retries: int
    retry_backoff: float
    pinning_service_url: str
    pinning_service_token: str | None = field(repr=False)  # a secret: never in a log line
    pin_deadline: float
    pin_poll_interval: float

    @classmethod
    def from_settings(cls, settings: object) -> PinningConfig:
        """Read ``IPFS_<FIELD>`` for each field from ``settings``."""
        return cls(**{f.name: getattr(settings, setting_name(f.name)) for f in fields(cls)})

    def positive(self, name: str) -> float:
        value = float(getattr(self, name))
        if value <= 0:
            raise BackendMisconfigured(
                f"{setting_name(name)}={value:g} must be positive", setting=setting_name(name)
            )
        return value

    def at_least_zero(self, name: str) -> float:
        value = float(getattr(self, name))
        if value < 0:
            raise BackendMisconfigured(
                f"{setting_name(name)}={value:g} must be at least 0", setting=setting_name(name)
            )
        return value

    def http_url(self, name: str) -> str:
        value = str(getattr(self, name) or "")
        if not value.startswith(("http://", "https://")):
            raise BackendMisconfigured(
                f"{setting_name(name)}={value!r} must be an http:// or https:// URL",
                setting=setting_name(name),
            )
        return value
