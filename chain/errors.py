"""Errors of the chain side; each also inherits the stdlib class it resembles."""


class ChainError(Exception):
    """Base for errors talking to the chain."""


class TransactionReverted(ChainError, RuntimeError):
    """A transaction was mined with status 0, or its simulation reverted."""


class SeedMismatch(ChainError, ValueError):
    """The seed the contract stored differs from the one derived off-chain."""


class MissingKey(ChainError, LookupError):
    """No private key is configured for a role on a chain that is not the embedded one."""


class RpcUnavailable(ChainError, ConnectionError):
    """No RPC URL gave a usable answer after every retry; the message names each URL's last error."""
