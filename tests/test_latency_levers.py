"""The latency levers (generation/render_levers.py) on the real pipeline: a distilled student,
int8 weights, LoRA adapters and ONNX Runtime, each a collection setting that is validated,
frozen with the config, recorded in the provenance and re-applied by ``mintverify``.

Every collection here is the reference world's (its trained models, rarity table and gate) with
one lever pulled, deployed on a real anvil; its token goes through the stages as in production
(listener, seed commit, render and gate, pin, publish), and the verifier re-renders it from a
weights folder: it passes with the lever's own files and fails, on the fingerprint check, when
a file was swapped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from web3 import Web3

import verifier
from chain.anvil import ANVIL_ACCOUNTS, start_anvil
from chain.deployment import deploy_collection, reference_world_spec
from generation.collection_config import generation_config
from generation.models import Collection, Token
from generation.render_levers import INT8_SCHEME
from tests.test_listener import mine, mint
from tests.test_verify import listen, through_pipeline

pytestmark = pytest.mark.django_db(transaction=True)
DEPLOYER = ANVIL_ACCOUNTS[0]
WORLD = Path(settings.REFERENCE_WORLD_DIR)
STUDENT = WORLD / "student"
ADAPTER = WORLD / "lora" / "top-left" / "pytorch_lora_weights.safetensors"
STYLE_CLIP = WORLD / "lora" / "top-left" / "clip"


GENESIS_TIME = 1_767_225_600  # 2026-01-01, as tests/test_reference_world_gate.py


@dataclass
class Published:
    rpc_url: str
    gateway: str
    contracts: dict[str, str]  # lever → contract address, token 1 published
    records: dict[str, dict]  # lever → token 1's render record
    images: dict[str, str]  # lever → token 1's image CID (the database is flushed per test)


def publish_one(w3: Web3, slug: str, **fields: object) -> tuple[Collection, Token]:
    collection = deploy_collection(
        w3, DEPLOYER.private_key, reference_world_spec(slug=slug, **fields)
    )
    mint(w3, collection, 1)
    mine(w3, 2)
    through_pipeline(w3, collection, listen(w3, collection), lambda token: None)
    return collection, Token.objects.get(collection=collection, token_id=1)


@pytest.fixture(scope="module")
def published(django_db_setup, django_db_blocker, live_server) -> Iterator[Published]:  # type: ignore[no-untyped-def]
    levers = {
        "student": {"model_dir": str(STUDENT), "steps": 4, "guidance": 1.0},
        "int8": {"quantization": "int8"},
        # the world with the adapter and its style's gate (CLIP, prompt, reference images)
        "lora": {"style": "top-left"},
        "onnx": {"onnx_dir": str(WORLD / "diffusion-onnx")},
        "onnx-student": {
            "model_dir": str(STUDENT),
            "onnx_dir": str(WORLD / "student-onnx"),
            "steps": 4,
            "guidance": 1.0,
        },
    }
    # A fixed genesis time and one second per block: every block hash, so every seed, is the
    # same from run to run. With the wall clock the seeds change each run, and a student render
    # the teacher-calibrated gate refuses three times (rare, but seen in CI) failed the fixture.
    with start_anvil(timestamp=GENESIS_TIME) as node, django_db_blocker.unblock():
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        w3.provider.make_request("anvil_setBlockTimestampInterval", [1])
        contracts, records, images = {}, {}, {}
        for name, fields in levers.items():
            collection, token = publish_one(w3, f"lever-{name}", **fields)
            assert token.status == Token.Status.PUBLISHED, (name, token.failure_reason)
            contracts[name] = collection.contract_address
            records[name] = token.render_record
            images[name] = token.image_cid
        yield Published(node.rpc_url, f"{live_server.url}/ipfs", contracts, records, images)


def weights_folder(root: Path, diffusion: Path, **levers: Path) -> Path:
    """A verifier's --weights folder: diffusion/, clip/ (the world's, or ``clip``) and the
    levers' adapters/ or onnx/."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "diffusion").symlink_to(diffusion)
    (root / "clip").symlink_to(levers.pop("clip", WORLD / "clip"))
    for name, path in levers.items():
        (root / name).symlink_to(path)
    return root


def verify(published: Published, lever: str, weights: Path) -> dict[str, verifier.Check]:
    checks = verifier.verify_token(
        published.rpc_url, published.contracts[lever], 1, published.gateway, weights
    )
    return {c.name: c for c in checks}


