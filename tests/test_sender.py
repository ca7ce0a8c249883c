"""The transaction sender on a real anvil: stuck, dropped, underpriced and reorganised
transactions, a sender killed with SIGKILL mid-send, reverts, the fee cap, an empty wallet, and
where keys come from.

Each test gets its own anvil, because they stop automine, spike the base fee and revert the chain.
Personas: Ada runs the backend's hot wallet; Bob and Carol receive transfers (they never send, so
their balances count exactly what reached them); Mallory's transfer the node refuses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.types import TxReceipt

from chain import wallets
from chain.anvil import ANVIL_ACCOUNTS, Anvil, start_anvil
from chain.contract import bind, deploy_contract
from chain.errors import (
    ChainChanged,
    FeeCapExceeded,
    MissingKey,
    NonceConsumed,
    TransactionRejected,
    TransactionReverted,
    TransactionTimeout,
    WalletCannotPay,
)
from chain.models import OutgoingTransaction, Wallet
from chain.sender import SendPolicy, TxIntent, recover, send_transaction
from tests.conftest import database_url

pytestmark = pytest.mark.django_db(transaction=True)
REPO = Path(__file__).resolve().parent.parent
GWEI = 10**9
ADA_KEY = ANVIL_ACCOUNTS[0].private_key  # anvil's #0: what wallets.deployer gives on chain 31337
ADA = Account.from_key(ADA_KEY)
BOB, CAROL = ANVIL_ACCOUNTS[3].address, ANVIL_ACCOUNTS[4].address
Status = OutgoingTransaction.Status


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A chain of the test's own (overrides the module-wide one that ``w3`` uses)."""
    with start_anvil() as node:
        yield node


@pytest.fixture
def fast() -> SendPolicy:
    return SendPolicy.from_settings(
        confirmations=1, replace_after=60, timeout=30, poll_interval=0.05, max_fee_wei=500 * GWEI
    )


@pytest.fixture
def sender_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="chain.sender")
    return caplog


class Background(threading.Thread):
    """A send in its own thread (its own Web3 and database connection), as a worker runs it,
    while the test drives the chain."""

    def __init__(
        self, rpc_url: str, account: LocalAccount, intent: TxIntent, policy: SendPolicy
    ) -> None:
        super().__init__(daemon=True)
        self.rpc_url, self.account, self.intent, self.policy = rpc_url, account, intent, policy
        self.receipt: TxReceipt | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            w3 = Web3(Web3.HTTPProvider(self.rpc_url))
            self.receipt = send_transaction(w3, self.account, self.intent, policy=self.policy)
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    def result(self) -> TxReceipt:
        self.join(timeout=30)
        assert not self.is_alive(), "the send did not finish"
        if self.error is not None:
            raise self.error
        assert self.receipt is not None
        return self.receipt


def rpc(w3: Web3, method: str, *params: object) -> object:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response.get("result")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def mine_until_done(w3: Web3, *sends: Background) -> None:
    deadline = time.monotonic() + 20
    while any(send.is_alive() for send in sends):
        assert time.monotonic() < deadline, "the sends did not finish while blocks were mined"
        rpc(w3, "evm_mine")
        time.sleep(0.1)


def sent_by(w3: Web3, address: str, first_block: int) -> list[tuple[int, str]]:
    """(nonce, hash) of every transaction from ``address`` mined since ``first_block``."""
    found = []
    for number in range(first_block, w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] == address:
                found.append((tx["nonce"], tx["hash"].to_0x_hex()))
    return found


def attempts_at(nonce: int) -> list[OutgoingTransaction]:
    return list(OutgoingTransaction.objects.filter(nonce=nonce).order_by("attempt"))


def status_of(nonce: int) -> str | None:
    """The status of the latest attempt at ``nonce``."""
    attempts = attempts_at(nonce)
    return attempts[-1].status if attempts else None


