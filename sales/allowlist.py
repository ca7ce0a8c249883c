"""Reading an allowlist file: a CSV of ``address,allowance``, one entry a line.

The first non-blank line may be the header ``address,allowance``; blank lines are skipped;
quoted cells (as spreadsheets export them) and trailing empty cells are accepted. Addresses may be
all lower case, all upper case, or mixed case that passes its EIP-55 checksum (mixed case that
fails it is most likely a typo, so it is refused rather than fixed); they come out checksummed.
An allowance is a whole number from 1 to :data:`MAX_ALLOWANCE`.

Everything wrong is reported at once (up to :data:`MAX_PROBLEMS`), each problem with its line:
:class:`~sales.errors.InvalidAllowlist`. Pure: no Django.
"""

from __future__ import annotations

import csv
import re
from typing import NamedTuple

from eth_utils import is_checksum_address, to_checksum_address

from sales.errors import InvalidAllowlist, Problem

__all__ = [
    "MAX_ALLOWANCE",
    "MAX_BYTES",
    "MAX_ENTRIES",
    "MAX_PROBLEMS",
    "Entry",
    "check_address",
    "parse_allowlist",
]

#: Entries in one allowlist. Each is a row with its proof (about 15 hashes at this size) and a
#: value in the pinned tree, whose JSON is then about 4 MB; larger drops are split into lists.
MAX_ENTRIES = 20_000
#: The file's size: MAX_ENTRIES lines of a quoted address and a large allowance, with room.
MAX_BYTES = 2 * 1024 * 1024
#: The most tokens one address may be allowed: an allowance counts tokens, which no collection
#: has more of (Collection.max_supply is smaller), and keeping it within a JSON number's exact
#: range lets the API give it as a number.
MAX_ALLOWANCE = 2**32 - 1
#: Problems reported before giving up on the rest of the file.
MAX_PROBLEMS = 20

HEADER = ("address", "allowance")
ZERO_ADDRESS = "0x" + "00" * 20
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_WORD = re.compile(r"[A-Za-z_ ]+")


class Entry(NamedTuple):
    """One line of the file: the checksummed address, its allowance, and the line it was on."""

    address: str
    allowance: int
    line: int


def parse_allowlist(data: bytes, *, count: str = "allowance") -> list[Entry]:
    """The entries of an allowlist file, in its order; :class:`InvalidAllowlist` lists every
    problem (bad address, bad checksum, bad allowance, an address listed twice, no entries,
    too many entries or bytes), each with its line.

    ``count`` is what the second column is called in the messages and the header: an airdrop's
    list of ``address,quantity`` reads the same way."""
    if len(data) > MAX_BYTES:
        raise InvalidAllowlist(
            [Problem(None, f"the file is larger than {MAX_BYTES:,} bytes: split the list")]
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidAllowlist(
            [
                Problem(
                    None, f"the file is not UTF-8 text (byte {exc.start:,} is not): save it as CSV"
                )
            ]
        ) from None

    entries: list[Entry] = []
    problems: list[Problem] = []
    first_line_of: dict[str, int] = {}
    seen_content = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cells = _cells(line)
        except csv.Error as exc:
            problems.append(Problem(number, f"not a CSV line ({exc})"))
            continue
        if not seen_content:
            seen_content = True
            if _WORD.fullmatch(cells[0]):  # a header, or something meant as one
                if tuple(c.lower() for c in cells) != (HEADER[0], count):
                    problems.append(
                        Problem(
                            number, f"the header must be 'address,{count}', not {line.strip()!r}"
                        )
                    )
                continue
        if len(entries) == MAX_ENTRIES:
            problems.append(
                Problem(
                    number,
                    f"more than {MAX_ENTRIES:,} entries: one allowlist holds at most "
                    f"{MAX_ENTRIES:,}; split the list",
                )
            )
            break
        entry, problem = _entry(number, cells, count)
        if problem is not None:
            problems.append(problem)
        elif entry is not None:
            earlier = first_line_of.get(entry.address)
            if earlier is not None:
                problems.append(
                    Problem(
                        number,
                        f"{entry.address} is listed twice, on line {earlier} and on line {number}",
                    )
                )
            else:
                first_line_of[entry.address] = number
                entries.append(entry)
        if len(problems) >= MAX_PROBLEMS:
            problems.append(Problem(None, f"stopped after {MAX_PROBLEMS} problems"))
            break
    if not problems and not entries:
        problems.append(
            Problem(None, f"the file has no entries: expected lines of address,{count}")
        )
    if problems:
        raise InvalidAllowlist(problems)
    return entries


def check_address(text: str) -> str:
    """``text`` as a checksummed address; ``ValueError`` saying what is wrong: not 0x and 40 hex
    digits, or mixed case that fails its EIP-55 checksum."""
    if not _ADDRESS.fullmatch(text):
        raise ValueError(f"{text!r} is not an address: expected 0x and 40 hex digits")
    digits = text[2:]
    if digits not in (digits.lower(), digits.upper()) and not is_checksum_address(text):
        raise ValueError(
            f"{text} fails its EIP-55 checksum (mixed case must be the checksummed form): "
            "is there a typo?"
        )
    return to_checksum_address(text)


def _cells(line: str) -> list[str]:
    (cells,) = csv.reader([line], skipinitialspace=True)
    cells = [c.strip() for c in cells]
    while len(cells) > 2 and not cells[-1]:  # a spreadsheet's trailing empty columns
        cells.pop()
    return cells


def _entry(number: int, cells: list[str], count: str) -> tuple[Entry | None, Problem | None]:
    def problem(message: str) -> tuple[None, Problem]:
        return None, Problem(number, message)

    if len(cells) != 2:
        return problem(
            f"expected 2 values, address,{count}; found {len(cells)}: {','.join(cells)!r}"
        )
    address, amount = cells
    try:
        checksummed = check_address(address)
    except ValueError as exc:
        return problem(str(exc))
    if checksummed == ZERO_ADDRESS:
        return problem("the zero address cannot mint")
    if not amount:
        return problem(f"no {count} for {address}")
    if not re.fullmatch(r"[+-]?\d+", amount):
        return problem(f"{count} {amount!r} is not a whole number")
    tokens = int(amount)
    if tokens < 1:
        return problem(f"{count} {amount} must be at least 1")
    if tokens > MAX_ALLOWANCE:
        return problem(f"{count} {amount} is more than {MAX_ALLOWANCE:,}")
    return Entry(checksummed, tokens, number), None
