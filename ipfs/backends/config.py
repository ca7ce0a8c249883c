"""What the pinning backends are configured with: the ``IPFS_*`` settings, as plain values.

The backends never read Django's settings themselves; :meth:`PinningConfig.from_settings`
reads the values from any object that has them (``django.conf.settings`` in the project), and
the checks below raise :class:`~ipfs.errors.BackendMisconfigured` naming the setting at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ipfs.errors import BackendMisconfigured

__all__ = [
    "BACKEND_NAMES",
    "TARGET_FIELDS",
    "PinningConfig",
    "TargetsConfig",
    "setting_name",
    "target_setting_name",
]

#: The fields a target may set for itself (``IPFS_TARGET_<NAME>_<FIELD>``); the others (timeouts,
#: retries, deadlines) are the ``IPFS_*`` settings every target shares.
TARGET_FIELDS = ("backend", "store_dir", "kubo_url", "pinning_service_url", "pinning_service_token")
#: The fields that say where each backend keeps its pins: two targets equal on these are one.
#: Its keys are the backends' names (ipfs/backends/__init__.py checks they match the registry).
_WHERE: dict[str, tuple[str, ...]] = {
    "local": ("store_dir",),
    "kubo": ("kubo_url",),
    "pinning-service": ("pinning_service_url",),
}
BACKEND_NAMES = tuple(_WHERE)
_TARGET_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def setting_name(field_name: str) -> str:
    """The setting (and environment variable) a :class:`PinningConfig` field is read from."""
    return f"IPFS_{field_name.upper()}"


def target_setting_name(target: str, field_name: str) -> str:
    """The variable that sets ``field_name`` for one target: ``IPFS_TARGET_PINATA_KUBO_URL``."""
    return f"IPFS_TARGET_{target.upper().replace('-', '_')}_{field_name.upper()}"


@dataclass(frozen=True)
class PinningConfig:
    """Every field is the setting ``IPFS_<FIELD>`` (mintsite/settings.py documents each), or,
    for one of several targets, ``IPFS_TARGET_<NAME>_<FIELD>`` where the target sets it.

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
    target: str = ""  # the target's name, where this is one of IPFS_TARGETS
    own: frozenset[str] = frozenset()  # the fields the target set for itself

    @classmethod
    def from_settings(cls, settings: object) -> PinningConfig:
        """Read ``IPFS_<FIELD>`` for each field from ``settings``."""
        return cls(**{name: getattr(settings, setting_name(name)) for name in _SETTINGS})

    def for_target(self, name: str, overrides: dict[str, Any]) -> PinningConfig:
        """This configuration as target ``name`` sees it: ``overrides`` (fields of
        :data:`TARGET_FIELDS` the target set) replace the shared values."""
        unknown = sorted(set(overrides) - set(TARGET_FIELDS))
        if unknown:
            raise BackendMisconfigured(
                f"{target_setting_name(name, unknown[0])} is not a target setting; a target "
                f"sets {', '.join(f.upper() for f in TARGET_FIELDS)}",
                setting=target_setting_name(name, unknown[0]),
            )
        given = {k: v for k, v in overrides.items() if v not in (None, "")}
        if "store_dir" in given:
            given["store_dir"] = Path(given["store_dir"])
        for url in ("kubo_url", "pinning_service_url"):
            if url in given:
                given[url] = str(given[url]).rstrip("/")
        return replace(self, **given, target=name, own=frozenset(given))

    def setting(self, name: str) -> str:
        """The variable that gave field ``name`` its value, for error messages."""
        return target_setting_name(self.target, name) if name in self.own else setting_name(name)

    def where(self) -> tuple[str, ...]:
        """What names the place this backend keeps pins (its store, node or service)."""
        return (self.backend, *(str(getattr(self, f)) for f in _WHERE.get(self.backend, ())))

    def positive(self, name: str) -> float:
        value = float(getattr(self, name))
        if value <= 0:
            raise BackendMisconfigured(
                f"{self.setting(name)}={value:g} must be positive", setting=self.setting(name)
            )
        return value

    def at_least_zero(self, name: str) -> float:
        value = float(getattr(self, name))
        if value < 0:
            raise BackendMisconfigured(
                f"{self.setting(name)}={value:g} must be at least 0", setting=self.setting(name)
            )
        return value

    def http_url(self, name: str) -> str:
        value = str(getattr(self, name) or "")
        if not value.startswith(("http://", "https://")):
            raise BackendMisconfigured(
                f"{self.setting(name)}={value!r} must be an http:// or https:// URL",
                setting=self.setting(name),
            )
        return value