def assert_no_key_anywhere(key: str, log_text: str) -> None:
    secret = key.removeprefix("0x").lower()
    assert secret not in log_text.lower()
    for row in OutgoingTransaction.objects.all():
        stored = " ".join(str(v) for v in row.__dict__.values() if not isinstance(v, bytes))
        assert secret not in stored.lower()
        assert bytes.fromhex(secret) not in bytes(row.raw_transaction)


def test_it_replaces_a_stuck_transaction_with_both_fees_raised(
    w3: Web3, anvil: Anvil, fast: SendPolicy, sender_log: pytest.LogCaptureFixture
) -> None:
    # Given a chain that mines only when told, and a transfer nobody mines
    start, bob_before = w3.eth.get_transaction_count(ADA.address), w3.eth.get_balance(BOB)
    rpc(w3, "evm_setAutomine", False)
    impatient = dataclasses.replace(fast, replace_after=0.3)
    send = Background(anvil.rpc_url, ADA, TxIntent(BOB, value=12345), impatient)
    send.start()
    # When it has been pending longer than replace_after, and blocks come again
    wait_until(
        lambda: len(attempts_at(start)) >= 2 and status_of(start) == Status.PENDING,
        "the node took a replacement",
    )
    mine_until_done(w3, send)
    receipt = send.result()

    # Then one transaction used the nonce: a replacement with the same recipient, value and
    # calldata, both fees at least 10% + 1 wei above the original's, within the cap
    original, *later = attempts_at(start)
    mined = w3.eth.get_transaction(receipt["transactionHash"])
    assert receipt["status"] == 1
    assert mined["hash"].to_0x_hex() in [row.tx_hash for row in later]
    assert (mined["nonce"], mined["to"], mined["value"]) == (start, BOB, 12345)
    assert mined["input"].to_0x_hex() == original.data
    assert mined["maxFeePerGas"] * 10 >= original.max_fee_per_gas * 11 + 10
    assert mined["maxPriorityFeePerGas"] * 10 >= original.max_priority_fee_per_gas * 11 + 10
    assert mined["maxFeePerGas"] <= fast.max_fee_wei
    assert sent_by(w3, ADA.address, 1) == [(start, mined["hash"].to_0x_hex())]
    assert w3.eth.get_balance(BOB) == bob_before + 12345
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction_receipt(original.tx_hash)
    assert_no_key_anywhere(ADA_KEY, sender_log.text)


def test_it_recovers_from_a_base_fee_spike_and_a_dropped_transaction_without_a_nonce_gap(
    w3: Web3, anvil: Anvil, fast: SendPolicy, sender_log: pytest.LogCaptureFixture
) -> None:
    # Given two transfers in flight from one wallet on a chain that mines only when told
    start, first_block = w3.eth.get_transaction_count(ADA.address), w3.eth.block_number + 1
    bob_before, carol_before = w3.eth.get_balance(BOB), w3.eth.get_balance(CAROL)
    rpc(w3, "evm_setAutomine", False)
    to_bob = Background(anvil.rpc_url, ADA, TxIntent(BOB, value=1111), fast)
    to_carol = Background(anvil.rpc_url, ADA, TxIntent(CAROL, value=2222), fast)
    to_bob.start()
    to_carol.start()
    wait_until(
        lambda: OutgoingTransaction.objects.filter(status=Status.PENDING).count() == 2,
        "both transfers were broadcast",
    )
    originals = {row.nonce: row for row in OutgoingTransaction.objects.all()}
    assert sorted(originals) == [start, start + 1]

    # When the node drops the first, and the base fee jumps above what either offered
    rpc(w3, "anvil_dropTransaction", originals[start].tx_hash)
    rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(100 * GWEI))
    rpc(w3, "evm_mine")
    assert w3.eth.get_block("latest")["transactions"] == []
    for row in originals.values():
        rpc(w3, "anvil_dropTransaction", row.tx_hash)  # whatever the spike left in the pool

    # Then the sender rebroadcasts, sees them underpriced and replaces both (replace_after is a
    # minute, so nothing here waited for the stuck-timer)
    wait_until(
        lambda: all(
            any(a.attempt >= 1 and a.status == Status.PENDING for a in attempts_at(n))
            for n in originals
        ),
        "both transfers were replaced at their nonces",
    )
    mine_until_done(w3, to_bob, to_carol)
    receipts = [to_bob.result(), to_carol.result()]

    # And both went through once each, at consecutive nonces, with no gap left behind
    assert [r["status"] for r in receipts] == [1, 1]
    mined = sent_by(w3, ADA.address, first_block)
    assert [nonce for nonce, _ in mined] == [start, start + 1]
    assert {tx_hash for _, tx_hash in mined}.isdisjoint(r.tx_hash for r in originals.values())
    assert w3.eth.get_transaction_count(ADA.address) == start + 2
    assert w3.eth.get_balance(BOB) == bob_before + 1111
    assert w3.eth.get_balance(CAROL) == carol_before + 2222
    for receipt in receipts:
        tx = w3.eth.get_transaction(receipt["transactionHash"])
        assert 100 * GWEI <= tx["maxFeePerGas"] <= fast.max_fee_wei
    assert Wallet.objects.get(address=ADA.address).next_nonce == start + 2
    assert_no_key_anywhere(ADA_KEY, sender_log.text)


