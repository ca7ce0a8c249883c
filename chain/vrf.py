"""Chainlink VRF v2.5 seeds: the coordinator a collection requests its random words from.

A collection deployed with ``vrf`` set (``CollectionSpec.vrf``) seeds each token from a VRF
random word (contracts/MintOnDemand.sol): ``commitSeeds`` requests one word for the batches it
names, the coordinator fulfils the request through ``rawFulfillRandomWords``, and the seed is
``keccak256(bytes32(randomWord) ‖ tokenId)``.

On a public chain the coordinator is Chainlink's, the subscription the studio's (created and
funded at vrf.chain.link, the collection's contract added as its consumer), and a Chainlink node
fulfils each request with a proof the coordinator checks on-chain. On the local chain
(``make run``, the tests) the coordinator is Chainlink's own ``VRFCoordinatorV2_5Mock`` from
``@chainlink/contracts``, a real contract: :func:`local_coordinator` deploys it with a funded
subscription, and :func:`fulfil_pending` stands in for the Chainlink node, fulfilling every
request not fulfilled yet with the mock's words (``keccak256(requestId, i)``, which are not
random: the mock proves the wiring, not the randomness).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eth_account import Account
from web3 import Web3
from web3.contract import Contract

from chain.contract import VrfSettings, deploy_artifact, load_artifact, send_and_wait

log = logging.getLogger(__name__)

MOCK = "VRFCoordinatorV2_5Mock"
# The mock's fee model: a flat base fee plus gas at a fixed price, charged in "LINK" that its
# fundSubscription simply credits (no LINK token on the local chain).
MOCK_BASE_FEE = 10**15
MOCK_GAS_PRICE = 10**9
MOCK_WEI_PER_UNIT_LINK = 4 * 10**15
MOCK_FUNDING = 10**24
LOCAL_KEY_HASH = bytes.fromhex("00" * 31 + "01")  # the mock ignores it; a real lane's hash


def coordinator(w3: Web3, address: str) -> Contract:
    """The coordinator at ``address``, bound with the mock's ABI (a superset of what a consumer
    and this module call on the real coordinator's interface)."""
    return w3.eth.contract(
        address=Web3.to_checksum_address(address), abi=load_artifact(MOCK)["abi"]
    )


@dataclass(frozen=True)
class LocalVrf:
    """A mock coordinator on the local chain with one funded subscription."""

    coordinator: str
    subscription_id: int

    def settings(self) -> VrfSettings:
        return VrfSettings(
            coordinator=self.coordinator,
            subscription_id=self.subscription_id,
            key_hash=LOCAL_KEY_HASH,
        )


def local_coordinator(w3: Web3, owner_key: str) -> LocalVrf:
    """Deploy Chainlink's ``VRFCoordinatorV2_5Mock`` and a subscription it has funded, owned by
    ``owner_key`` (who must then add each consumer: :func:`add_consumer`)."""
    address, _ = deploy_artifact(
        w3, owner_key, MOCK, MOCK_BASE_FEE, MOCK_GAS_PRICE, MOCK_WEI_PER_UNIT_LINK
    )
    mock = coordinator(w3, address)
    receipt = send_and_wait(w3, owner_key, mock.functions.createSubscription())
    (created,) = mock.events.SubscriptionCreated().process_receipt(receipt)
    subscription = int(created.args["subId"])
    send_and_wait(w3, owner_key, mock.functions.fundSubscription(subscription, MOCK_FUNDING))
    log.info("local VRF coordinator %s, subscription %d", address, subscription)
    return LocalVrf(address, subscription)


def add_consumer(w3: Web3, owner_key: str, vrf: VrfSettings, consumer: str) -> None:
    """Let ``consumer`` (a collection's contract) request words on the subscription; the
    subscription's owner signs (on a public chain: vrf.chain.link does the same)."""
    mock = coordinator(w3, vrf.coordinator)
    send_and_wait(
        w3,
        owner_key,
        mock.functions.addConsumer(vrf.subscription_id, Web3.to_checksum_address(consumer)),
    )


def fulfil_pending(w3: Web3, key: str, address: str, from_block: int = 0) -> list[int]:
    """What a Chainlink node does, on the local mock: fulfil every request made since
    ``from_block`` that is not fulfilled yet, sent from ``key``; the request ids fulfilled."""
    mock = coordinator(w3, address)
    requested = mock.events.RandomWordsRequested().get_logs(from_block=from_block)
    done = {
        int(e.args["requestId"])
        for e in mock.events.RandomWordsFulfilled().get_logs(from_block=from_block)
    }
    fulfilled = []
    for event in requested:
        request_id = int(event.args["requestId"])
        if request_id in done:
            continue
        consumer = event.args["sender"]
        send_and_wait(w3, key, mock.functions.fulfillRandomWords(request_id, consumer))
        fulfilled.append(request_id)
        log.info(
            "VRF request %d fulfilled for %s by %s",
            request_id,
            consumer,
            Account.from_key(key).address,
        )
    return fulfilled
