"""Two-phase writes of the agreement PDF: stage, promote, and what a restart makes of the
files a crash left (real files in a temporary directory)."""

from __future__ import annotations

from esign import pdfstore


def test_stage_then_promote_replaces_the_current_file(tmp_path):
    path = tmp_path / "C-1-v1.pdf"
    path.write_bytes(b"old")
    staged = pdfstore.stage(path, b"new")
    assert path.read_bytes() == b"old" and staged.read_bytes() == b"new"
    assert pdfstore.sha256(b"new") in staged.name
    pdfstore.promote(staged, path)
    assert path.read_bytes() == b"new" and not staged.exists()


def test_recover_promotes_only_the_revision_the_ledger_recorded(tmp_path):
    path = tmp_path / "C-1-v2.pdf"
    path.write_bytes(b"signed once")
    pdfstore.stage(path, b"signed twice")  # crash after the append: the ledger names it
    pdfstore.stage(path, b"never recorded")  # crash before an append
    pdfstore.stage(tmp_path / "C-1-v3.pdf", b"v3")  # a supersede that crashed before its append
    found = pdfstore.recover(tmp_path, 2, pdfstore.sha256(b"signed twice"))
    assert found == path and path.read_bytes() == b"signed twice"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C-1-v2.pdf"]


def test_recover_drops_what_the_ledger_never_recorded(tmp_path):
    path = tmp_path / "C-1-v1.pdf"
    path.write_bytes(b"certified")
    pdfstore.stage(path, b"signed")
    assert pdfstore.recover(tmp_path, 1, pdfstore.sha256(b"certified")) == path
    assert path.read_bytes() == b"certified"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C-1-v1.pdf"]


def test_a_first_version_crashed_before_its_promotion(tmp_path):
    path = tmp_path / "C-1-v1.pdf"
    pdfstore.stage(path, b"certified")
    assert pdfstore.recover(tmp_path, 1, pdfstore.sha256(b"certified")) == path
    assert path.read_bytes() == b"certified"


def test_a_damaged_staged_file_is_not_promoted(tmp_path):
    path = tmp_path / "C-1-v1.pdf"
    path.write_bytes(b"certified")
    staged = pdfstore.stage(path, b"signed")
    staged.write_bytes(b"signed, then damaged")
    assert pdfstore.recover(tmp_path, 1, pdfstore.sha256(b"signed")) == path
    assert path.read_bytes() == b"certified"  # the caller's hash check says document_modified
    assert pdfstore.recover(tmp_path, 3, "00" * 32) is None


def test_nothing_recorded_yet_drops_a_staged_first_version(tmp_path):
    pdfstore.stage(tmp_path / "C-1-v1.pdf", b"certified")  # the first freeze, never recorded
    assert pdfstore.recover(tmp_path, 1, "") is None
    assert list(tmp_path.iterdir()) == []