def test_two_workers_making_the_same_send_at_once_share_one_transaction(
    w3: Web3, anvil: Anvil, fast: SendPolicy, sender_log: pytest.LogCaptureFixture
) -> None:
    # Given one message delivered twice, to two workers at once (Dramatiq delivers at least once)
    start, bob_before = w3.eth.get_transaction_count(ADA.address), w3.eth.get_balance(BOB)
    rpc(w3, "evm_setAutomine", False)
    first = Background(anvil.rpc_url, ADA, TxIntent(BOB, value=555), fast)
    second = Background(anvil.rpc_url, ADA, TxIntent(BOB, value=555), fast)
    first.start()
    second.start()
    # When one of them has signed it and the other has found it under way
    wait_until(lambda: "waiting for it" in sender_log.text, "the second found the first's send")
    mine_until_done(w3, first, second)
    # Then both get the receipt of the one transaction that was sent
    assert first.result()["transactionHash"] == second.result()["transactionHash"]
    assert sent_by(w3, ADA.address, 1) == [(start, first.result()["transactionHash"].to_0x_hex())]
    assert w3.eth.get_balance(BOB) == bob_before + 555
    assert OutgoingTransaction.objects.count() == 1


CRASHING_SEND = """
import os, django
django.setup()
from web3 import Web3
from chain import wallets
from chain.sender import SendPolicy, TxIntent, send_transaction
w3 = Web3(Web3.HTTPProvider(os.environ["RPC_URL"]))
send_transaction(
    w3,
    wallets.deployer(w3.eth.chain_id),
    TxIntent(os.environ["TEST_TO"], value=int(os.environ["TEST_VALUE"])),
    policy=SendPolicy.from_settings(confirmations=1, timeout=30, poll_interval=0.05),
)
print("the send returned: the crash point was never reached")
"""


