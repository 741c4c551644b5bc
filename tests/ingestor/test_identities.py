"""KnownIdentities: which of a batch's (Hub `_id`, name) pairs the identity statement is still asked about."""

from __future__ import annotations

from hubpulse_ingestor.identities import KnownIdentities
from hubpulse_ingestor.snapshots import EncodedSnapshots


def _batch(*pairs: tuple[str, str]) -> EncodedSnapshots:
    return EncodedSnapshots(keys=[name.encode() for _, name in pairs], hub_ids=[hub_id for hub_id, _ in pairs])


def test_a_pair_is_asked_about_until_its_batch_is_remembered() -> None:
    known = KnownIdentities()
    batch = _batch(("h1", "org/a"), ("h2", "org/b"), ("", "file/row"))
    # a file's rows carry no `_id`: never asked about
    asked = known.unknown(batch)
    assert asked == [("h1", b"org/a"), ("h2", b"org/b")]
    assert known.unknown(batch) == asked  # not durable yet: asked again
    known.remember(asked)
    assert known.unknown(batch) == []
    assert len(known) == 2


def test_a_rename_is_asked_about_and_so_is_a_rename_back() -> None:
    known = KnownIdentities()
    known.remember(known.unknown(_batch(("h1", "org/a"), ("h2", "org/b"))))
    renamed = _batch(("h1", "new/a"), ("h2", "org/b"))
    asked = known.unknown(renamed)
    assert asked == [("h1", b"new/a")]
    known.remember(asked, renamed=[("h1", "org/a")])
    assert known.unknown(_batch(("h1", "org/a"))) == [("h1", b"org/a")]
    assert len(known) == 2
