"""Sending transactions from the wallets this backend owns.

Thin for now (see the publishing issue for replacement of stuck transactions and fee caps):
the call is simulated before a nonce is taken, so a deterministic revert costs no nonce, and the
wallet's row is locked while its nonce is read and the transaction is handed to the node, so two
senders in different processes never take the same nonce.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from chain.errors import TransactionReverted
from chain.models import Wallet

log = logging.getLogger(__name__)


def send_transaction(w3: Web3, account: LocalAccount, call: ContractFunction) -> TxReceipt:
    """Sign and send ``call`` from ``account``, wait for its receipt, raise if it reverted."""
    chain_id = w3.eth.chain_id
    # build_transaction estimates gas, which runs the call: a revert raises here, before a
    # nonce is reserved.
    tx = call.build_transaction({"from": account.address, "chainId": chain_id})
    with transaction.atomic():
        wallet, _ = Wallet.objects.select_for_update().get_or_create(
            chain_id=chain_id, address=account.address
        )
        nonce = w3.eth.get_transaction_count(account.address, "pending")
        tx["nonce"] = nonce
        signed = account.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        wallet.next_nonce = nonce + 1
        wallet.save(update_fields=["next_nonce", "updated_at"])
    log.info("sent %s nonce=%d tx=%s", call.fn_name, nonce, tx_hash.to_0x_hex())
    receipt = w3.eth.wait_for_transaction_receipt(
        tx_hash, timeout=settings.TX_RECEIPT_TIMEOUT, poll_latency=0.25
    )
    if receipt["status"] != 1:
        raise TransactionReverted(
            f"{call.fn_name} transaction {tx_hash.to_0x_hex()} reverted in block "
            f"{receipt['blockNumber']}"
        )
    return receipt
