"""Pinning content to IPFS: a registry of backends keyed by name, every CID checked against ours.

``pinner_from_settings().pin(data)`` stores ``data`` on each configured target
(``IPFS_TARGETS``, or the one ``IPFS_BACKEND``; :mod:`ipfs.backends.replicated`), done when
``IPFS_PIN_QUORUM`` of them hold it, and returns its CID, which is always the CID computed here from the same
bytes (:func:`ipfs.cid.compute_cid`: CIDv1, raw leaves, sha2-256, Kubo's default chunker and
layout). A backend that answers with any other CID raises :class:`~ipfs.errors.CidMismatch`, so
the pin stage fails and nothing is published under a CID that does not name our bytes.

:data:`BACKENDS` maps each ``IPFS_BACKEND`` name to its class, one module each:

- ``local`` (:mod:`ipfs.backends.local`, the embedded default): the store on disk, served by
  the gateway view at ``/ipfs/<cid>``;
- ``kubo`` (:mod:`ipfs.backends.kubo`): a Kubo node's RPC API over HTTP;
- ``pinning-service`` (:mod:`ipfs.backends.pinning_service`): an IPFS Pinning Service API, with
  the Kubo node at ``IPFS_KUBO_URL`` providing the bytes.

Each class builds itself from a :class:`~ipfs.backends.config.PinningConfig` and answers
``check(timeout)`` for ``/readyz``. Transport failures (no connection, timeouts, HTTP 429 and
5xx without an error body) are retried ``IPFS_RETRIES`` times with exponential backoff
(:mod:`ipfs.backends.http`), then raised as :class:`~ipfs.errors.BackendUnavailable`. Every
error is a :class:`~ipfs.errors.PinningError` whose ``retryable`` says whether trying the stage
again later can help.
"""

from __future__ import annotations

import threading

from ipfs.backends.config import BACKEND_NAMES, PinningConfig, TargetsConfig
from ipfs.backends.kubo import KuboPinner
from ipfs.backends.local import LocalPinner
from ipfs.backends.pinner import Pinner
from ipfs.backends.pinning_service import PinningServicePinner
from ipfs.backends.replicated import PinReport, ReplicatedPinner, Target
from ipfs.errors import BackendMisconfigured, UnknownBackend

__all__ = [
    "BACKENDS",
    "PinReport",
    "Pinner",
    "PinningConfig",
    "ReplicatedPinner",
    "Target",
    "TargetsConfig",
    "backend_class",
    "build_pinner",
    "pinner_for",
    "pinner_from_settings",
    "targets_for",
]

#: Every backend, by the ``IPFS_BACKEND`` value that selects it; a new one is a module with a
#: :class:`Pinner` subclass, added here.
BACKENDS: dict[str, type[Pinner]] = {
    cls.backend: cls for cls in (LocalPinner, KuboPinner, PinningServicePinner)
}
assert tuple(BACKENDS) == BACKEND_NAMES, "ipfs/backends/config.py lists every backend"


def backend_class(name: str, setting: str = "IPFS_BACKEND") -> type[Pinner]:
    """The class registered as ``name``; :class:`~ipfs.errors.UnknownBackend` lists the names."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise UnknownBackend(
            f"{setting}={name!r} is not one of {', '.join(BACKENDS)}", setting=setting
        ) from None


def build_pinner(config: PinningConfig) -> Pinner:
    """A new pinner for ``config`` (the caller closes it); most callers want :func:`pinner_for`."""
    return backend_class(config.backend, config.setting("backend")).from_config(config)


_pinners: dict[PinningConfig | TargetsConfig, Pinner] = {}
_pinners_lock = threading.Lock()


def pinner_for(config: PinningConfig) -> Pinner:
    """The pinner for ``config``: one instance (and connection pool) per distinct configuration,
    shared by threads. Raises :class:`~ipfs.errors.BackendMisconfigured` naming the setting
    that is missing or wrong."""
    with _pinners_lock:
        if config not in _pinners:
            _pinners[config] = build_pinner(config)
        return _pinners[config]


def targets_for(config: TargetsConfig) -> ReplicatedPinner:
    """The :class:`ReplicatedPinner` for ``config``, one per distinct configuration, each
    target's backend shared through :func:`pinner_for`."""
    targets = [Target(t.target or t.backend, pinner_for(t)) for t in config.targets]
    with _pinners_lock:
        if config not in _pinners:
            _pinners[config] = ReplicatedPinner(targets, config.quorum)
        pinner = _pinners[config]
    assert isinstance(pinner, ReplicatedPinner)
    return pinner


def pinner_from_settings() -> ReplicatedPinner:
    """The pinner that ``IPFS_TARGETS`` (else ``IPFS_BACKEND``), ``IPFS_PIN_QUORUM`` and the
    other ``IPFS_*`` Django settings describe: every target, and the quorum.

    A bad value raises ``ImproperlyConfigured`` naming the setting, as every other setting of
    the project does. Django is imported here, not at the top, so that the rest of the package
    (and :func:`pinner_for`) works without it.
    """
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        return targets_for(TargetsConfig.from_settings(settings))
    except BackendMisconfigured as exc:
        raise ImproperlyConfigured(str(exc)) from exc