@pytest.mark.parametrize(
    ("crash_at", "restart"),
    [
        ("after_commit", "recover"),
        ("after_commit", "same send again"),
        ("after_broadcast", "recover"),
        ("after_broadcast", "same send again"),
    ],
)
def test_it_sends_nothing_twice_after_being_killed_mid_send(
    w3: Web3, anvil: Anvil, fast: SendPolicy, crash_at: str, restart: str
) -> None:
    # Given a sender process killed with SIGKILL right after it committed the signed transaction
    # ("after_commit") or right after the node took it, before recording that ("after_broadcast")
    start, bob_before = w3.eth.get_transaction_count(ADA.address), w3.eth.get_balance(BOB)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mintsite.settings",
        "DATABASE_URL": database_url(),
        "RPC_URL": anvil.rpc_url,
        "TX_SENDER_CRASH_AT": crash_at,
        "TEST_TO": BOB,
        "TEST_VALUE": "777",
    }
    env.pop("DEPLOYER_KEY", None)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_SEND],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    row = OutgoingTransaction.objects.get()
    assert row.status == Status.SIGNED and row.nonce == start
    broadcast = crash_at == "after_broadcast"
    assert w3.eth.get_transaction_count(ADA.address) == start + (1 if broadcast else 0)

    # When the sender starts again: a recovery pass, or the same send retried (a redelivery)
    if restart == "recover":
        recovered = recover(w3, ADA, policy=fast)
        assert [r.tx_hash for r in recovered] == [row.tx_hash]
        # the pass rebroadcasts and returns; anvil mines it a moment later
        receipt = w3.eth.wait_for_transaction_receipt(row.tx_hash, timeout=10, poll_latency=0.05)
    else:
        receipt = send_transaction(w3, ADA, TxIntent(BOB, value=777), policy=fast)

    # Then the chain holds the one transaction that was signed before the crash, once
    assert receipt["transactionHash"].to_0x_hex() == row.tx_hash
    assert sent_by(w3, ADA.address, 1) == [(start, row.tx_hash)]
    assert w3.eth.get_balance(BOB) == bob_before + 777
    # And the next send takes the next nonce, having recorded the first as confirmed
    following = send_transaction(w3, ADA, TxIntent(CAROL, value=1), policy=fast)
    assert w3.eth.get_transaction(following["transactionHash"])["nonce"] == start + 1
    row.refresh_from_db()
    assert row.status == Status.CONFIRMED
    assert OutgoingTransaction.objects.count() == 2


def test_a_reverting_call_raises_before_a_nonce_is_used(w3: Web3, fast: SendPolicy) -> None:
    # Given a contract whose mint reverts (its config is not frozen yet)
    address, _ = deploy_contract(
        w3, ANVIL_ACCOUNTS[1].private_key, name="Closed", symbol="C", price_wei=0, max_supply=5
    )
    contract = bind(w3, address)
    start = w3.eth.get_transaction_count(ADA.address)
    # When the backend tries to send it
    with pytest.raises(TransactionReverted, match="ConfigNotFrozen") as info:
        send_transaction(w3, ADA, contract.functions.mint(1), policy=fast)
    # Then nothing was signed or sent, and the next transaction takes the same nonce
    assert "no nonce was used" in str(info.value)
    assert w3.eth.get_transaction_count(ADA.address) == start
    assert not OutgoingTransaction.objects.exists()
    receipt = send_transaction(w3, ADA, TxIntent(BOB, value=1), policy=fast)
    assert w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == start


def test_it_sends_a_reorganised_transaction_again_and_returns_it_only_when_deep_enough(
    w3: Web3, anvil: Anvil, fast: SendPolicy, sender_log: pytest.LogCaptureFixture
) -> None:
    # Given a send that wants 3 confirmations, on a chain that mines only when told
    deep = dataclasses.replace(fast, confirmations=3)
    start, bob_before = w3.eth.get_transaction_count(ADA.address), w3.eth.get_balance(BOB)
    rpc(w3, "evm_setAutomine", False)
    before_it = rpc(w3, "evm_snapshot")
    send = Background(anvil.rpc_url, ADA, TxIntent(BOB, value=4242), deep)
    send.start()
    wait_until(lambda: status_of(start) == Status.PENDING, "it was broadcast")
    rpc(w3, "evm_mine")
    wait_until(lambda: status_of(start) == Status.MINED, "it was seen mined")
    orphaned = attempts_at(start)[0]
    assert send.is_alive(), "a receipt 1 block deep was handed back; 3 were asked for"

    # When the block that holds it is reorganised away
    rpc(w3, "evm_revert", before_it)
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction(orphaned.tx_hash)
    wait_until(
        lambda: status_of(start) == Status.PENDING and not attempts_at(start)[0].block_hash,
        "the sender saw it leave the chain",
    )
    mine_until_done(w3, send)
    receipt = send.result()

    # Then the same signed transaction was mined again, in a block the chain still has, and was
    # handed back only once it had its 3 confirmations
    assert receipt["transactionHash"].to_0x_hex() == orphaned.tx_hash
    assert receipt["blockHash"].to_0x_hex() != orphaned.block_hash
    assert w3.eth.get_block(receipt["blockNumber"])["hash"] == receipt["blockHash"]
    assert w3.eth.block_number - receipt["blockNumber"] + 1 >= 3
    assert sent_by(w3, ADA.address, 1) == [(start, orphaned.tx_hash)]
    assert w3.eth.get_balance(BOB) == bob_before + 4242
    assert [row.status for row in attempts_at(start)] == [Status.CONFIRMED]
    assert "reorg" in sender_log.text


