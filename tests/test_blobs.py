from __future__ import annotations

from pathlib import Path

import pytest

from streams.blobs import BlobStore, ClaimCheck


def test_content_addressed_and_verified(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    key = store.put(b"payload")
    assert store.put(b"payload") == key and store.get(key) == b"payload"
    (tmp_path / key[:2] / key).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="corrupt"):
        store.get(key)
    with pytest.raises(KeyError):
        store.get("0" * 64)


def test_claim_check_threshold(claim: ClaimCheck) -> None:
    assert claim.put_text("short") == ("short", "")
    inline, ref = claim.put_text("x" * 2000)
    assert inline == "" and claim.get_text(inline, ref) == "x" * 2000
    ids, ref = claim.put_ids(list(range(1000)))
    assert ids == () and claim.get_ids(ids, ref) == list(range(1000))
    assert claim.put_ids([1, 2]) == ((1, 2), "")
