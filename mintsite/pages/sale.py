"""The sale as the mint page shows it (issue 19): the contract's scheduled phases, which one is
open at the chain's time, and what a token costs in it.

The page's script computes the same from the same phases every second (a Dutch auction's price
moves), with the rules in mintsite/static/mintsite/sale_rules.js; the view renders the first
state from here, so the page names the phase and its price before a wallet is connected. The rules are the contract's (contracts/MintOnDemand.sol ``_findPhase``
and ``_priceAt``): a phase is open from ``start`` (inclusive) to ``end`` (exclusive), phases run
in id order, and an auction's price is ``max(floor, price - dropPerStep * steps elapsed)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from chain.sale_phase import PhaseStruct

ZERO_ROOT = "0x" + "00" * 32


@dataclass(frozen=True)
class Phase:
    """One scheduled phase, the contract's ``Phase`` struct with its id."""

    id: int
    start: int
    end: int
    step_seconds: int
    max_per_wallet: int  # 0: no cap in the phase
    price: int
    floor_price: int
    drop_per_step: int
    merkle_root: str  # 0x hex; ZERO_ROOT: anyone may mint
    label: str = ""  # the manager's name for it (sales.SalePhase), when the chain holds that phase

    @classmethod
    def from_struct(cls, phase_id: int, fields: tuple[Any, ...]) -> Phase:
        """Phase ``phase_id`` from the struct ``scheduledPhase`` returns."""
        p = PhaseStruct(*fields)
        return cls(
            phase_id, p.start, p.end, p.step_seconds, p.max_per_wallet, p.price, p.floor_price,
            p.drop_per_step, "0x" + bytes(p.merkle_root).hex(),
        )  # fmt: skip

    @property
    def allowlist(self) -> bool:
        return self.merkle_root != ZERO_ROOT

    @property
    def auction(self) -> bool:
        return self.step_seconds != 0

    @property
    def name(self) -> str:
        """What the page calls it; sale_rules.js's ``phaseName`` says the same."""
        if self.allowlist:
            return "Allowlist Dutch auction" if self.auction else "Allowlist"
        return "Dutch auction" if self.auction else "Public"

    @property
    def title(self) -> str:
        """The manager's name with the kind (``Early access (Allowlist)``), or the kind alone;
        sale_rules.js's ``phaseTitle`` says the same."""
        return (
            f"{self.label} ({self.name})" if self.label and self.label != self.name else self.name
        )

    def struct(self) -> PhaseStruct:
        """The contract's ``Phase`` struct, as ``sales.SalePhase.as_struct`` gives it."""
        return PhaseStruct(
            self.start, self.end, self.step_seconds, self.max_per_wallet, self.price,
            self.floor_price, self.drop_per_step, bytes.fromhex(self.merkle_root[2:]),
        )  # fmt: skip

    def price_at(self, timestamp: int) -> int:
        if not self.auction or timestamp <= self.start:
            return self.price
        drop = (timestamp - self.start) // self.step_seconds * self.drop_per_step
        return self.floor_price if drop >= self.price - self.floor_price else self.price - drop

    def document(self) -> dict[str, Any]:
        """For the page's script: amounts in wei as strings (JSON numbers lose them)."""
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "step_seconds": self.step_seconds,
            "max_per_wallet": self.max_per_wallet,
            "price": str(self.price),
            "floor_price": str(self.floor_price),
            "drop_per_step": str(self.drop_per_step),
            "merkle_root": self.merkle_root,
            "label": self.label,
        }


@dataclass(frozen=True)
class Sale:
    """The scheduled phases and the chain's time when they were read (the latest block's)."""

    phases: tuple[Phase, ...]
    chain_time: int

    def _find(self) -> tuple[str, Phase | None]:
        """As the contract's ``_findPhase``: ("unphased", None), ("open", the phase),
        ("upcoming", the next phase) or ("over", None)."""
        if not self.phases:
            return "unphased", None
        for phase in self.phases:
            if self.chain_time < phase.start:
                return "upcoming", phase
            if self.chain_time < phase.end:
                return "open", phase
        return "over", None

    @property
    def state(self) -> str:
        return self._find()[0]

    @property
    def open_phase(self) -> Phase | None:
        state, phase = self._find()
        return phase if state == "open" else None

    @property
    def next_phase(self) -> Phase | None:
        state, phase = self._find()
        return phase if state == "upcoming" else None

    @property
    def headline(self) -> str:
        """The phase line before the script runs; the script shows opening times in the
        visitor's own time zone (this says UTC)."""
        state, phase = self._find()
        if state == "unphased":
            return "Public"
        if state == "over":
            return "Sale over"
        assert phase is not None
        if state == "upcoming":
            opens = datetime.fromtimestamp(phase.start, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
            return f"Sale not open — opens {opens}"
        return phase.title

    def document(self) -> dict[str, Any]:
        return {"phases": [p.document() for p in self.phases], "chain_time": self.chain_time}


def read_sale(w3: Web3, contract: Contract) -> Sale:
    """Every scheduled phase of ``contract`` and the latest block's time. A contract from before
    sale phases (no ``phaseCount``) has none: it sells at its price to anyone."""
    chain_time = int(w3.eth.get_block("latest")["timestamp"])
    try:
        count = contract.functions.phaseCount().call()
    except ContractLogicError:
        return Sale((), chain_time)
    phases = tuple(
        Phase.from_struct(i, tuple(contract.functions.scheduledPhase(i).call()))
        for i in range(count)
    )
    return Sale(phases, chain_time)


def labelled(sale: Sale, names: dict[int, tuple[PhaseStruct, str]]) -> Sale:
    """``sale`` with each phase named as the manager named it (``names``: phase id → (the struct
    the manager scheduled, its name)), where the chain holds exactly that struct: a phase edited
    in the admin but not scheduled again keeps its kind alone."""
    phases = tuple(
        replace(phase, label=names[phase.id][1])
        if phase.id in names and names[phase.id][0] == phase.struct()
        else phase
        for phase in sale.phases
    )
    return replace(sale, phases=phases)
