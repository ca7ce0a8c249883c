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


class FeeCapExceeded(ChainError, ValueError):
    """The fee the chain asks for now is above the configured cap (``TX_MAX_FEE_GWEI``)."""


class WalletCannotPay(ChainError, RuntimeError):
    """The wallet's balance cannot cover gas × max fee + value; raised before a nonce is taken,
    so a caller can pause its queue until the wallet is funded."""

    def __init__(self, message: str, *, address: str, chain_id: int, balance: int, need: int):
        super().__init__(message)
        self.address, self.chain_id, self.balance, self.need = address, chain_id, balance, need

    def public_reason(self, waiting: str) -> str:
        """What a waiting token's public ``failure_reason`` says (``waiting``: "waiting to
        publish"): the wallet, whose address is public, never the node's answer."""
        return (
            f"{waiting}: wallet {self.address} on chain {self.chain_id} cannot pay for gas; "
            "nothing is lost, it is tried again once the wallet is funded"
        )


class TransactionRejected(ChainError, RuntimeError):
    """A node refused the signed transaction for a reason no retry fixes; its nonce was filled
    with a 0-value transfer so the wallet's later transactions are not held up."""


class NonceConsumed(ChainError, RuntimeError):
    """A transaction this backend did not sign used the nonce of one it did, which will now
    never be mined; check the chain before sending it again."""


class TransactionTimeout(ChainError, TimeoutError):
    """The transaction had not reached its confirmations in time; it stays tracked, and the
    wallet's next send or ``chain.sender.recover`` goes on with it (never signing it twice)."""


class ChainChanged(ChainError, RuntimeError):
    """The RPC endpoint of a chain id now serves a different chain (another block 0) than the
    one a wallet sent on before; nothing is sent until an operator says the reset was meant."""


class PublishPaused(ChainError, RuntimeError):
    """The publisher wallet cannot pay for gas: publishing waits, nothing is lost."""


class ChainMismatch(ChainError, ValueError):
    """The RPC endpoints configured for a chain serve another chain."""

    def __init__(self, urls: str, served: int, expected: int) -> None:
        super().__init__(f"the RPC at {urls} serves chain {served}, not {expected}")
        self.served, self.expected = served, expected


class DeepReorg(ChainError, RuntimeError):
    """The chain replaced blocks older than the finality window: stop, don't guess."""


class LogsAcrossReorg(ChainError, RuntimeError):
    """A log's block hash is not its block's: the node answered across a reorg."""


class AnvilError(ChainError, RuntimeError):
    """anvil (the embedded chain) is missing, failed to start, or did not answer in time."""


class ContractDeployError(ChainError, RuntimeError):
    """The deployment transaction was mined but reverted, or produced no contract."""


class ContractTransactionError(ChainError, RuntimeError):
    """A transaction sent by the contract helpers (chain/contract.py) was mined but reverted."""
