"""The command line: ``mintverify``, ``python -m verifier``, and (through the web tier's wrapper)
``manage.py verify_token``. Exit status 0 if nothing FAILED, 1 if a check failed, 2 for input it
cannot use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from verifier.audit import audit_collection, render_audit
from verifier.errors import VerifyError
from verifier.fetching import Gateway, connect, default_gateways
from verifier.report import Check, any_failed, json_document, render_table
from verifier.rerender import CLIP_TOLERANCE, PIXEL_TOLERANCE, Models, Weights
from verifier.verification import resolve_weights, verify_token
from verifier.weights_cache import FetchWeights, default_cache_dir

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

DESCRIPTION = (
    "Verify a token's provenance from the chain, an IPFS gateway and (optionally) the model "
    "weights; never the project's database."
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mintverify", description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser, *, project_gateway: str | None = None) -> None:
    """The command line, shared by ``mintverify`` and ``manage.py verify_token``."""
    gateways = default_gateways(project_gateway)
    p.add_argument("--rpc", required=True, help="JSON-RPC URL of the chain")
    p.add_argument("--contract", required=True, help="the collection's contract address")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--token", type=int, help="token id")
    which.add_argument("--all", action="store_true", help="every minted token")
    which.add_argument(
        "--collection",
        action="store_true",
        help="audit the whole collection: every token's checks, quota counts and weighted "
        "frequencies against the frozen table, shared images and near duplicates, tokens "
        "still on the placeholder",
    )
    p.add_argument(
        "--gateway",
        action="append",
        help="IPFS gateway URL; repeat it to try several in order (default: "
        f"{', then '.join(gateways)})",
    )
    p.set_defaults(default_gateways=gateways)
    p.add_argument("--weights", type=Path, help="folder with diffusion/ and clip/")
    p.add_argument(
        "--fetch-weights",
        action="store_true",
        help="fetch the weights the collection published on IPFS (by the CIDs in its frozen "
        "config) from the gateways, every block checked, and re-render with them",
    )
    p.add_argument(
        "--weights-cache",
        type=Path,
        help="where --fetch-weights keeps what it fetched, by CID (default: "
        f"{default_cache_dir()}; $MINTVERIFY_CACHE)",
    )
    p.add_argument("--diffusion", type=Path, help="diffusion weights (instead of --weights)")
    p.add_argument("--clip", type=Path, help="CLIP weights (instead of --weights)")
    p.add_argument("--model-config", type=Path, help="component configs of a single-file model")
    p.add_argument(
        "--adapter",
        type=Path,
        action="append",
        default=[],
        help="a LoRA adapter file the collection uses (with --diffusion; repeat it; found by "
        "sha256, so any name); with --weights, DIR/adapters/ is read",
    )
    p.add_argument(
        "--onnx", type=Path, help="the ONNX export's folder (with --diffusion; or DIR/onnx/)"
    )
    p.add_argument("--device", help="torch device for the re-render (default: as recorded)")
    p.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        help="precision of the re-render (default: as recorded); another one is compared "
        "within --pixel-tolerance",
    )
    p.add_argument(
        "--pixel-tolerance",
        type=float,
        default=PIXEL_TOLERANCE,
        help="mean absolute difference (0-255 scale) a re-render that is not bit-exact may show "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--clip-tolerance",
        type=float,
        default=CLIP_TOLERANCE,
        help="how far a recomputed CLIP score may be from the recorded one (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace, out: SupportsWrite[str] | None = None) -> int:
    """Run the parsed arguments; print the result to ``out``; 0 if nothing FAILED, 1 if a
    check failed, 2 for unusable input."""
    out = out or sys.stdout
    weights: Path | Weights | FetchWeights | None = args.weights
    if args.fetch_weights:
        if args.weights or args.diffusion or args.clip or args.adapter or args.onnx:
            print("error: --fetch-weights takes no local weights", file=sys.stderr)
            return 2
        weights = FetchWeights(args.weights_cache)
    elif args.diffusion or args.clip:
        if not (args.diffusion and args.clip) or args.weights:
            print("error: give --weights, or both --diffusion and --clip", file=sys.stderr)
            return 2
        weights = Weights(
            args.diffusion,
            args.clip,
            args.model_config,
            adapters=tuple(args.adapter),
            onnx=args.onnx,
        )
    elif args.adapter or args.onnx:
        print("error: --adapter and --onnx go with --diffusion and --clip", file=sys.stderr)
        return 2
    try:
        gateway = Gateway(args.gateway or args.default_gateways)
        if args.collection:
            audit = audit_collection(
                args.rpc,
                args.contract,
                gateway,
                weights,
                device=args.device,
                dtype=args.dtype,
                pixel_tolerance=args.pixel_tolerance,
                clip_tolerance=args.clip_tolerance,
            )
        else:
            results = _verify_tokens(args, weights, gateway)
    except VerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # web3 raises many kinds for a bad RPC answer
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.collection:
        print(json.dumps(audit.as_json(), indent=2) if args.json else render_audit(audit), file=out)
        return 0 if audit.clean else 1
    failed = any_failed(results)
    if args.json:
        print(json.dumps(json_document(args.contract, results, gateway.served), indent=2), file=out)
    else:
        print("\n\n".join(render_table(t, cs) for t, cs in results.items()), file=out)
        if len(results) > 1:
            print(f"\n{len(results)} tokens: {'FAIL' if failed else 'PASS'}", file=out)
        if len(gateway.bases) > 1:
            print(f"gateways that served: {', '.join(gateway.served) or 'none'}", file=out)
    return 1 if failed else 0


def _verify_tokens(
    args: argparse.Namespace, weights: Path | Weights | FetchWeights | None, gateway: Gateway
) -> dict[int, list[Check]]:
    """Every check of ``--token``, or of every minted token with ``--all``."""
    resolved = resolve_weights(weights)
    if args.all:
        _, contract, _ = connect(args.rpc, args.contract)
        token_ids = list(range(1, contract.functions.totalSupply().call() + 1))
    else:
        token_ids = [args.token]
    models = Models()
    return {
        token_id: verify_token(
            args.rpc,
            args.contract,
            token_id,
            gateway,
            resolved,
            device=args.device,
            dtype=args.dtype,
            pixel_tolerance=args.pixel_tolerance,
            clip_tolerance=args.clip_tolerance,
            models=models,
        )
        for token_id in token_ids
    }


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = run(parser().parse_args(argv))
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # the reader went away (``mintverify ... | head``): no traceback, and no second error
        # when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
