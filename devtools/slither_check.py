"""``make slither`` (part of ``make lint``): Slither over contracts/, against a triage file.

The native solc cannot be downloaded here, so crytic-compile runs ``contracts/
solc-standard-json.js``, which answers ``solc --version`` and compiles ``--standard-json`` with
the project's solc-js and settings. One compile is exported (crytic-compile's standard format)
and every tool reads it:

1. the exported bytecode of every deployed contract (``DEPLOYED``: MintOnDemand, the SaleRules
   library it links, PaymentSplit) is compared with its ``contracts/build/<name>.json``: Slither
   analyses the bytes that are deployed, byte for byte (MintOnDemand's with SaleRules' link
   placeholders in both, as solc leaves them);
2. ``slither`` with every detector over all of contracts/, ``node_modules`` (OpenZeppelin,
   ERC721A) and the gas benchmark's ``NaiveBaseline`` filtered out;
3. ``slither-check-erc`` for ERC-721 and ERC-165 on MintOnDemand.

Each finding is keyed by its detector and its first line without the source location (so a
line that moves is the same finding), each ERC check by the ERC and its unticked line, and
looked up in ``contracts/slither-triage.json``, where every accepted one says why. A finding
not there fails the run (exit 1); a triage entry nothing matches any more is printed, so the
file can be trimmed. Slither itself lives in its own venv (``SLITHER_VENV``, default
``var/slither-venv``; ``make slither`` creates it): its pinned dependencies stay out of the
project's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONTRACTS = REPO / "contracts"
TRIAGE = CONTRACTS / "slither-triage.json"
WRAPPER = "./solc-standard-json.js"
FILTER = "node_modules|NaiveBaseline"
# every contract a deployment sends to a chain, by source unit
DEPLOYED = {
    "MintOnDemand": "MintOnDemand.sol",
    "SaleRules": "SaleRules.sol",
    "PaymentSplit": "PaymentSplit.sol",
}
ERCS = ("erc721", "erc165")
_LOCATION = re.compile(r"\s*\([^()]*\.sol#[0-9-]+\)")


def finding_key(result: dict[str, Any]) -> str:
    """``<detector>: <first line of the description, source locations removed>``."""
    first = str(result["description"]).strip().splitlines()[0]
    return f"{result['check']}: {_LOCATION.sub('', first).strip()}"


def erc_keys(erc: str, output: str) -> list[str]:
    """The checks ``slither-check-erc`` left unticked (``[ ]`` lines), as ``<erc>: <line>``."""
    return [f"{erc}: {line.strip()[4:]}" for line in output.splitlines() if "[ ]" in line]


def _tool(venv: Path, name: str) -> str:
    path = venv.resolve() / "bin" / name  # the tools run with contracts/ as their directory
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `make slither` (it creates {venv})")
    return str(path)


def _run(cmd: list[str], *, ok: tuple[int, ...] = (0,), stderr: bool = False) -> str:
    """``cmd``'s standard output (and its standard error after it, with ``stderr``: where
    slither-check-erc logs its report)."""
    done = subprocess.run(cmd, cwd=CONTRACTS, capture_output=True, text=True, timeout=600)
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done.stdout + (done.stderr if stderr else "")


def export(venv: Path, dest: Path) -> Path:
    """Compile contracts/ once through the wrapper and export it; returns the export file."""
    _run([
        _tool(venv, "crytic-compile"), ".", "--solc", WRAPPER, "--solc-standard-json",
        "--export-format", "standard", "--export-dir", str(dest),
    ])  # fmt: skip
    (written,) = dest.glob("*.json")
    # crytic-compile reads a standard export back only under a name ending in _export.json
    return written.rename(dest / "contracts_export.json")


def different_bytecode(exported: Path) -> list[str]:
    """The contracts of ``DEPLOYED`` whose exported bytecode is not their build artifact's."""
    units = json.loads(exported.read_text())["compilation_units"]
    (unit,) = units.values()
    different = []
    for name, source in DEPLOYED.items():
        compiled = unit["source_units"][source]["contracts"][name]
        built = json.loads((CONTRACTS / "build" / f"{name}.json").read_text())
        if (
            compiled["bin"] != built["bytecode"][2:]
            or compiled["bin-runtime"] != built["deployedBytecode"][2:]
        ):
            different.append(name)
    return different


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--venv", type=Path, default=Path(os.environ.get("SLITHER_VENV", REPO / "var/slither-venv"))
    )
    args = parser.parse_args(argv)
    triage = json.loads(TRIAGE.read_text())
    accepted = {entry["finding"]: entry["why"] for entry in triage["findings"]}
    with tempfile.TemporaryDirectory() as tmp:
        exported = export(args.venv, Path(tmp))
        different = different_bytecode(exported)
        if different:
            names = ", ".join(different)
            print(
                f"the bytecode Slither analyses is not contracts/build's ({names}): run `make contracts`"
            )
            return 1
        print(
            f"Slither analyses contracts/build's bytecode of {', '.join(DEPLOYED)}, byte for byte"
        )
        report = json.loads(
            _run(
                [_tool(args.venv, "slither"), str(exported), "--filter-paths", FILTER,
                 "--json", "-"],
                ok=(0, 1, 255),  # slither exits non-zero when it finds anything
            )
        )  # fmt: skip
        if not report.get("success", False):
            print(f"slither failed: {report.get('error')}")
            return 1
        found = [finding_key(r) for r in report["results"].get("detectors", [])]
        for erc in ERCS:
            found += erc_keys(
                erc,
                _run([_tool(args.venv, "slither-check-erc"), str(exported), "MintOnDemand",
                      "--erc", erc], stderr=True),
            )  # fmt: skip
    new = sorted(set(found) - set(accepted))
    stale = sorted(set(accepted) - set(found))
    for key in sorted(set(found) & set(accepted)):
        print(f"accepted  {key}\n          why: {accepted[key]}")
    for key in stale:
        print(f"stale     {key} (no longer found: remove it from {TRIAGE.name})")
    for key in new:
        print(f"NEW       {key}")
    print(
        f"{len(found)} findings: {len(found) - len(new)} triaged in "
        f"{TRIAGE.relative_to(REPO)}, {len(new)} new"
    )
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
