"""The identities this ingestor has stored: a day's walk asks PostgreSQL about new and renamed models only."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from hubpulse_ingestor.snapshots import EncodedSnapshots


class KnownIdentities:
    """(Hub `_id`, name) pairs known to be stored in `hub_models` as they are now.

    Every day's walk lists every model again, and the identity statement read each one (a JSON parse, a sort and
    an index probe per model: most of its CPU on a day after the first). A pair is new only for a new model or a
    renamed one (the same `_id` under another name), and those are the pairs a batch still sends. A batch's pairs
    are remembered once it is durable (stored, its renames recorded), so a batch that failed asks again; a renamed
    model's old pair is forgotten, so a rename back is asked about too. In memory only: a restarted ingestor asks
    about each pair once more. The ingestor is the only writer of identities, so what it stored stays true.

    Each pair is kept as its 64-bit hash (a set of ints: ~65 bytes a model, ~130 MB at 2M models); two pairs
    sharing one would hide one rename, at odds of about one in 10^13 a model."""

    def __init__(self) -> None:
        self._pairs: set[int] = set()

    def __len__(self) -> int:
        return len(self._pairs)

    def unknown(self, batch: EncodedSnapshots) -> list[tuple[str, bytes]]:
        """The batch's pairs not known stored (rows from the Hub only: a file's rows carry no `_id`)."""
        return [pair for pair in _pairs(batch) if hash(pair) not in self._pairs]

    def remember(self, pairs: Iterable[tuple[str, bytes]], renamed: Iterable[tuple[str, str]] = ()) -> None:
        """Pairs a durable batch asked about (`unknown`: the others are held already); `renamed`: its (Hub `_id`,
        old name) pairs, which no longer hold."""
        self._pairs.difference_update(hash((hub_id, old.encode())) for hub_id, old in renamed)
        self._pairs.update(hash(pair) for pair in pairs)


def _pairs(batch: EncodedSnapshots) -> Iterator[tuple[str, bytes]]:
    return ((hub_id, key) for hub_id, key in zip(batch.hub_ids, batch.keys, strict=True) if hub_id)
