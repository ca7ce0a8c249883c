"""Allowlists (issue 19): the Merkle tree against OpenZeppelin's own library, the CSV a manager
uploads, the proofs the API serves, and the upload in the admin.

Personas: Ada manages the Aurora collection, Bob manages Borealis, Root is the superuser; Carol,
Dave and Erin are collectors on Aurora's presale list. The tree is checked against
``@openzeppelin/merkle-tree`` run by node (tests/oz_merkle_tree.js); pins go to a real local
IPFS store (the ``store`` fixture), read back by CID.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from eth_utils import to_checksum_address

from generation.models import Collection
from ipfs.cid import compute_cid
from ipfs.store import LocalStore
from sales import allowlist as csv_rules
from sales.allowlist import MAX_ENTRIES, Entry, parse_allowlist
from sales.building import create_allowlist, create_allowlist_from_csv
from sales.errors import InvalidAllowlist
from sales.merkle import AllowlistTree, leaf_hash, verify
from sales.models import Allowlist, AllowlistEntry
from tests.ipfs_servers import KuboRpcServer
from tests.people import staff
from tests.test_admin import as_user, notes
from tests.test_api import error_of, fresh_throttle, make_collection

__all__ = ["fresh_throttle"]  # the API tests' fixture: each test starts with no throttle counts

REPO_ROOT = Path(__file__).resolve().parent.parent
CAROL = to_checksum_address("0x" + "ca" * 20)
DAVE = to_checksum_address("0x" + "d0" * 20)
ERIN = to_checksum_address("0x" + "e1" * 20)
# Carol's address with one letter's case flipped: the kind of typo EIP-55 catches
TYPO = CAROL[:2] + CAROL[2].swapcase() + CAROL[3:]
PRESALE_CSV = f"address,allowance\n{CAROL.lower()},2\n\n{DAVE},1\n{ERIN.lower()},5\n".encode()


def collector(n: int) -> str:
    return to_checksum_address("0x" + hashlib.sha256(f"collector {n}".encode()).hexdigest()[:40])


def collectors(count: int) -> list[tuple[str, int]]:
    return [(collector(n), 1 + n % 7) for n in range(count)]


# --- the tree, against @openzeppelin/merkle-tree ----------------------------------------------


def openzeppelin(tree: AllowlistTree) -> dict[str, Any]:
    """What OpenZeppelin's StandardMerkleTree makes of the same values, and of our dump and
    proofs (tests/oz_merkle_tree.js)."""
    node = shutil.which("node")
    assert node, "node is needed to run @openzeppelin/merkle-tree"
    assert (REPO_ROOT / "node_modules/@openzeppelin/merkle-tree").is_dir(), "run `npm ci`"
    request = {
        "values": [[v.address, str(v.allowance)] for v in tree.values],
        "dump": tree.dump(),
        "proofs": tree.proofs(),
    }
    done = subprocess.run(
        [node, str(REPO_ROOT / "tests" / "oz_merkle_tree.js")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_it_builds_the_tree_openzeppelins_library_builds(size: int) -> None:
    tree = AllowlistTree.of(collectors(size))
    theirs = openzeppelin(tree)

    assert tree.root == theirs["root"]
    assert tree.proofs() == theirs["proofs"]
    assert tree.dump_json().decode() == theirs["dump"]  # JSON.stringify(tree.dump()), exactly
    # StandardMerkleTree.load reads our dump, and finds the same root and proofs in it
    assert theirs["loadedRoot"] == tree.root
    assert theirs["loadedProofs"] == tree.proofs()
    # StandardMerkleTree.verify takes every proof of ours, and none for a larger allowance
    assert theirs["verified"] == [True] * size
    assert theirs["forged"] == [False] * size


def test_it_loads_a_dump_and_proves_every_entry() -> None:
    tree = AllowlistTree.of(collectors(7))
    loaded = AllowlistTree.load(json.loads(tree.dump_json()))
    assert loaded == tree
    for address, allowance in collectors(7):
        proof = loaded.get_proof(address.lower())  # any case
        assert verify(tree.root, address, allowance, proof)
        assert not verify(tree.root, address, allowance + 1, proof)


def test_a_single_entry_is_its_own_root_with_an_empty_proof() -> None:
    tree = AllowlistTree.of([(CAROL, 2)])
    assert tree.root == "0x" + leaf_hash(CAROL, 2).hex()
    assert tree.get_proof(CAROL) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="simple-v1"), "unknown format"),
        (lambda d: d.update(leafEncoding=["address", "uint8"]), "leaf encoding"),
        (lambda d: d["values"][0]["value"].__setitem__(1, "999"), "does not hold"),
        (lambda d: d["tree"].__setitem__(0, "0x" + "00" * 32), "node 0"),
    ],
)
def test_it_refuses_a_dump_that_does_not_hold_together(change: Any, message: str) -> None:
    dump = AllowlistTree.of(collectors(3)).dump()
    change(dump)
    with pytest.raises(ValueError, match=message):
        AllowlistTree.load(dump)


def test_it_refuses_an_address_twice_or_no_entries() -> None:
    with pytest.raises(ValueError, match="more than once"):
        AllowlistTree.of([(CAROL, 1), (CAROL.lower(), 2)])
    with pytest.raises(ValueError, match="at least one entry"):
        AllowlistTree.of([])


# --- the CSV ----------------------------------------------------------------------------------


def problems(data: bytes) -> list[str]:
    with pytest.raises(InvalidAllowlist) as caught:
        parse_allowlist(data)
    return [str(p) for p in caught.value.problems]


def test_it_reads_a_csv_with_a_header_blank_lines_and_quotes() -> None:
    data = (
        b"\xef\xbb\xbfAddress,Allowance\r\n"  # a spreadsheet's BOM, header and line ends
        + f'"{CAROL.lower()}", 2,,\r\n\r\n   \r\n{DAVE.upper().replace("0X", "0x")},1\r\n'.encode()
    )
    assert parse_allowlist(data) == [
        Entry(CAROL, 2, 2),
        Entry(DAVE, 1, 5),
    ]
    assert parse_allowlist(f"{ERIN},3".encode()) == [Entry(ERIN, 3, 1)]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            f"{CAROL[:-1]},1",
            f"line 2: '{CAROL[:-1]}' is not an address: expected 0x and 40 hex digits",
        ),
        ("carol.eth,1", "line 2: 'carol.eth' is not an address"),
        (
            f"{TYPO},1",
            f"line 2: {TYPO} fails its EIP-55 checksum (mixed case must be the "
            "checksummed form): is there a typo?",
        ),
        ("0x" + "00" * 20 + ",1", "line 2: the zero address cannot mint"),
        (f"{CAROL},", f"line 2: no allowance for {CAROL}"),
        (f"{CAROL},two", "line 2: allowance 'two' is not a whole number"),
        (f"{CAROL},1.5", "line 2: allowance '1.5' is not a whole number"),
        (f"{CAROL},0", "line 2: allowance 0 must be at least 1"),
        (f"{CAROL},-3", "line 2: allowance -3 must be at least 1"),
        (f"{CAROL},4294967296", "line 2: allowance 4294967296 is more than 4,294,967,295"),
        (f"{CAROL}", f"line 2: expected 2 values, address,allowance; found 1: '{CAROL}'"),
        (f"{CAROL},1,vip", "line 2: expected 2 values, address,allowance; found 3"),
    ],
)
def test_it_names_the_line_and_what_is_wrong(line: str, problem: str) -> None:
    (found,) = problems(f"{DAVE},1\n{line}\n".encode())
    assert found.startswith(problem), found


def test_it_names_both_lines_of_an_address_listed_twice() -> None:
    data = (
        f"address,allowance\n{CAROL.lower()},1\n{DAVE},1\n\n{CAROL.upper().replace('0X', '0x')},3\n"
    )
    assert problems(data.encode()) == [f"line 5: {CAROL} is listed twice, on line 2 and on line 5"]


def test_it_reports_every_problem_at_once_up_to_a_limit() -> None:
    data = "\n".join(f"{collector(n)},0" for n in range(30)).encode()
    found = problems(data)
    assert found[:2] == [
        "line 1: allowance 0 must be at least 1",
        "line 2: allowance 0 must be at least 1",
    ]
    assert len(found) == csv_rules.MAX_PROBLEMS + 1
    assert found[-1] == f"stopped after {csv_rules.MAX_PROBLEMS} problems"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "the file has no entries: expected lines of address,allowance"),
        (b"address,allowance\n\n", "the file has no entries: expected lines of address,allowance"),
        (b"wallet,amount\n", "line 1: the header must be 'address,allowance', not 'wallet,amount'"),
        (b"\xff\xfe0\x00x\x00", "the file is not UTF-8 text (byte 0 is not): save it as CSV"),
        (
            b" " * (csv_rules.MAX_BYTES + 1),
            "the file is larger than 2,097,152 bytes: split the list",
        ),
    ],
)
def test_it_refuses_a_file_that_is_no_allowlist(data: bytes, problem: str) -> None:
    assert problem in problems(data)


def test_it_refuses_more_entries_than_the_cap() -> None:
    lines = [f"{address},{allowance}" for address, allowance in collectors(MAX_ENTRIES + 1)]
    found = problems(("address,allowance\n" + "\n".join(lines)).encode())
    assert found == [
        f"line {MAX_ENTRIES + 2}: more than 20,000 entries: one allowlist holds at most 20,000; "
        "split the list"
    ]


# --- building and pinning ---------------------------------------------------------------------


@pytest.fixture
def aurora(db: None) -> Collection:
    return make_collection("aurora", 1)


@pytest.fixture
def borealis(db: None) -> Collection:
    return make_collection("borealis", 2)


@pytest.fixture
def presale(aurora: Collection, store: LocalStore) -> Allowlist:
    return create_allowlist_from_csv(aurora, "presale", PRESALE_CSV)


def test_it_stores_every_proof_and_pins_the_tree(presale: Allowlist, store: LocalStore) -> None:
    tree = AllowlistTree.of([(CAROL, 2), (DAVE, 1), (ERIN, 5)])
    assert (presale.root, presale.entry_count) == (tree.root, 3)
    assert presale.tree_json.encode() == tree.dump_json()
    # pinned: the store holds exactly the dump, under the CID computed from its bytes
    assert presale.cid == compute_cid(tree.dump_json())
    assert store.get(presale.cid) == tree.dump_json()
    assert Allowlist.objects.get(pk=presale.pk).cid == presale.cid
    rows = AllowlistEntry.objects.filter(allowlist=presale).order_by("id")
    assert [(e.address, e.allowance, e.proof) for e in rows] == [
        (a, n, tree.get_proof(a)) for a, n in [(CAROL, 2), (DAVE, 1), (ERIN, 5)]
    ]
    assert presale.root_bytes == bytes.fromhex(tree.root[2:])


def test_it_builds_a_thousand_entries_openzeppelin_agrees_with(
    aurora: Collection, store: LocalStore
) -> None:
    entries = [Entry(a, n, i + 1) for i, (a, n) in enumerate(collectors(1000))]
    made = create_allowlist(aurora, "drop", entries)
    tree = AllowlistTree.load(json.loads(store.get(made.cid)))
    assert openzeppelin(tree)["root"] == made.root
    entry = AllowlistEntry.objects.get(allowlist=made, address=collector(500))
    assert verify(made.root, entry.address, entry.allowance, entry.proof)


# --- the API ----------------------------------------------------------------------------------


def proof_url(address: str, allowlist: str = "presale", slug: str = "aurora") -> str:
    return f"/api/collections/{slug}/allowlists/{allowlist}/proofs/{address}/"


@pytest.mark.parametrize("asked", [CAROL, CAROL.lower(), "0x" + CAROL[2:].upper()])
def test_it_serves_an_address_its_proof(client: Client, presale: Allowlist, asked: str) -> None:
    response = client.get(proof_url(asked))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "address": CAROL,
        "allowance": 2,
        "proof": AllowlistTree.load(json.loads(presale.tree_json)).get_proof(CAROL),
        "root": presale.root,
        "cid": presale.cid,
        "allowlist": "presale",
    }
    assert verify(body["root"], body["address"], body["allowance"], body["proof"])
    # the list may be named by its id too
    assert client.get(proof_url(asked, str(presale.pk))).json() == body


def test_it_answers_404_for_an_address_not_on_the_list(client: Client, presale: Allowlist) -> None:
    stranger = collector(1)
    response = client.get(proof_url(stranger.lower()))
    assert response.status_code == 404
    assert error_of(response) == {
        "code": "not_on_allowlist",
        "message": f"{stranger} is not on allowlist 'presale' of aurora",
        "status": 404,
    }


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        (
            proof_url(CAROL, "vip"),
            "allowlist_not_found",
            "collection aurora has no allowlist 'vip'",
        ),
        (
            proof_url(CAROL, "999999"),
            "allowlist_not_found",
            "collection aurora has no allowlist '999999'",
        ),
        (proof_url(CAROL, slug="nowhere"), "collection_not_found", "no collection 'nowhere'"),
    ],
)
def test_it_answers_404_for_a_list_or_collection_it_does_not_have(
    client: Client, presale: Allowlist, url: str, code: str, message: str
) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert (error_of(response)["code"], error_of(response)["message"]) == (code, message)


def test_it_does_not_serve_another_collections_list_by_id(
    client: Client, presale: Allowlist, borealis: Collection
) -> None:
    assert client.get(proof_url(CAROL, str(presale.pk), slug="borealis")).status_code == 404


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("0x1234", "'0x1234' is not an address: expected 0x and 40 hex digits"),
        ("carol.eth", "'carol.eth' is not an address"),
        (TYPO, "fails its EIP-55 checksum"),
    ],
)
def test_it_answers_400_for_a_malformed_address(
    client: Client, presale: Allowlist, address: str, message: str
) -> None:
    response = client.get(proof_url(address))
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_address" and message in error["message"]


def test_it_lists_a_collections_allowlists(  # type: ignore[no-untyped-def]
    client: Client, presale: Allowlist, borealis: Collection, settings
) -> None:  # type: ignore[no-untyped-def]
    document = {
        "id": presale.pk,
        "name": "presale",
        "collection": "aurora",
        "root": presale.root,
        "entries": 3,
        "leaf_encoding": ["address", "uint256"],
        "cid": presale.cid,
        "tree_url": f"{settings.IPFS_GATEWAY_URL}/{presale.cid}",
        "created_at": presale.created_at.isoformat().replace("+00:00", "Z"),
    }
    page = client.get("/api/collections/aurora/allowlists/").json()
    assert (page["count"], page["results"]) == (1, [document])
    assert client.get("/api/collections/aurora/allowlists/presale/").json() == document
    assert client.get("/api/collections/borealis/allowlists/").json()["count"] == 0


def test_proofs_are_throttled_like_every_public_read(
    client: Client, presale: Allowlist, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.API_ANON_RATE = "2/min"
    assert client.get(proof_url(CAROL)).status_code == 200
    assert client.get(proof_url(DAVE)).status_code == 200
    assert error_of(client.get(proof_url(ERIN)))["code"] == "throttled"


def test_the_schema_documents_the_proof_endpoint(client: Client, db: None) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/collections/{slug}/allowlists/{allowlist}/proofs/{address}/"]
    assert set(operation["get"]["responses"]) >= {"200", "400", "404", "429"}
    assert {} in operation["get"]["security"]  # public: a key is optional


# --- the admin --------------------------------------------------------------------------------

ADD = "/admin/sales/allowlist/add/"


@pytest.fixture
def ada(aurora: Collection) -> User:
    user = staff("ada")
    aurora.managers.set([user])
    return user


@pytest.fixture
def bob(borealis: Collection) -> User:
    user = staff("bob")
    borealis.managers.set([user])
    return user


def upload(client: Client, collection: Collection, name: str, data: bytes) -> Any:
    return client.post(
        ADD,
        {
            "collection": collection.pk,
            "name": name,
            "csv_file": SimpleUploadedFile("list.csv", data, "text/csv"),
            "_save": "Save",
        },
        follow=True,
    )


def form_errors(response: Any) -> dict[str, list[str]]:
    return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


def test_a_manager_uploads_an_allowlist_for_her_collection(
    ada: User, aurora: Collection, store: LocalStore
) -> None:
    client = as_user(ada)
    form = client.get(ADD).content.decode()
    assert 'enctype="multipart/form-data"' in form and 'name="csv_file"' in form
    response = upload(client, aurora, "presale", PRESALE_CSV)
    assert response.status_code == 200
    made = Allowlist.objects.get(collection=aurora, name="presale")
    tree = AllowlistTree.of([(CAROL, 2), (DAVE, 1), (ERIN, 5)])
    assert (made.root, made.entry_count, made.cid) == (tree.root, 3, compute_cid(tree.dump_json()))
    assert store.get(made.cid) == tree.dump_json()
    assert AllowlistEntry.objects.filter(allowlist=made).count() == 3
    # the page she lands on, and the list's own page, show root, count and CID
    page = client.get(f"/admin/sales/allowlist/{made.pk}/change/").content.decode()
    assert tree.root in page and made.cid in page and ">3<" in page
    changelist = client.get("/admin/sales/allowlist/").content.decode()
    assert "presale" in changelist


def test_a_manager_cannot_upload_for_or_see_another_collection(
    ada: User, bob: User, aurora: Collection, borealis: Collection, store: LocalStore
) -> None:
    theirs = create_allowlist_from_csv(borealis, "presale", PRESALE_CSV)
    client = as_user(ada)
    response = upload(client, borealis, "sneaky", PRESALE_CSV)
    assert "collection" in form_errors(response)
    assert not Allowlist.objects.filter(name="sneaky").exists()
    # her lists only: Borealis's list is neither listed nor shown, nor its entries
    assert "borealis" not in client.get("/admin/sales/allowlist/").content.decode()
    assert client.get(f"/admin/sales/allowlist/{theirs.pk}/change/").status_code == 302
    entries = client.get("/admin/sales/allowlistentry/").content.decode()
    assert CAROL.lower() not in entries.lower()
    # Bob sees his own
    assert "presale" in as_user(bob).get("/admin/sales/allowlist/").content.decode()


def test_the_form_shows_every_bad_line_of_a_csv(
    ada: User, aurora: Collection, store: LocalStore
) -> None:
    bad = f"address,allowance\n{CAROL},1\n0x12,1\n{DAVE},0\n{CAROL.lower()},3\n".encode()
    response = upload(as_user(ada), aurora, "presale", bad)
    assert form_errors(response)["csv_file"] == [
        "line 3: '0x12' is not an address: expected 0x and 40 hex digits",
        "line 4: allowance 0 must be at least 1",
        f"line 5: {CAROL} is listed twice, on line 2 and on line 5",
    ]
    assert "line 4: allowance 0 must be at least 1" in response.content.decode()
    assert not Allowlist.objects.exists()


def test_the_form_refuses_a_name_taken_or_only_digits(
    ada: User, presale: Allowlist, aurora: Collection
) -> None:
    client = as_user(ada)
    assert "__all__" in form_errors(upload(client, aurora, "presale", PRESALE_CSV))
    assert "name" in form_errors(upload(client, aurora, "2024", PRESALE_CSV))
    assert Allowlist.objects.count() == 1


def test_a_list_ipfs_refused_is_kept_and_pinned_later(
    ada: User, aurora: Collection, settings
) -> None:  # type: ignore[no-untyped-def]
    # Given a Kubo node that does not answer its first request
    with KuboRpcServer(behaviour="times-out", hang_first=1).running() as kubo:
        settings.IPFS_BACKEND, settings.IPFS_KUBO_URL = "kubo", kubo.url
        settings.IPFS_TIMEOUT, settings.IPFS_RETRIES = 0.5, 0
        client = as_user(ada)
        # When Ada uploads a list: it is stored with its proofs, but has no CID yet, and she is told
        response = upload(client, aurora, "presale", PRESALE_CSV)
        made = Allowlist.objects.get(name="presale")
        assert made.cid == "" and made.entries.count() == 3
        assert any("not pinned to IPFS" in note for note in notes(response))
        # Then the action pins it once the node answers
        response = client.post(
            "/admin/sales/allowlist/",
            {"action": "pin", "_selected_action": [made.pk]},
            follow=True,
        )
        assert "1 allowlist(s) pinned" in notes(response)
        made.refresh_from_db()
        assert made.cid == compute_cid(made.tree_json.encode()) and made.cid in kubo.pins