_SETTINGS = (
    "backend",
    "store_dir",
    "kubo_url",
    "timeout",
    "retries",
    "retry_backoff",
    "pinning_service_url",
    "pinning_service_token",
    "pin_deadline",
    "pin_poll_interval",
)


@dataclass(frozen=True)
class TargetsConfig:
    """Where every pin goes (``IPFS_TARGETS``) and how many must hold it (``IPFS_PIN_QUORUM``).

    Without ``IPFS_TARGETS`` there is one target, named after ``IPFS_BACKEND`` and configured by
    the ``IPFS_*`` settings, as before targets existed.
    """

    targets: tuple[PinningConfig, ...]
    quorum: int

    @classmethod
    def from_settings(cls, settings: object) -> TargetsConfig:
        """Read ``IPFS_TARGETS``, ``IPFS_TARGET_SETTINGS`` (each target's own values, from its
        ``IPFS_TARGET_<NAME>_<FIELD>`` variables) and ``IPFS_PIN_QUORUM`` from ``settings``."""
        shared = PinningConfig.from_settings(settings)
        names = list(getattr(settings, "IPFS_TARGETS", None) or [])
        if not names:
            return cls((shared,), 1)
        own: dict[str, dict[str, Any]] = getattr(settings, "IPFS_TARGET_SETTINGS", None) or {}
        return cls.build(shared, names, own, int(getattr(settings, "IPFS_PIN_QUORUM", 0) or 0))

    @classmethod
    def build(
        cls, shared: PinningConfig, names: list[str], own: dict[str, dict[str, Any]], quorum: int
    ) -> TargetsConfig:
        """The targets ``names``, each ``shared`` with its ``own`` values; ``quorum`` 0 means
        every target. Raises :class:`~ipfs.errors.BackendMisconfigured` naming the variable."""
        targets: list[PinningConfig] = []
        for raw in names:
            name = str(raw).strip().lower()
            if not _TARGET_NAME.match(name):
                raise BackendMisconfigured(
                    f"IPFS_TARGETS names {raw!r}: a target's name is a lowercase letter then "
                    "letters, digits or '-', at most 40 characters",
                    setting="IPFS_TARGETS",
                )
            if any(t.target == name for t in targets):
                raise BackendMisconfigured(
                    f"IPFS_TARGETS names {name!r} twice", setting="IPFS_TARGETS"
                )
            values = dict(own.get(name) or {})
            if not values.get("backend"):
                if name not in BACKEND_NAMES:
                    variable = target_setting_name(name, "backend")
                    raise BackendMisconfigured(
                        f"IPFS_TARGETS names {name!r}, which is not a backend's name "
                        f"({', '.join(BACKEND_NAMES)}), so {variable} must say which it is",
                        setting=variable,
                    )
                values["backend"] = name
            values["backend"] = str(values["backend"]).strip().lower()
            config = shared.for_target(name, values)
            same = next((t for t in targets if t.where() == config.where()), None)
            if same is not None:
                raise BackendMisconfigured(
                    f"IPFS_TARGETS {same.target!r} and {name!r} are the same place "
                    f"({', '.join(config.where())}): a quorum needs separate copies",
                    setting="IPFS_TARGETS",
                )
            targets.append(config)
        if quorum == 0:
            quorum = len(targets)
        if not 1 <= quorum <= len(targets):
            raise BackendMisconfigured(
                f"IPFS_PIN_QUORUM={quorum} must be between 1 and the {len(targets)} targets of "
                "IPFS_TARGETS (0 or unset: all of them)",
                setting="IPFS_PIN_QUORUM",
            )
        return cls(tuple(targets), quorum)