def test_a_nonce_someone_else_used_fails_ours_and_says_so(
    w3: Web3, anvil: Anvil, fast: SendPolicy
) -> None:
    # Given a send waiting in the mempool of a chain that mines only when told, its sender
    # looking again only every 5 s (so it cannot send ours again before theirs is mined)
    start = w3.eth.get_transaction_count(ADA.address)
    rpc(w3, "evm_setAutomine", False)
    slow = dataclasses.replace(fast, poll_interval=5.0)
    send = Background(anvil.rpc_url, ADA, TxIntent(BOB, value=4242), slow)
    send.start()
    wait_until(lambda: status_of(start) == Status.PENDING, "it was broadcast")
    ours = attempts_at(start)[0]

    # When another program holding the same key replaces it at that nonce, paying more
    theirs = ADA.sign_transaction(
        {
            "to": CAROL, "value": 1, "nonce": start, "gas": 21_000, "chainId": w3.eth.chain_id,
            "maxFeePerGas": 2 * ours.max_fee_per_gas,
            "maxPriorityFeePerGas": 2 * ours.max_priority_fee_per_gas,
        }
    )  # fmt: skip
    w3.eth.send_raw_transaction(theirs.raw_transaction)
    rpc(w3, "evm_mine")

    # Then ours fails, naming the nonce and our transaction, and the send says so
    with pytest.raises(NonceConsumed, match=f"nonce {start} of {ADA.address} was used by"):
        send.result()
    (row,) = attempts_at(start)
    assert row.status == Status.FAILED and ours.tx_hash in row.error
    assert sent_by(w3, ADA.address, 1) == [(start, theirs.hash.to_0x_hex())]


def test_it_refuses_a_fee_above_the_cap_and_names_the_setting(w3: Web3, settings) -> None:  # type: ignore[no-untyped-def]
    # Given a cap of 50 gwei and a base fee of 80 gwei
    settings.TX_MAX_FEE_GWEI = 50
    rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(80 * GWEI))
    rpc(w3, "evm_mine")
    start = w3.eth.get_transaction_count(ADA.address)
    # When a send is priced
    with pytest.raises(FeeCapExceeded, match="TX_MAX_FEE_GWEI=50") as info:
        send_transaction(w3, ADA, TxIntent(BOB, value=1))
    # Then it says why, and nothing was signed or sent
    assert "base fee 80" in str(info.value)
    assert w3.eth.get_transaction_count(ADA.address) == start
    assert not OutgoingTransaction.objects.exists()


