"""The search planner: estimates a query's matches on an in-memory sample of the catalog and picks the cheaper
plan (walk the sort index, or go through the text/filter indexes). Plain data, no I/O; `repository.search` runs
the plan."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from cachetools import LRUCache

from hubpulse_gateway.catalog.query import SearchQuery, has_filters

# Search plans (see repository.search): walk the sort index for at most `window` rows, or go straight to the
# text/filter indexes (window None). The window is a power of two so few distinct SQL texts get prepared.
MIN_WALK = 256
MAX_WALK = 262_144  # the first walk; a longer one only as a second try, where the index query costs more
LONGEST_WALK = 1 << 21
WALK_MARGIN = 4  # walk this many times the rows the sample expects a page to need
# Relative costs per row, in units of one walk step on a covering index; measured at 2M models
# (docs/decisions/search-and-web.md, "Planner in the gateway").
WALK_COST = 1.0
TRIGRAM_COST = 0.5
# A walk that tests tags reads each walked row's tags from the heap (not in the keyset indexes).
TAG_WALK_COST = 10.0
BTREE_BITMAP_COST = 1.2
HEAP_COST = 10.0


@dataclass(frozen=True, slots=True)
class SampleRows:
    """A uniform sample of catalog rows (the columns search filters on), for the planner in `CatalogSample`."""

    ids: list[str]
    tags: list[list[str]]
    task: list[str | None]
    library: list[str | None]
    downloads: list[int]
    likes: list[int]


# A word's candidate rows are checked one by one up to this many (its rarest trigram's rows); beyond, a scan.
_VERIFY_MAX = 4096


def _code_points(text: str) -> np.ndarray:
    points: np.ndarray = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    return points


def _trigram_codes(points: np.ndarray) -> np.ndarray:
    """One int64 per position: the code points of the three characters starting there (21 bits each)."""
    codes: np.ndarray = (points[:-2] << 42) | (points[1:-1] << 21) | points[2:]
    return codes


def _trigram_postings(text: str, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(trigram codes, rows): for each trigram of the newline-separated ids, the rows that have it, sorted
    by trigram then row, so a trigram's rows are one slice (found by binary search)."""
    if len(text) < 3:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    points = _code_points(text)
    codes = _trigram_codes(points)
    newline = points == ord("\n")
    at = np.flatnonzero(~(newline[:-2] | newline[1:-1] | newline[2:]))
    codes, rows = codes[at], np.searchsorted(starts, at, side="right") - 1
    order = np.lexsort((rows, codes))
    codes, rows = codes[order], rows[order]
    first = np.ones(len(codes), dtype=bool)
    first[1:] = (codes[1:] != codes[:-1]) | (rows[1:] != rows[:-1])
    return codes[first], rows[first].astype(np.int64)


def _codes(values: list[str | None]) -> tuple[dict[str | None, int], np.ndarray]:
    vocab: dict[str | None, int] = {}
    codes = np.array([vocab.setdefault(v, len(vocab)) for v in values], dtype=np.int32)
    return vocab, codes