def test_a_student_token_names_its_teacher_and_verifies_bit_exact(
    published: Published, tmp_path: Path
) -> None:
    model = published.records["student"]["model"]
    teacher = json.loads((STUDENT / "distillation.json").read_text())["teacher_fingerprint"]
    assert model["scheduler"] == "LCMScheduler"
    assert model["distilled_from"]["fingerprint"] == teacher
    assert model["fingerprint"] != teacher  # a model of its own
    assert published.records["student"]["render"]["steps"] == 4
    checks = verify(published, "student", weights_folder(tmp_path / "w", STUDENT))
    assert [n for n, c in checks.items() if c.status != verifier.PASS] == []
    assert checks["rerender"].detail.startswith("bit-exact")
    # the teacher's files in the student's place: the fingerprint check fails, no re-render
    swapped = verify(published, "student", weights_folder(tmp_path / "t", WORLD / "diffusion"))
    assert swapped["model_fingerprint"].status == verifier.FAIL
    assert swapped["rerender"].status == verifier.SKIPPED


def test_an_int8_token_records_the_scheme_and_the_verifier_re_quantizes(
    published: Published, tmp_path: Path
) -> None:
    model = published.records["int8"]["model"]
    assert model["quantization"] == {"name": "int8", "scheme": INT8_SCHEME}
    checks = verify(published, "int8", weights_folder(tmp_path / "w", WORLD / "diffusion"))
    assert [n for n, c in checks.items() if c.status != verifier.PASS] == []
    assert checks["rerender"].detail.startswith("bit-exact")
    assert "levers: int8" in checks["rerender"].detail