def test_a_wallet_that_cannot_pay_gets_a_specific_error_and_keeps_its_nonce(
    w3: Web3, fast: SendPolicy
) -> None:
    # Given a wallet holding 1000 wei
    pauper = Account.create()
    rpc(w3, "anvil_setBalance", pauper.address, hex(1000))
    # When it is asked to send
    with pytest.raises(WalletCannotPay) as info:
        send_transaction(w3, pauper, TxIntent(BOB, value=0), policy=fast)
    # Then the error names the wallet, the chain, what it holds and what it needs
    error = info.value
    assert (error.address, error.chain_id, error.balance) == (pauper.address, 31337, 1000)
    assert error.need > 1000
    for part in (pauper.address, "chain 31337", "1000 wei", f"{error.need} wei"):
        assert part in str(error)
    assert w3.eth.get_transaction_count(pauper.address) == 0
    assert not OutgoingTransaction.objects.exists()
    # And once funded, its first transaction takes nonce 0
    rpc(w3, "anvil_setBalance", pauper.address, hex(10**18))
    receipt = send_transaction(w3, pauper, TxIntent(BOB, value=0), policy=fast)
    assert w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == 0


def test_a_transaction_the_node_refuses_for_good_has_its_nonce_filled(
    w3: Web3, anvil: Anvil, fast: SendPolicy
) -> None:
    # Given a transfer in the mempool of a chain that mines only when told
    mallory = ANVIL_ACCOUNTS[2]
    account = Account.from_key(mallory.private_key)
    start, bob_before = w3.eth.get_transaction_count(account.address), w3.eth.get_balance(BOB)
    rpc(w3, "evm_setAutomine", False)
    send = Background(anvil.rpc_url, account, TxIntent(BOB, value=99), fast)
    send.start()
    wait_until(lambda: status_of(start) == Status.PENDING, "it was broadcast")
    # When the node drops it and then refuses its bytes for good (gas above the block's limit)
    rpc(w3, "evm_setBlockGasLimit", hex(23_000))
    rpc(w3, "anvil_dropTransaction", attempts_at(start)[0].tx_hash)
    wait_until(lambda: len(attempts_at(start)) == 2, "the nonce was filled")
    mine_until_done(w3, send)

    # Then the caller learns it was refused, the nonce went to a 0-value transfer to itself,
    # and the wallet's next transaction is not held up behind a gap
    with pytest.raises(TransactionRejected, match="filled"):
        send.result()
    filler = attempts_at(start)[1]
    assert filler.is_filler and filler.status == Status.CONFIRMED
    assert w3.eth.get_transaction(filler.tx_hash)["to"] == account.address
    assert w3.eth.get_balance(BOB) == bob_before
    rpc(w3, "evm_setBlockGasLimit", hex(30_000_000))
    rpc(w3, "evm_setAutomine", True)
    following = send_transaction(w3, account, TxIntent(BOB, value=5), policy=fast)
    assert [n for n, _ in sent_by(w3, account.address, 1)] == [start, start + 1]
    assert following["status"] == 1


# -- keys -----------------------------------------------------------------------------------------
def test_it_loads_keys_from_a_keystore_and_a_key_file(tmp_path: Path) -> None:
    # Given a publisher key in an encrypted keystore, its password in a file, and a seed
    # committer key in a plain key file, on a chain that is not anvil's
    publisher, committer = Account.create(), Account.create()
    keystore = tmp_path / "publisher.json"
    keystore.write_text(json.dumps(Account.encrypt(publisher.key, "correct horse", iterations=2)))
    (tmp_path / "password").write_text("correct horse\n")
    (tmp_path / "committer.key").write_text(committer.key.to_0x_hex() + "\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PUBLISHER_", "SEED_"))},
        "DJANGO_SETTINGS_MODULE": "mintsite.settings",
        "PUBLISHER_KEYSTORE": str(keystore),
        "PUBLISHER_KEYSTORE_PASSWORD_FILE": str(tmp_path / "password"),
        "SEED_COMMITTER_KEY_FILE": str(tmp_path / "committer.key"),
    }
    script = (
        "import django, json; django.setup(); from chain import wallets; "
        "print(json.dumps([wallets.publisher(1).address, wallets.seed_committer(1).address]))"
    )
    # When a process configured that way asks for its signers
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True
    )
    # Then it signs as those accounts, and never prints a key
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [publisher.address, committer.address]
    for key in (publisher.key, committer.key):
        assert key.hex() not in (done.stdout + done.stderr).lower()


