"""Every member of evidence.zip is bound to the organisation's seal.

The attacker recomputes every digest they can (there is no unsigned manifest to fix up any
more; the digests live in the sealed head) and swaps, edits or removes one member."""

import asyncio
import hashlib

import msgspec
import pytest

from esign.pki import LocalPki
from tests.integration.esign.sealed_case import rezip, run_verify, seal_case, unzip


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    base = tmp_path_factory.mktemp("binding")
    pki = LocalPki.open(base, b"binding test passphrase", "Binding Org")

    async def run():
        mine = await seal_case(pki, base / "x", case_no="MED-2026-000011")
        other = await seal_case(pki, base / "y", case_no="MED-2026-000012")
        return mine, other

    return asyncio.run(run())


def _other_case_completion(files, other):
    files["certificate-of-completion.pdf"] = unzip(other.bundle)["certificate-of-completion.pdf"]


def _renamed_signer(files, other):
    files["signatures.json"] = files["signatures.json"].replace("李四".encode(), "赵六".encode())


def _changed_root_in_readme(files, other):
    files["README-verify.txt"] = files["README-verify.txt"].replace(
        b"--root ", b"--root " + b"0" * 64 + b" #"
    )


def _removed_certificates(files, other):
    for name in [n for n in files if n.startswith("certs/")]:
        del files[name]


def _fake_recordings(files, other):
    files["recordings.json"] = b'[{"file":"seg-0001.webm","sha256":"' + b"00" * 32 + b'"}]'


ATTACKS = [
    _other_case_completion,
    _renamed_signer,
    _changed_root_in_readme,
    _removed_certificates,
    _fake_recordings,
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__.strip("_"))
def test_each_member_swap_or_edit_fails(cases, capsys, tmp_path, attack):
    mine, other = cases
    files = unzip(mine.bundle)
    attack(files, other)
    if "manifest.json" in files:  # the old, unsigned manifest: the attacker recomputes it
        listed = msgspec.json.decode(files["manifest.json"])
        files["manifest.json"] = msgspec.json.encode(
            {n: hashlib.sha256(files[n]).hexdigest() for n in files if n != "manifest.json"}
            if listed
            else {},
            order="sorted",
        )
    code, out = run_verify(capsys, tmp_path, rezip(files), mine.root)
    assert code == 1, out
    assert "[FAIL] every bundle file is listed in the sealed head" in out


def test_completion_page_is_derived_from_signed_data(cases, capsys, tmp_path):
    """The other case's page fails on its content too, not only on its digest."""
    mine, other = cases
    files = unzip(mine.bundle)
    _other_case_completion(files, other)
    code, out = run_verify(capsys, tmp_path, rezip(files), mine.root)
    assert "[FAIL] certificate of completion matches the signed data" in out
    code, out = run_verify(capsys, tmp_path, mine.bundle, mine.root)
    assert code == 0, out
    assert "[OK  ] certificate of completion matches the signed data" in out