def rewritten_adapter(dest: Path, *, base: str | None = None, nudge: float = 0.0) -> Path:
    """A copy of the committed adapter, its header's base model or one weight changed."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from generation.lora import BASE_FINGERPRINT_KEY

    with safe_open(ADAPTER, "pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + nudge
    if base is not None:
        metadata[BASE_FINGERPRINT_KEY] = base
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest), metadata=metadata)
    return dest


def test_a_lora_token_records_its_adapter_and_fails_with_another_file(
    published: Published, tmp_path: Path
) -> None:
    from generation.lora import adapter_fingerprint
    from generation.reference_models import model_fingerprint
    from generation.reference_world.oracle import placed

    model = published.records["lora"]["model"]
    # The gate that passed it is the style's: its CLIP, and the style checks it scored
    clip = published.records["lora"]["clip"]
    assert clip["model_fingerprint"] == model_fingerprint(STYLE_CLIP)
    assert clip["scores"]["style"] >= clip["thresholds"]["style"] > 0
    assert clip["scores"]["style_images"] >= clip["thresholds"]["style_images"] > 0
    assert model["adapters"] == [{"fingerprint": adapter_fingerprint(ADAPTER), "scale": 1.0}]
    assert (
        model["fingerprint"]
        == json.loads((WORLD / "diffusion" / "world_training.json").read_text())["fingerprint"]
    )  # the base model's, beside the adapter's
    given = tmp_path / "adapters"
    given.mkdir()
    (given / "renamed.safetensors").symlink_to(ADAPTER)  # found by sha256, not by name
    checks = verify(published, "lora", weights_folder(tmp_path / "w", WORLD / "diffusion",
                                                      adapters=given, clip=STYLE_CLIP))  # fmt: skip
    assert [n for n, c in checks.items() if c.status != verifier.PASS] == []
    assert checks["rerender"].detail.startswith("bit-exact")
    assert "levers: LoRA renamed.safetensors×1" in checks["rerender"].detail
    # the image the adapter drew is in its style (the shape moved up and left)
    from io import BytesIO

    import httpx
    from PIL import Image

    served = httpx.get(f"{published.gateway}/{published.images['lora']}").content
    image = Image.open(BytesIO(served))
    assert placed(image.convert("RGB"), "top-left")
    # one weight nudged: another file, refused before any re-render
    other = rewritten_adapter(tmp_path / "other" / "adapter.safetensors", nudge=1e-3)
    swapped = verify(published, "lora", weights_folder(tmp_path / "s", WORLD / "diffusion",
                                                       adapters=other.parent, clip=STYLE_CLIP))  # fmt: skip
    assert swapped["model_fingerprint"].status == verifier.FAIL
    assert "not among the adapters given" in swapped["model_fingerprint"].detail
    assert swapped["rerender"].status == verifier.SKIPPED


def test_an_adapter_for_another_base_model_is_refused_naming_lora_adapters(
    tmp_path: Path,
) -> None:
    from django.test import override_settings

    foreign = rewritten_adapter(tmp_path / "foreign.safetensors", base="sha256:" + "0" * 64)
    with override_settings(MODEL_ROOTS=[str(WORLD), str(tmp_path)]):
        collection = Collection(
            **_world_fields("foreign", lora_adapters=[{"path": str(foreign), "scale": 1.0}])
        )
        with pytest.raises(ValidationError) as refused:
            collection.full_clean(validate_unique=False, validate_constraints=False)
    assert list(refused.value.message_dict) == ["lora_adapters"]
    assert "sha256:" + "0" * 64 in refused.value.message_dict["lora_adapters"][0]


@pytest.mark.parametrize(
    ("lever", "model", "export"),
    [("onnx", "diffusion", "diffusion-onnx"), ("onnx-student", "student", "student-onnx")],
)
def test_an_onnx_token_verifies_within_tolerance_and_fails_with_another_export(
    published: Published, tmp_path: Path, lever: str, model: str, export: str
) -> None:
    runtime = published.records[lever]["model"]["runtime"]
    manifest = json.loads((WORLD / export / "onnx.json").read_text())
    assert runtime == {"name": "onnxruntime", "fingerprint": manifest["fingerprint"]}
    assert published.records[lever]["model"]["dtype"] == "float32"
    weights = weights_folder(tmp_path / "w", WORLD / model, onnx=WORLD / export)
    checks = verify(published, lever, weights)
    assert [n for n, c in checks.items() if c.status != verifier.PASS] == []
    # the same runtime on the same machine replays the bytes; elsewhere the tolerance holds
    assert checks["rerender"].detail.startswith("bit-exact"), checks["rerender"].detail
    assert "levers: onnxruntime" in checks["rerender"].detail
    other = "student-onnx" if export == "diffusion-onnx" else "diffusion-onnx"
    swapped = weights_folder(tmp_path / "s", WORLD / model, onnx=WORLD / other)
    checks = verify(published, lever, swapped)
    assert checks["model_fingerprint"].status == verifier.FAIL
    assert "ONNX files: given " in checks["model_fingerprint"].detail
    # without the export the verifier says what is missing instead of rendering with torch
    bare = verify(published, lever, weights_folder(tmp_path / "b", WORLD / model))
    assert "none given (--weights DIR/onnx)" in bare["model_fingerprint"].detail


def test_an_export_missing_a_file_is_refused_naming_onnx_dir(tmp_path: Path) -> None:
    from django.test import override_settings

    broken = tmp_path / "export"
    shutil.copytree(WORLD / "diffusion-onnx", broken)
    (broken / "unet" / "model.onnx").unlink()
    with override_settings(MODEL_ROOTS=[str(WORLD), str(tmp_path)]):
        collection = Collection(**_world_fields("broken-onnx", onnx_dir=str(broken)))
        with pytest.raises(ValidationError) as refused:
            collection.full_clean(validate_unique=False, validate_constraints=False)
    assert list(refused.value.message_dict) == ["onnx_dir"]
    assert "unet/model.onnx" in refused.value.message_dict["onnx_dir"][0]


def test_a_collection_without_levers_keeps_the_config_it_had() -> None:
    plain = Collection(**_world_fields("plain"))
    config = generation_config(plain)
    assert set(config["model"]) == {"fingerprint", "format", "scheduler"}
    int8 = Collection(**_world_fields("int8", quantization="int8"))
    assert generation_config(int8)["model"]["quantization"]["name"] == "int8"


def _world_fields(slug: str, **overrides: object) -> dict[str, object]:
    from dataclasses import asdict

    names = {f.name for f in Collection._meta.concrete_fields}
    spec = asdict(reference_world_spec(slug=slug, **overrides))
    fields = {k: v for k, v in spec.items() if k in names}
    return {**fields, "chain_id": 31337, "contract_address": "0x" + "ab" * 20}


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"quantization": "int4"}, "quantization", "not a valid choice"),
        ({"lora_adapters": {"path": "a.safetensors"}}, "lora_adapters", "must be a list"),
        ({"lora_adapters": [{"path": "/etc/passwd", "scale": 1}]}, "lora_adapters", "outside"),
        ({"lora_adapters": [{"path": "x.safetensors", "scale": "big"}]}, "lora_adapters", "list"),
        ({"onnx_dir": "no-such-export"}, "onnx_dir", "no-such-export"),
        ({"onnx_dir": "../../etc"}, "onnx_dir", "outside"),
    ],
)
def test_invalid_lever_settings_are_refused_naming_the_field(
    overrides: dict[str, object], field: str, words: str
) -> None:
    collection = Collection(**_world_fields("bad", **overrides))
    with pytest.raises(ValidationError) as refused:
        collection.full_clean(validate_unique=False, validate_constraints=False)
    assert field in refused.value.message_dict, refused.value.message_dict
    assert words in " ".join(refused.value.message_dict[field])


def test_int8_on_a_gpu_worker_is_refused_naming_quantization() -> None:
    from generation.errors import RenderFailed
    from generation.pipeline import load_models

    collection = Collection.objects.create(**_world_fields("int8-gpu", quantization="int8"))
    # refused before any weight is loaded, so this runs on a machine without CUDA too
    with pytest.raises(RenderFailed) as refused:
        load_models(collection, "cuda")
    assert str(refused.value).startswith("quantization: int8 weights run on the CPU only")
    assert refused.value.public.startswith("quantization:")