@pytest.mark.parametrize(
    ("configured", "error", "message"),
    [
        ({"PUBLISHER_KEYSTORE_PASSWORD": "Zq-wrong-pass"}, ImproperlyConfigured, "cannot be decrypted"),
        ({"PUBLISHER_KEYSTORE_PASSWORD": None}, ImproperlyConfigured, "PUBLISHER_KEYSTORE_PASSWORD_FILE"),
        ({"PUBLISHER_KEY": "0x1234"}, ImproperlyConfigured, "both PUBLISHER_KEY"),
        ({"PUBLISHER_KEYSTORE": None}, MissingKey, "set PUBLISHER_KEY, PUBLISHER_KEY_FILE or PUBLISHER_KEYSTORE"),
    ],
)  # fmt: skip
def test_it_explains_a_key_it_cannot_use_without_printing_secrets(
    settings,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    configured: dict[str, str | None],
    error: type[Exception],
    message: str,
) -> None:
    publisher = Account.create()
    keystore = tmp_path / "publisher.json"
    keystore.write_text(json.dumps(Account.encrypt(publisher.key, "Zq-right-pass", iterations=2)))
    settings.PUBLISHER_KEY = None
    settings.PUBLISHER_KEYSTORE = str(keystore)
    settings.PUBLISHER_KEYSTORE_PASSWORD = "Zq-right-pass"
    for name, value in configured.items():
        setattr(settings, name, value)
    with pytest.raises(error, match=message) as info:
        wallets.publisher(1)
    assert "Zq-" not in str(info.value)
    assert publisher.key.hex() not in str(info.value)


def test_it_never_rebroadcasts_onto_an_embedded_chain_that_was_reset(fast: SendPolicy) -> None:
    # Given a transfer left pending on an anvil that was then restarted (same chain id)
    with start_anvil() as old:
        old_w3 = Web3(Web3.HTTPProvider(old.rpc_url))
        rpc(old_w3, "evm_setAutomine", False)
        with pytest.raises(TransactionTimeout, match="stays tracked"):
            send_transaction(
                old_w3, ADA, TxIntent(BOB, value=31), policy=dataclasses.replace(fast, timeout=0.2)
            )
    stale = OutgoingTransaction.objects.get()
    assert stale.status == Status.PENDING
    # When the wallet sends on the new chain: first something else, then the same transfer
    with start_anvil() as new:
        new_w3 = Web3(Web3.HTTPProvider(new.rpc_url))
        other = send_transaction(new_w3, ADA, TxIntent(CAROL, value=32), policy=fast)
        again = send_transaction(new_w3, ADA, TxIntent(BOB, value=31), policy=fast)
        # Then the stale transaction was not replayed: the new chain has exactly the two sends
        assert sent_by(new_w3, ADA.address, 1) == [
            (0, other["transactionHash"].to_0x_hex()),
            (1, again["transactionHash"].to_0x_hex()),
        ]
    stale.refresh_from_db()
    assert stale.status == Status.FAILED and "reset" in stale.error


def test_it_stops_when_a_chain_id_suddenly_serves_another_chain(fast: SendPolicy) -> None:
    # Given a wallet that has sent on chain 4242
    with start_anvil(chain_id=4242) as first:
        send_transaction(
            Web3(Web3.HTTPProvider(first.rpc_url)), ADA, TxIntent(BOB, value=1), policy=fast
        )
    # When the endpoint for 4242 now serves another chain (a wrong RPC_URL; another hardfork
    # gives it another block 0 even when both start within the same second)
    with start_anvil(chain_id=4242, hardfork="cancun") as other:
        w3 = Web3(Web3.HTTPProvider(other.rpc_url))
        # Then nothing is sent there, and the error says what to check
        with pytest.raises(ChainChanged, match="Check RPC_URL"):
            send_transaction(w3, ADA, TxIntent(BOB, value=2), policy=fast)
        assert w3.eth.get_transaction_count(ADA.address) == 0
