"""IPFS for the mint: CIDs computed as Kubo computes them, the local store, pinning backends.

- :mod:`ipfs.cid`: the CID of some bytes (raw block or UnixFS root), on-chain digest <-> CID;
- :mod:`ipfs.unixfs`: the UnixFS DAG Kubo's ``ipfs add`` builds, encoded without a node;
- :mod:`ipfs.store`: the content-addressed store on disk the gateway serves;
- :mod:`ipfs.backends`: the pinning backends, a registry keyed by ``IPFS_BACKEND``;
- :mod:`ipfs.errors`: every error above, rooted in :class:`ipfs.errors.IpfsError`.

Nothing here imports Django at import time (the verifier uses ``cid``, ``unixfs`` and
``errors``); only :func:`ipfs.backends.pinner_from_settings` reads Django's settings.
"""
