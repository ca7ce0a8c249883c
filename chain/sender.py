"""Sending transactions from the wallets this backend owns: none lost, doubled or jammed.

Each send goes through these steps (docs/sender.md tells the story for operators):

1. An unfinished transaction of the wallet with the same destination, calldata and value (a
   retried task whose first run died after signing) is waited for instead of signed again.
2. The wallet is tended: each unfinished transaction is looked up by the hash of every attempt
   at its nonce, recorded when mined, rebroadcast with its identical signed bytes when the node
   has forgotten it (dropped, never sent because of a crash, reorganised out of its block), and
   replaced when stuck.
3. The call is simulated (``eth_estimateGas``): a revert raises ``TransactionReverted`` before
   a nonce is taken.
4. It is priced (EIP-1559, capped by ``TX_MAX_FEE_GWEI``) and the wallet's balance is checked
   (``WalletCannotPay``), still before a nonce is taken.
5. The ``Wallet`` row is locked, the nonce taken, the transaction signed, and the signed bytes
   COMMITTED before they are broadcast, so a crash after the broadcast leaves a row that leads
   back to the same transaction.
6. The send waits, tending the wallet on every poll: after ``TX_REPLACE_AFTER`` seconds pending
   (at once if its max fee is below the base fee) it is replaced at the same nonce with both
   fees raised by at least 10% + 1 wei (within the cap); when the node refuses its bytes for good, the nonce is filled with a 0-value transfer
   so later nonces are not held up. Only a receipt ``TX_CONFIRMATIONS`` deep, in a block the
   chain still has, is returned.

All attempts at one nonce exclude each other on-chain, so at most one of them is ever mined.
Everything here takes ``w3`` and an account and runs without Dramatiq. Keys are never logged.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    MethodUnavailable,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import TxReceipt

from chain.errors import (
    ChainChanged,
    ChainError,
    FeeCapExceeded,
    NonceConsumed,
    RpcUnavailable,
    TransactionRejected,
    TransactionReverted,
    TransactionTimeout,
    WalletCannotPay,
)
from chain.models import OutgoingTransaction, Wallet

log = logging.getLogger(__name__)
Status = OutgoingTransaction.Status

# the statuses of the one attempt at a nonce that is still in play
LIVE = (Status.SIGNED, Status.PENDING, Status.MINED)
GWEI = 10**9
TRANSFER_GAS = 21_000
# State can change between the estimate and the block that includes the transaction.
GAS_MARGIN_PERCENT = 20
FALLBACK_PRIORITY_FEE = GWEI


@dataclass(frozen=True)
class TxIntent:
    """A transaction that is not a contract function call: a value transfer, or calldata built
    elsewhere. ``purpose`` is what the logs and the ``OutgoingTransaction`` row call it."""

    to: str
    value: int = 0
    data: bytes = b""
    purpose: str = "transfer"


@dataclass(frozen=True)
class SendPolicy:
    """How a send is priced and how long it waits; ``from_settings`` reads the ``TX_*`` settings."""

    max_fee_wei: int
    confirmations: int
    replace_after: float
    timeout: float
    poll_interval: float

    @classmethod
    def from_settings(cls, **overrides: Any) -> SendPolicy:
        policy = cls(
            max_fee_wei=int(Decimal(str(settings.TX_MAX_FEE_GWEI)) * GWEI),
            confirmations=settings.TX_CONFIRMATIONS,
            replace_after=settings.TX_REPLACE_AFTER,
            timeout=settings.TX_RECEIPT_TIMEOUT,
            poll_interval=settings.TX_POLL_INTERVAL,
        )
        return replace(policy, **overrides)


@dataclass(frozen=True)
class _Request:
    to: str
    data: str  # 0x-prefixed hex, as stored
    value: int
    purpose: str
    abi: list[dict[str, Any]] | None  # to name a custom error in a revert


class _Outcome(enum.Enum):
    ACCEPTED = "accepted"
    UNDERPRICED = "underpriced"  # the node wants higher fees: replace
    NONCE_USED = "nonce used"  # resolved by the next pass (mined, or someone else's)
    REFUSED = "refused"  # no retry of these bytes will do: fill the nonce


def send_transaction(
    w3: Web3,
    account: LocalAccount,
    call: ContractFunction | TxIntent,
    *,
    purpose: str | None = None,
    policy: SendPolicy | None = None,
) -> TxReceipt:
    """Send ``call`` from ``account`` and return its receipt once it has its confirmations.

    Raises ``TransactionReverted`` (the simulation reverted: no nonce was used; or it was mined
    with status 0), ``FeeCapExceeded`` and ``WalletCannotPay`` (before a nonce is taken),
    ``TransactionRejected`` (the node refused it; its nonce was filled), ``NonceConsumed`` and
    ``TransactionTimeout`` (it stays tracked and is resumed by the next send or ``recover``).
    """
    policy = policy or SendPolicy.from_settings()
    chain_id = int(w3.eth.chain_id)
    request = _request(call, purpose)
    wallet = _wallet(w3, chain_id, account.address)
    twin = _unfinished_twin(wallet, request)
    if twin is not None:
        log.warning(
            "%s from %s: %s at nonce %d is already under way; waiting for it instead of signing again",
            request.purpose,
            account.address,
            twin.tx_hash,
            twin.nonce,
        )
        return _wait(w3, account, wallet, twin.nonce, _first_attempt(twin), policy)
    _tend(w3, account, wallet, policy)
    latest = w3.eth.get_block("latest")
    gas = _simulate(w3, account.address, request, int(latest["gasLimit"]))
    max_fee, tip = _initial_fees(w3, latest, policy)
    _check_can_pay(w3, wallet, gas * max_fee + request.value, request.purpose)
    row, signed = _reserve_and_sign(w3, account, wallet, request, gas, max_fee, tip)
    if not signed:  # an identical send started while this one was simulating
        return _wait(w3, account, wallet, row.nonce, _first_attempt(row), policy)
    _crash_point("after_commit")
    _settle_broadcast(w3, account, row, policy)
    return _wait(w3, account, wallet, row.nonce, row.attempt, policy)


def recover(
    w3: Web3, account: LocalAccount, *, policy: SendPolicy | None = None
) -> list[OutgoingTransaction]:
    """One pass over the wallet's unfinished transactions, as after a restart: each is found by
    hash, rebroadcast with its identical bytes, replaced or filled as the chain requires, and
    recorded when mined or confirmed. Returns the current attempt of each, in nonce order.
    Every send from the wallet does the same first, so calling this is needed only to settle a
    wallet that has nothing new to send."""
    policy = policy or SendPolicy.from_settings()
    wallet = _wallet(w3, int(w3.eth.chain_id), account.address)
    nonces = _open_nonces(wallet)
    _tend(w3, account, wallet, policy)
    return [
        OutgoingTransaction.objects.filter(wallet=wallet, nonce=nonce)
        .exclude(status=Status.REPLACED)
        .order_by("-attempt")[0]
        for nonce in nonces
    ]


def _wallet(w3: Web3, chain_id: int, address: str) -> Wallet:
    """The wallet's row, checked against the chain's fingerprint (``_fingerprint``).

    A different fingerprint means the chain was reset under the same chain id. On the embedded
    chain (anvil, restarted by ``make run`` and the tests) the wallet's unfinished transactions
    are marked FAILED, so none is ever rebroadcast onto the new chain; on any other chain id it
    is taken for a misconfigured endpoint and ``ChainChanged`` stops every send.
    """
    wallet, _ = Wallet.objects.get_or_create(chain_id=chain_id, address=address)
    fingerprint = _fingerprint(w3, chain_id)
    if wallet.chain_fingerprint == fingerprint:
        return wallet
    if wallet.chain_fingerprint and chain_id != settings.EMBEDDED_CHAIN_ID:
        raise ChainChanged(
            f"the RPC endpoint of chain {chain_id} serves a chain whose block 0 is "
            f"{fingerprint}, but {address} sent on one whose block 0 is "
            f"{wallet.chain_fingerprint}; nothing was sent. Check RPC_URL and the Chain's "
            f"rpc_urls; if the chain was reset on purpose, clear this wallet's "
            f"chain_fingerprint (its unfinished transactions are then dropped)"
        )
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(pk=wallet.pk)
        if wallet.chain_fingerprint == fingerprint:
            return wallet
        forgotten = OutgoingTransaction.objects.filter(wallet=wallet, status__in=LIVE).update(
            status=Status.FAILED,
            error=f"chain {chain_id} was reset (now {fingerprint}); never sent there",
        )
        if forgotten:
            log.warning(
                "chain %d was reset (now %s): %d unfinished transaction(s) of %s will not be sent",
                chain_id,
                fingerprint,
                forgotten,
                address,
            )
        if wallet.chain_fingerprint:
            wallet.next_nonce = 0
        wallet.chain_fingerprint = fingerprint
        wallet.save(update_fields=["chain_fingerprint", "next_nonce", "updated_at"])
    return wallet


def _fingerprint(w3: Web3, chain_id: int) -> str:
    """The hash of block 0; on the embedded chain also anvil's instance id, because two anvils
    started within the same second have the very same block 0."""
    genesis = w3.eth.get_block(0)["hash"].to_0x_hex()
    if chain_id != settings.EMBEDDED_CHAIN_ID:
        return genesis
    answer = w3.provider.make_request("anvil_metadata", [])
    instance = (answer.get("result") or {}).get("instanceId")
    return f"{genesis}/{instance}" if instance else genesis


# -- building, simulating, pricing ---------------------------------------------------------------
def _request(call: ContractFunction | TxIntent, purpose: str | None) -> _Request:
    if isinstance(call, TxIntent):
        return _Request(
            to=to_checksum_address(call.to),
            data="0x" + call.data.hex(),
            value=call.value,
            purpose=purpose or call.purpose,
            abi=None,
        )
    return _Request(
        to=to_checksum_address(call.address),
        # web3 exposes no public encoder on a bound function; this is what build_transaction uses
        data=HexBytes(call._encode_transaction_data()).to_0x_hex(),
        value=0,
        purpose=purpose or call.fn_name,
        abi=list(call.contract_abi),
    )


def _simulate(w3: Web3, sender: str, request: _Request, block_gas_limit: int) -> int:
    """The gas limit to sign: the estimate plus a margin, within the block's gas limit."""
    params = {"from": sender, "to": request.to, "data": request.data, "value": request.value}
    try:
        estimate = int(w3.eth.estimate_gas(params))
    except ContractLogicError as exc:
        raise TransactionReverted(
            f"{request.purpose} from {sender} would revert ({_revert_reason(exc, request.abi)}); "
            f"nothing was sent and no nonce was used"
        ) from exc
    except Web3RPCError as exc:
        message = _rpc_message(exc)
        if _classify(message) is not None:
            raise
        raise WalletCannotPay(
            f"wallet {sender} cannot pay for {request.purpose}: the node says {message!r}; "
            f"fund it and retry. No nonce was used",
            address=sender,
            chain_id=int(w3.eth.chain_id),
            balance=int(w3.eth.get_balance(sender, "latest")),
            need=request.value,
        ) from exc
    return min(estimate * (100 + GAS_MARGIN_PERCENT) // 100, block_gas_limit)


def _revert_reason(exc: ContractLogicError, abi: list[dict[str, Any]] | None) -> str:
    if isinstance(exc, ContractCustomError) and abi:
        selector = str(exc.data or "")[:10]
        for entry in abi:
            if entry.get("type") != "error":
                continue
            signature = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
            if Web3.keccak(text=signature)[:4].to_0x_hex() == selector:
                return f"custom error {entry['name']}, data {exc.data}"
    return str(exc.message or exc)


def _market_fees(w3: Web3, block: Any = None) -> tuple[int, int]:
    """(base fee of the latest block, the node's suggested priority fee)."""
    block = block or w3.eth.get_block("latest")
    if block.get("baseFeePerGas") is None:
        raise ChainError(f"chain {w3.eth.chain_id} has no EIP-1559 base fee; the sender needs one")
    try:
        tip = int(w3.eth.max_priority_fee)
    except (MethodUnavailable, Web3RPCError):
        tip = _fee_history_tip(w3)
    return int(block["baseFeePerGas"]), tip


def _fee_history_tip(w3: Web3) -> int:
    history = w3.eth.fee_history(10, "latest", [50])
    rewards = sorted(int(r[0]) for r in history.get("reward", []) if r and int(r[0]) > 0)
    return rewards[len(rewards) // 2] if rewards else FALLBACK_PRIORITY_FEE


def _initial_fees(w3: Web3, block: Any, policy: SendPolicy) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas): twice the base fee as headroom plus the tip, never
    above the cap; refused when the base fee and tip alone are above it."""
    base, tip = _market_fees(w3, block)
    if base + tip > policy.max_fee_wei:
        raise FeeCapExceeded(
            f"the chain asks {_gwei(base + tip)} gwei per gas now (base fee {_gwei(base)} + "
            f"priority fee {_gwei(tip)}), above the cap TX_MAX_FEE_GWEI={_gwei(policy.max_fee_wei)}; "
            f"nothing was sent. Raise TX_MAX_FEE_GWEI or retry when fees fall"
        )
    return min(2 * base + tip, policy.max_fee_wei), tip


def _bump(fee: int) -> int:
    """At least 10% more, plus 1 wei: what nodes require of a replacement, with room to spare."""
    return (fee * 11 + 9) // 10 + 1


def _replacement_fees(w3: Web3, live: OutgoingTransaction, policy: SendPolicy) -> tuple[int, int]:
    """Both fees of ``live`` bumped, or the market's if higher, within the cap."""
    base, market_tip = _market_fees(w3)
    tip = max(_bump(live.max_priority_fee_per_gas), market_tip)
    floor = _bump(live.max_fee_per_gas)
    max_fee = min(max(floor, 2 * base + tip), policy.max_fee_wei)
    if floor > policy.max_fee_wei or _bump(live.max_priority_fee_per_gas) > max_fee:
        raise FeeCapExceeded(
            f"replacing {live.tx_hash} (nonce {live.nonce}, max fee "
            f"{_gwei(live.max_fee_per_gas)} gwei) needs at least {_gwei(floor)} gwei, above the "
            f"cap TX_MAX_FEE_GWEI={_gwei(policy.max_fee_wei)}; it stays pending as it is"
        )
    return max_fee, min(tip, max_fee)


def _check_can_pay(w3: Web3, wallet: Wallet, need: int, purpose: str) -> None:
    balance = int(w3.eth.get_balance(wallet.address, "latest"))
    if balance < need:
        raise WalletCannotPay(
            f"wallet {wallet.address} on chain {wallet.chain_id} holds {balance} wei "
            f"({Web3.from_wei(balance, 'ether')} ETH) but {purpose} may cost up to {need} wei "
            f"(gas × max fee + value); fund it and retry. No nonce was used",
            address=wallet.address,
            chain_id=wallet.chain_id,
            balance=balance,
            need=need,
        )


def _gwei(wei: int) -> str:
    return f"{Decimal(wei) / GWEI:f}"


# -- nonces, signing, broadcasting ---------------------------------------------------------------
def _reserve_and_sign(
    w3: Web3,
    account: LocalAccount,
    wallet: Wallet,
    request: _Request,
    gas: int,
    max_fee: int,
    tip: int,
) -> tuple[OutgoingTransaction, bool]:
    """Take the next nonce and commit the signed transaction: (row, True); or (the identical
    unfinished send another process committed meanwhile, False)."""
    latest = int(w3.eth.get_transaction_count(account.address, "latest"))
    pending = int(w3.eth.get_transaction_count(account.address, "pending"))
    with transaction.atomic():
        # The row lock makes this the one owner of the wallet's nonces across processes (on
        # SQLite the IMMEDIATE transaction mode takes the database's write lock instead).
        locked = Wallet.objects.select_for_update().get(pk=wallet.pk)
        twin = _unfinished_twin(locked, request)
        if twin is not None:
            log.warning(
                "%s from %s: an identical send (%s, nonce %d) began meanwhile; waiting for it",
                request.purpose,
                wallet.address,
                twin.tx_hash,
                twin.nonce,
            )
            return twin, False
        nonce = _next_nonce(locked, latest, pending)
        row = _sign_row(
            account,
            locked,
            nonce=nonce,
            attempt=_next_attempt(locked, nonce),
            request=request,
            gas=gas,
            max_fee=max_fee,
            tip=tip,
        )
        locked.next_nonce = max(locked.next_nonce, nonce + 1)
        locked.save(update_fields=["next_nonce", "updated_at"])
    log.info(
        "signed %s from %s: nonce %d, %s, max fee %s gwei, tip %s gwei",
        row.purpose,
        row.sender,
        row.nonce,
        row.tx_hash,
        _gwei(max_fee),
        _gwei(tip),
    )
    return row, True


def _next_nonce(wallet: Wallet, latest: int, pending: int) -> int:
    """The lowest nonce at or above the chain's that no unfinished transaction of ours holds.

    The database's ``next_nonce`` counts only while the node confirms it (its ``pending`` count
    holds transactions we may not have rows for); a nonce of ours that the node forgot is still
    ours, and ``_tend`` rebroadcasts it. A finished row at or above the chain's nonce is one the
    chain no longer has (reorganised away deeper than its confirmations): its nonce is free.
    """
    nonce = max(latest, min(wallet.next_nonce, pending))
    held = set(
        OutgoingTransaction.objects.filter(
            wallet=wallet, nonce__gte=nonce, status__in=LIVE
        ).values_list("nonce", flat=True)
    )
    while nonce in held:
        nonce += 1
    return nonce


def _next_attempt(wallet: Wallet, nonce: int) -> int:
    last = (
        OutgoingTransaction.objects.filter(wallet=wallet, nonce=nonce)
        .order_by("-attempt")
        .values_list("attempt", flat=True)
        .first()
    )
    return 0 if last is None else last + 1


def _sign_row(
    account: LocalAccount,
    wallet: Wallet,
    *,
    nonce: int,
    attempt: int,
    request: _Request,
    gas: int,
    max_fee: int,
    tip: int,
    is_filler: bool = False,
) -> OutgoingTransaction:
    signed = account.sign_transaction(
        {
            "type": 2,
            "chainId": wallet.chain_id,
            "nonce": nonce,
            "to": request.to,
            "value": request.value,
            "data": request.data,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        }
    )
    return OutgoingTransaction.objects.create(
        wallet=wallet,
        chain_id=wallet.chain_id,
        sender=wallet.address,
        nonce=nonce,
        attempt=attempt,
        purpose=request.purpose[:255],
        to=request.to,
        data=request.data,
        value=str(request.value),
        gas=gas,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=tip,
        raw_transaction=bytes(signed.raw_transaction),
        tx_hash=signed.hash.to_0x_hex(),
        is_filler=is_filler,
    )


def _crash_point(name: str) -> None:
    """Fault injection for the crash tests (``TX_SENDER_CRASH_AT``): die here as a power cut would."""
    if name == settings.TX_SENDER_CRASH_AT:
        os.kill(os.getpid(), signal.SIGKILL)


def _broadcast(w3: Web3, row: OutgoingTransaction) -> tuple[_Outcome, str]:
    """Hand the row's signed bytes to the node and record that it has them."""
    try:
        w3.eth.send_raw_transaction(bytes(row.raw_transaction))
    except TransactionNotFound:
        raise
    except Web3RPCError as exc:
        message = _rpc_message(exc)
        outcome = _classify(message)
        if outcome is None:
            _raise_cannot_pay(w3, row, message)
        if outcome is not _Outcome.ACCEPTED:
            return outcome, message
    _crash_point("after_broadcast")
    now = timezone.now()
    OutgoingTransaction.objects.filter(pk=row.pk, status=Status.SIGNED).update(
        status=Status.PENDING, broadcast_at=now
    )
    OutgoingTransaction.objects.filter(pk=row.pk, broadcast_at=None).update(broadcast_at=now)
    return _Outcome.ACCEPTED, ""


def _rpc_message(exc: Web3RPCError) -> str:
    response = exc.rpc_response or {}
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(exc.message)


def _classify(message: str) -> _Outcome | None:
    """What a node's refusal of a raw transaction means; None: the wallet cannot pay."""
    text = message.lower()
    if "insufficient funds" in text:
        return None
    if any(s in text for s in ("already known", "already imported", "known transaction")):
        return _Outcome.ACCEPTED
    if "nonce too low" in text or "nonce has already been used" in text:
        return _Outcome.NONCE_USED
    if any(s in text for s in ("underpriced", "fee too low", "base fee", "fee cap", "tip too low")):
        return _Outcome.UNDERPRICED
    return _Outcome.REFUSED


def _raise_cannot_pay(w3: Web3, row: OutgoingTransaction, message: str) -> None:
    need = row.gas * row.max_fee_per_gas + int(row.value)
    balance = int(w3.eth.get_balance(row.sender, "latest"))
    raise WalletCannotPay(
        f"wallet {row.sender} on chain {row.chain_id} holds {balance} wei but {row.tx_hash} "
        f"(nonce {row.nonce}) may cost up to {need} wei; the node says {message!r}. Fund it: "
        f"the transaction stays tracked and is rebroadcast by the next send or recover",
        address=row.sender,
        chain_id=row.chain_id,
        balance=balance,
        need=need,
    )


def _settle_broadcast(
    w3: Web3, account: LocalAccount, row: OutgoingTransaction, policy: SendPolicy
) -> None:
    """Broadcast ``row`` and act on a refusal: replace when underpriced, fill when refused."""
    outcome, message = _broadcast(w3, row)
    if outcome is _Outcome.UNDERPRICED:
        log.warning("%s refused as underpriced (%s); replacing it", row.tx_hash, message)
        _replace(w3, account, row, policy, reason=f"the node refused it: {message}")
    elif outcome is _Outcome.REFUSED:
        _fill(w3, account, row, policy, reason=message)


# -- tending a wallet ----------------------------------------------------------------------------
def _open_nonces(wallet: Wallet) -> list[int]:
    return sorted(
        set(
            OutgoingTransaction.objects.filter(wallet=wallet, status__in=LIVE).values_list(
                "nonce", flat=True
            )
        )
    )


def _tend(w3: Web3, account: LocalAccount, wallet: Wallet, policy: SendPolicy) -> None:
    """One pass over the wallet's unfinished nonces, lowest first (a stuck low nonce holds up
    every later one)."""
    nonces = _open_nonces(wallet)
    if not nonces:
        return
    # Read before the receipts: a transaction mined after this read still shows its receipt,
    # so "nonce used and none of ours mined" means someone else used it.
    chain_nonce = int(w3.eth.get_transaction_count(wallet.address, "latest"))
    latest = w3.eth.get_block("latest")
    head, base_fee = int(latest["number"]), int(latest.get("baseFeePerGas") or 0)
    for nonce in nonces:
        _tend_nonce(w3, account, wallet, nonce, chain_nonce, head, base_fee, policy)


def _tend_nonce(
    w3: Web3,
    account: LocalAccount,
    wallet: Wallet,
    nonce: int,
    chain_nonce: int,
    head: int,
    base_fee: int,
    policy: SendPolicy,
) -> None:
    attempts = list(
        OutgoingTransaction.objects.filter(wallet=wallet, nonce=nonce).order_by("-attempt")
    )
    live = next((a for a in attempts if a.status in LIVE), None)
    if live is None:
        return
    for attempt in attempts:
        receipt = _receipt(w3, attempt.tx_hash)
        if receipt is not None:
            _record_mined(w3, attempt, receipt, head, policy)
            return
    if live.status == Status.MINED:
        log.warning(
            "%s (nonce %d) is gone from block %s (%s) after a reorg; sending it again",
            live.tx_hash,
            nonce,
            live.block_number,
            live.block_hash,
        )
        OutgoingTransaction.objects.filter(pk=live.pk, status=Status.MINED).update(
            status=Status.PENDING, block_number=None, block_hash="", mined_at=None
        )
        live.refresh_from_db()
    # The nonce looks used and none of ours is mined: asked again, in the same order (the
    # nonce, then our receipts), since a reorg between the reads above makes it look so while
    # ours left the chain with its block. Free again: ours is sent again below. Still used:
    # someone else's, unless one of ours is in a block after all (the next poll records it).
    if nonce < chain_nonce and nonce < int(w3.eth.get_transaction_count(wallet.address, "latest")):
        if all(_receipt(w3, a.tx_hash) is None for a in attempts):
            _fail_nonce(wallet, nonce, attempts)
        return
    if not _known(w3, live.tx_hash):
        if live.status == Status.PENDING:
            log.warning(
                "%s (nonce %d) is not known to the node; rebroadcasting it", live.tx_hash, nonce
            )
        _settle_broadcast(w3, account, live, policy)
        return
    if live.status == Status.SIGNED:  # broadcast by a process that died before recording it
        _broadcast(w3, live)
        return
    pending_for = timezone.now() - (live.broadcast_at or timezone.now())
    if live.max_fee_per_gas < base_fee:
        # No block can include it until the base fee falls (a node may still hold it, e.g. in
        # its queue behind a missing nonce): waiting out the timer would only cost time.
        reason = f"max fee below the base fee of {_gwei(base_fee)} gwei"
        _replace(w3, account, live, policy, reason=reason)
    elif pending_for >= timedelta(seconds=policy.replace_after):
        reason = f"pending for {pending_for.total_seconds():.1f} s"
        _replace(w3, account, live, policy, reason=reason)


def _receipt(w3: Web3, tx_hash: str) -> TxReceipt | None:
    try:
        return w3.eth.get_transaction_receipt(HexBytes(tx_hash))
    except TransactionNotFound:
        return None


def _known(w3: Web3, tx_hash: str) -> bool:
    try:
        w3.eth.get_transaction(HexBytes(tx_hash))
    except TransactionNotFound:
        return False
    return True


def _record_mined(
    w3: Web3, row: OutgoingTransaction, receipt: TxReceipt, head: int, policy: SendPolicy
) -> None:
    """Record the mined attempt; it is final once deep enough in a block the chain still has."""
    number, block_hash = int(receipt["blockNumber"]), receipt["blockHash"].to_0x_hex()
    deep = head - number + 1 >= policy.confirmations
    if deep and w3.eth.get_block(number)["hash"].to_0x_hex() != block_hash:
        deep = False  # the node's receipt index lags a reorg; look again next pass
    now = timezone.now()
    with transaction.atomic():
        OutgoingTransaction.objects.filter(
            wallet_id=row.wallet_id, nonce=row.nonce, status__in=LIVE
        ).exclude(pk=row.pk).update(status=Status.REPLACED)
        fields: dict[str, Any] = {"block_number": number, "block_hash": block_hash}
        if row.mined_at is None or row.block_hash != block_hash:
            fields["mined_at"] = now
        if deep:
            ok = int(receipt["status"]) == 1
            fields.update(status=Status.CONFIRMED if ok else Status.REVERTED, confirmed_at=now)
        else:
            fields["status"] = Status.MINED
        OutgoingTransaction.objects.filter(pk=row.pk).update(**fields)
    if deep:
        log.info(
            "%s (%s, nonce %d) %s in block %d",
            row.tx_hash,
            row.purpose,
            row.nonce,
            "confirmed" if fields["status"] == Status.CONFIRMED else "REVERTED",
            number,
        )
    elif row.block_hash != block_hash:
        log.info("%s (nonce %d) mined in block %d", row.tx_hash, row.nonce, number)


def _fail_nonce(wallet: Wallet, nonce: int, attempts: list[OutgoingTransaction]) -> None:
    hashes = ", ".join(a.tx_hash for a in attempts)
    message = (
        f"nonce {nonce} of {wallet.address} was used by a transaction this backend did not "
        f"sign; none of ours at that nonce ({hashes}) can be mined any more"
    )
    log.error(message)
    OutgoingTransaction.objects.filter(wallet=wallet, nonce=nonce, status__in=LIVE).update(
        status=Status.FAILED, error=message
    )


def _replace(
    w3: Web3, account: LocalAccount, live: OutgoingTransaction, policy: SendPolicy, *, reason: str
) -> None:
    """Sign the same transaction with both fees raised, as the next attempt at its nonce."""
    try:
        max_fee, tip = _replacement_fees(w3, live, policy)
    except FeeCapExceeded as exc:
        # Said once per attempt, not on every poll; the transaction stays pending as it is.
        if (
            OutgoingTransaction.objects.filter(pk=live.pk)
            .exclude(error=str(exc))
            .update(error=str(exc))
        ):
            log.warning("%s", exc)
        return
    _check_can_pay(w3, live.wallet, live.gas * max_fee + int(live.value), live.purpose)
    request = _Request(live.to, live.data, int(live.value), live.purpose, None)
    new = _supersede(
        account, live, request=request, gas=live.gas, max_fee=max_fee, tip=tip, reason=reason
    )
    if new is None:
        return
    log.warning(
        "replaced %s (nonce %d, %s) with %s: max fee %s -> %s gwei, tip %s -> %s gwei",
        live.tx_hash,
        live.nonce,
        reason,
        new.tx_hash,
        _gwei(live.max_fee_per_gas),
        _gwei(max_fee),
        _gwei(live.max_priority_fee_per_gas),
        _gwei(tip),
    )
    outcome, message = _broadcast(w3, new)
    if outcome is not _Outcome.ACCEPTED:
        # Left signed; the next pass rebroadcasts it, raising the fees again if need be.
        log.warning("replacement %s not accepted yet: %s", new.tx_hash, message)


def _fill(
    w3: Web3, account: LocalAccount, live: OutgoingTransaction, policy: SendPolicy, *, reason: str
) -> None:
    """The node refuses ``live`` for good: use its nonce for a 0-value transfer to ourselves, so
    the wallet's later transactions are not held up behind a gap."""
    try:
        max_fee, tip = _replacement_fees(w3, live, policy)
    except FeeCapExceeded as exc:
        log.error(
            "cannot fill nonce %d after the node refused %s: %s", live.nonce, live.tx_hash, exc
        )
        return
    _check_can_pay(w3, live.wallet, TRANSFER_GAS * max_fee, "a nonce filler")
    request = _Request(live.sender, "0x", 0, "nonce filler", None)
    new = _supersede(
        account,
        live,
        request=request,
        gas=TRANSFER_GAS,
        max_fee=max_fee,
        tip=tip,
        reason=f"the node refused it: {reason}",
        is_filler=True,
    )
    if new is None:
        return
    log.error(
        "the node refuses %s (%s, nonce %d): %s; filling the nonce with %s",
        live.tx_hash,
        live.purpose,
        live.nonce,
        reason,
        new.tx_hash,
    )
    _broadcast(w3, new)


def _supersede(
    account: LocalAccount,
    live: OutgoingTransaction,
    *,
    request: _Request,
    gas: int,
    max_fee: int,
    tip: int,
    reason: str,
    is_filler: bool = False,
) -> OutgoingTransaction | None:
    """Commit the next attempt at ``live``'s nonce; None if another process got there first."""
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(pk=live.wallet_id)
        still_live = OutgoingTransaction.objects.filter(
            pk=live.pk, status__in=(Status.SIGNED, Status.PENDING)
        ).exists()
        if not still_live or _next_attempt(wallet, live.nonce) != live.attempt + 1:
            return None
        new = _sign_row(
            account,
            wallet,
            nonce=live.nonce,
            attempt=live.attempt + 1,
            request=request,
            gas=gas,
            max_fee=max_fee,
            tip=tip,
            is_filler=is_filler,
        )
        OutgoingTransaction.objects.filter(pk=live.pk).update(
            status=Status.REPLACED, replaced_by=new, error=reason
        )
    return new


# -- waiting -------------------------------------------------------------------------------------
def _wait(
    w3: Web3, account: LocalAccount, wallet: Wallet, nonce: int, first: int, policy: SendPolicy
) -> TxReceipt:
    """Tend the wallet until the send whose attempts at ``nonce`` start at ``first`` settles."""
    deadline = time.monotonic() + policy.timeout
    while True:
        try:
            _tend(w3, account, wallet, policy)
        except (RpcUnavailable, requests.ConnectionError, requests.Timeout) as exc:
            # The transaction is tracked; an unreachable node only delays the next look.
            log.warning("tending %s on chain %d: %s", wallet.address, wallet.chain_id, exc)
        receipt = _final_receipt(w3, wallet, nonce, first)
        if receipt is not None:
            return receipt
        if time.monotonic() >= deadline:
            live = (
                OutgoingTransaction.objects.filter(wallet=wallet, nonce=nonce, status__in=LIVE)
                .order_by("-attempt")
                .first()
            )
            raise TransactionTimeout(
                f"nonce {nonce} of {wallet.address} on chain {wallet.chain_id} "
                f"({live.tx_hash if live else 'no live attempt'}, {live.status if live else ''}) "
                f"has not reached {policy.confirmations} confirmation(s) in {policy.timeout:.0f} s; "
                f"it stays tracked and the next send or recover() goes on with it"
            )
        time.sleep(policy.poll_interval)


def _final_receipt(w3: Web3, wallet: Wallet, nonce: int, first: int) -> TxReceipt | None:
    """The receipt once the send is settled, an error if it settled badly, else None."""
    attempts = list(
        OutgoingTransaction.objects.filter(wallet=wallet, nonce=nonce, attempt__gte=first).order_by(
            "-attempt"
        )
    )
    if any(a.status in LIVE for a in attempts):
        return None
    done = next((a for a in attempts if a.status in (Status.CONFIRMED, Status.REVERTED)), None)
    if done is None:
        failed = next((a for a in attempts if a.status == Status.FAILED), None)
        raise NonceConsumed(failed.error if failed else f"nonce {nonce} has no attempt left")
    if done.is_filler:
        refused = next(a for a in attempts if a.replaced_by_id == done.pk)
        raise TransactionRejected(
            f"{refused.purpose} {refused.tx_hash} from {wallet.address}: {refused.error}; "
            f"its nonce {nonce} was filled by {done.tx_hash} and nothing of it was done"
        )
    if done.status == Status.REVERTED:
        raise TransactionReverted(
            f"{done.purpose} transaction {done.tx_hash} reverted in block {done.block_number}"
        )
    return w3.eth.get_transaction_receipt(HexBytes(done.tx_hash))


def _first_attempt(row: OutgoingTransaction) -> int:
    """The attempt number that began the send ``row`` belongs to (replacements link back)."""
    while (earlier := OutgoingTransaction.objects.filter(replaced_by=row).first()) is not None:
        row = earlier
    return row.attempt


def _unfinished_twin(wallet: Wallet, request: _Request) -> OutgoingTransaction | None:
    return (
        OutgoingTransaction.objects.filter(
            wallet=wallet,
            status__in=LIVE,
            is_filler=False,
            to=request.to,
            data=request.data,
            value=str(request.value),
        )
        .order_by("nonce")
        .first()
    )