class CatalogSample:
    """Estimates how many catalog rows match a search, from a sample held in memory.

    PostgreSQL cannot: it guesses `tags @> ARRAY[word]` for a word that is no tag at a fixed share of the table, so it
    walks the sort index for a rare word and reads everything. Here a word is looked up in the sampled ids
    (through their trigrams, as pg_trgm does) and tags, the filters in the sampled columns, all together (so
    correlated conditions count right). The estimate only picks the plan; both plans return exact results.
    """

    def __init__(self, rows: SampleRows, total: int) -> None:
        self.size = len(rows.ids)
        self.total = total
        self._ids = [i.lower() for i in rows.ids]
        self._text = "".join(f"{i}\n" for i in self._ids)  # a word never spans the separator
        self._starts = np.cumsum([0] + [len(i) + 1 for i in self._ids[:-1]]) if self._ids else np.zeros(0)
        self._trigrams, self._trigram_rows = _trigram_postings(self._text, self._starts)
        by_tag: dict[str, list[int]] = {}
        for row, tags in enumerate(rows.tags):
            for tag in tags:
                by_tag.setdefault(tag, []).append(row)
        self._by_tag = {tag: np.array(r, dtype=np.int64) for tag, r in by_tag.items()}
        self._task_vocab, self._task = _codes(rows.task)
        self._library_vocab, self._library = _codes(rows.library)
        self._downloads = np.array(rows.downloads, dtype=np.int64)
        self._likes = np.array(rows.likes, dtype=np.int64)
        self._terms: LRUCache[str, np.ndarray] = LRUCache(8192)

    def _term_rows(self, term: str) -> np.ndarray:
        """Sample rows whose id contains the word or whose tags hold it (as ILIKE / @> in the query)."""
        rows = self._terms.get(term)
        if rows is None:
            in_ids = self._ids_containing(term)
            rows = self._terms[term] = np.union1d(in_ids, self._by_tag.get(term, in_ids[:0]))
        return rows

    def _ids_containing(self, term: str) -> np.ndarray:
        """The rows of the word's rarest trigram, checked one by one; a scan of all the ids when the word has no
        trigram or that one is common (a scan per new word showed in the gateway's CPU profile:
        docs/decisions/search-and-web.md)."""
        if len(term) >= 3:
            codes = np.unique(_trigram_codes(_code_points(term)))
            first = np.searchsorted(self._trigrams, codes, side="left")
            counts = np.searchsorted(self._trigrams, codes, side="right") - first
            rarest = int(np.argmin(counts))
            if counts[rarest] <= _VERIFY_MAX:
                candidates = self._trigram_rows[first[rarest] : first[rarest] + counts[rarest]].tolist()
                return np.array([row for row in candidates if term in self._ids[row]], dtype=np.int64)
        found = []
        at = self._text.find(term)
        while at >= 0:
            found.append(at)
            at = self._text.find(term, at + 1)
        return np.unique(np.searchsorted(self._starts, found, side="right") - 1)

    def _estimate(self, query: SearchQuery) -> _Estimate:
        rows: np.ndarray | None = None
        text_bitmap = 0
        for term in query.terms:
            found = self._term_rows(term)
            # ILIKE '%word%' reads one posting list per trigram of the word; under 3 letters it has none
            # and the trigram index is read whole.
            text_bitmap += len(found) * (len(term) - 2) if len(term) >= 3 else 3 * self.size
            rows = found if rows is None else np.intersect1d(rows, found, assume_unique=True)
        text_rows = self.size if rows is None else len(rows)
        if rows is None:
            rows = np.arange(self.size)
        # The walk reads only the index entries of the task or of the library (per-task and per-library keyset
        # indexes), whichever has fewer rows; with neither, the whole sort index.
        scope, by_library = self.size, False
        # (bitmap entries, rows left) of each filter the index query can AND with the words' bitmap
        bitmaps: list[tuple[int, np.ndarray]] = []
        if query.task is not None:
            in_task = self._task == self._task_vocab.get(query.task, -1)
            scope = int(np.count_nonzero(in_task))
            bitmaps.append((scope, in_task))
        if query.library is not None:
            in_library = self._library == self._library_vocab.get(query.library, -1)
            library_rows = int(np.count_nonzero(in_library))
            bitmaps.append((library_rows, in_library))
            if library_rows < scope:
                scope, by_library = library_rows, True
        # PostgreSQL ANDs the bitmaps worth it: the cheapest non-empty choice of them
        filtered: list[tuple[int, int]] = []
        for choice in range(1, 1 << len(bitmaps)):
            picked = [bitmaps[i] for i in range(len(bitmaps)) if choice >> i & 1]
            left = rows
            for _, mask in picked:
                left = left[mask[left]]
            filtered.append((sum(entries for entries, _ in picked), len(left)))
        for _, mask in bitmaps:
            rows = rows[mask[rows]]
        ranges = self._ranges(query)
        for values, low, high in ranges:
            at = values[rows]
            rows = rows[(at >= low) & (at <= high)]
        k = self.total / self.size
        matches = len(rows) * k
        if not len(rows):
            # No sampled row meets every condition, though each alone may be common: none in 20k sampled
            # rows still leaves ~50 matches per 2M to expect (half a sampled row). Each condition's own share
            # multiplied (independence), at most that. A zero here sent "common word + narrow task + library"
            # to the index query where a walk finds the page many times sooner; a combination with no
            # rows at all costs a walk no dearer than the index query that then answers.
            shares = [entries / self.size for entries, _ in bitmaps]
            shares += [np.count_nonzero((values >= low) & (values <= high)) / self.size for values, low, high in ranges]
            matches = min(self.total * text_rows / self.size * math.prod(shares), k / 2)
        return _Estimate(
            matches,
            scope * k,
            text_bitmap * k,
            text_rows * k,
            [(entries * k, left * k) for entries, left in filtered],
            by_library,
        )

    def _ranges(self, query: SearchQuery) -> list[tuple[np.ndarray, float, float]]:
        """(sampled values, low, high) of each downloads/likes bound of the query."""
        ranges = []
        if query.min_downloads is not None or query.max_downloads is not None:
            low, high = query.min_downloads, query.max_downloads
            ranges.append((self._downloads, -math.inf if low is None else low, math.inf if high is None else high))
        if query.min_likes is not None:
            ranges.append((self._likes, query.min_likes, math.inf))
        return ranges

    def plan(self, query: SearchQuery) -> SearchPlan:
        """The cheapest plan by the sample's counts and the relative costs above.

        Walk: the rows a page needs at the sampled density (times a margin). Index, text only: the words'
        trigram postings and the heap rows they match. Index with the filters: also the task and/or library
        bitmaps, fewer heap rows. Matches are assumed spread evenly over the sort order; where they are not,
        the walk comes back short and the index query finishes it.
        """
        if self.size == 0:  # nothing sampled (yet)
            return SearchPlan(MIN_WALK if not (query.terms or has_filters(query)) else MAX_WALK)
        est = self._estimate(query)
        text = TRIGRAM_COST * est.text_bitmap
        text_only = text + HEAP_COST * est.text_rows if query.terms else math.inf
        with_filters = min(
            (text + BTREE_BITMAP_COST * entries + HEAP_COST * left for entries, left in est.filter_bitmaps),
            default=math.inf,
        )
        use_text_only = text_only <= with_filters
        index = min(text_only, with_filters)
        if est.matches <= 0 or est.scope <= 0:
            return SearchPlan(None, use_text_only)  # fewer than about total/size matches
        # A word that is some sampled row's tag needs the tags on the walk (heap reads); one that is a tag
        # only outside the sample makes the index-only walk come back empty, and the index query answers.
        tag_walk = any(term in self._by_tag for term in query.terms)
        step = TAG_WALK_COST if tag_walk else WALK_COST
        need = WALK_MARGIN * (query.limit + 1) * est.scope / est.matches
        if need > LONGEST_WALK or need * step > index:
            return SearchPlan(None, use_text_only)
        walk = max(MIN_WALK, 1 << math.ceil(math.log2(need)))
        # Matches can cluster away from the top of the sort (new models have few downloads): if the walk
        # comes back short, a longer one is still worth it while it costs less than the index query.
        cheaper = index / step  # inf: no index serves the query (a downloads/likes range alone)
        longer = LONGEST_WALK if cheaper >= LONGEST_WALK else 1 << int(math.log2(max(cheaper, 1)))
        return SearchPlan(walk, use_text_only, longer if longer >= 4 * walk else None, tag_walk, est.by_library)


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """`walk`: sort-index rows to walk first (None: straight to the index query); `rewalk`: a longer walk to
    try if that one comes back short. `text_only`: the index query finds the words through the trigram/tags
    indexes alone and filters those rows (the task/library bitmaps would cost more than the rows they save).
    `tag_walk`: the walk tests the words against each row's tags too (see `repository.walk_sql`).
    `by_library`: the walk reads the library's keyset index rather than the task's (fewer rows)."""

    walk: int | None
    text_only: bool = False
    rewalk: int | None = None
    tag_walk: bool = False
    by_library: bool = False


@dataclass(frozen=True, slots=True)
class _Estimate:
    """Rows in the whole catalog: matching all; in the walked index; trigram postings of the words; rows
    matching the words; per choice of task/library bitmaps, (their entries, rows matching words and them);
    whether the walked index is the library's."""

    matches: float
    scope: float
    text_bitmap: float
    text_rows: float
    filter_bitmaps: list[tuple[float, float]]
    by_library: bool
