"""A deterministic synthetic Hugging Face Hub: N models over D days, vectorised and memory-lean.

Every count is a closed-form function of per-model parameters and the day, so any day can be produced
without replaying the days before it and without holding more than one day of all models at once.

Dynamics (per model, time t in days since `start_date`, model created at c):
- interest = baseline (lognormal, heavy-tailed, slowly ageing) + a launch spike that decays after c
  + at most one viral burst (rise r, decay tau_b) starting at b;
- likes follow interest at once (bursts attract far more likes per download than steady use);
  downloads follow the burst `lag` days later, so likes lead downloads. Some bursts are hype only
  (likes, no downloads) and some are silent (downloads, no likes): the trend is learnable, not trivial;
- daily noise and a weekly rhythm enter through a telescoping term eps(t) = m(t) * E(t), so cumulative
  counts stay monotone and the 30-day rolling `downloads` equals all_time(t) - all_time(t - 30) exactly;
- trendingScore = likes over the last 7 days + likes over the last 2 days (recent likes weigh double);
  trending_rank ranks the top `trending_size` models by it.

`extend(days)` continues the Hub past its history (the demo clock): every model keeps its dynamics, and each new
day brings a cohort of new models drawn from that day's own seed, a share of them going viral at launch. A day's
numbers do not depend on how far the Hub has been extended.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

MAX_MODELS = 5_000_000
ROLLING_DAYS = 30  # the Hub's `downloads` field counts the last 30 days
_NOISE_LIKES, _NOISE_DOWNLOADS = 1, 2  # independent random streams per day
_DAY_OFFSET = 100_000  # keeps per-day seeds non-negative for days before start_date
_COHORT = 3  # the random stream of the models created on a day past the history
NEW_PER_DAY = 0.002  # new models a day, as a share of the Hub's models at its start

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Obj = npt.NDArray[np.object_]

PIPELINE_TAGS: tuple[tuple[str | None, float], ...] = (
    ("text-generation", 0.24),
    (None, 0.16),
    ("text-classification", 0.08),
    ("automatic-speech-recognition", 0.05),
    ("text-to-image", 0.06),
    ("feature-extraction", 0.05),
    ("sentence-similarity", 0.04),
    ("image-classification", 0.05),
    ("token-classification", 0.04),
    ("image-text-to-text", 0.04),
    ("translation", 0.03),
    ("reinforcement-learning", 0.04),
    ("summarization", 0.02),
    ("text-to-speech", 0.02),
    ("object-detection", 0.02),
    ("question-answering", 0.02),
    ("fill-mask", 0.02),
    ("text-ranking", 0.01),
    ("image-to-image", 0.01),
)
LIBRARIES: tuple[tuple[str | None, float], ...] = (
    ("transformers", 0.42),
    (None, 0.14),
    ("peft", 0.08),
    ("gguf", 0.07),
    ("diffusers", 0.06),
    ("sentence-transformers", 0.05),
    ("mlx", 0.03),
    ("timm", 0.03),
    ("pytorch", 0.03),
    ("onnx", 0.02),
    ("stable-baselines3", 0.03),
    ("transformers.js", 0.02),
    ("keras", 0.02),
)
LICENSES: tuple[tuple[str | None, float], ...] = (
    ("apache-2.0", 0.35),
    (None, 0.25),
    ("mit", 0.18),
    ("other", 0.08),
    ("llama3.1", 0.05),
    ("cc-by-4.0", 0.05),
    ("gemma", 0.04),
)
_AUTHOR_A = (
    "open",
    "deep",
    "tiny",
    "neural",
    "quant",
    "blue",
    "red",
    "fast",
    "bright",
    "north",
    "lambda",
    "vector",
    "sparse",
    "hyper",
    "nova",
    "meta",
    "pixel",
    "sonic",
    "kilo",
    "zen",
)
_AUTHOR_B = (
    "lab",
    "ai",
    "works",
    "research",
    "ml",
    "collective",
    "hub",
    "forge",
    "studio",
    "nlp",
    "vision",
    "systems",
    "group",
    "models",
    "mind",
    "bits",
)
_FAMILY = (
    "llama",
    "qwen",
    "mistral",
    "phi",
    "gemma",
    "bert",
    "roberta",
    "t5",
    "whisper",
    "sdxl",
    "flux",
    "vit",
    "clip",
    "gpt2",
    "deberta",
    "bge",
    "e5",
    "yolo",
    "wav2vec2",
    "falcon",
    "olmo",
    "smol",
)
_SIZE = ("tiny", "small", "base", "large", "0.5b", "1b", "3b", "7b", "8b", "14b", "32b", "70b")
_VARIANT = ("instruct", "chat", "finetuned", "gguf", "awq", "lora", "v2", "distilled", "base", "it", "sft", "dpo")


@dataclass(frozen=True)
class DayColumns:
    """One day of the Hub as columns, rows in creation order (`model_index` ascending).

    Categorical columns are codes into a vocabulary (-1 = missing) so that 2M rows stay cheap.
    Missing integers: `downloads_all_time` -1, `trending_rank` 0, `last_modified_ms` -1;
    `created_ts` (epoch seconds) is NaN when unknown.
    """

    date: dt.date
    model_index: I64
    model_id: Obj
    author_code: I32
    author_vocab: Obj
    pipeline_code: I32
    pipeline_vocab: Obj
    library_code: I32
    library_vocab: Obj
    tags_code: I32
    tags_vocab: tuple[tuple[str, ...], ...]
    downloads: I64
    downloads_all_time: I64
    likes: I64
    likes7d: I64
    trending_score: I64
    trending_rank: I64
    created_at: Obj
    created_ts: F64
    last_modified_ms: I64

    def __len__(self) -> int:
        return len(self.model_index)


def _categorical(codes: I32, vocab: Obj) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(vocab))  # type: ignore[arg-type]


def columns_to_frame(cols: DayColumns) -> pd.DataFrame:
    """The CONTRACT history format (plus trending_score, tags, author, last_modified) for one day."""
    n = len(cols)
    rank = pd.array(np.where(cols.trending_rank > 0, cols.trending_rank, 0), dtype="Int64")
    rank[cols.trending_rank <= 0] = pd.NA
    dat = pd.array(cols.downloads_all_time, dtype="Int64")
    dat[cols.downloads_all_time < 0] = pd.NA
    tags_vocab = np.array([",".join(t) for t in cols.tags_vocab], dtype=object)
    last_modified = pd.to_datetime(
        np.where(cols.last_modified_ms >= 0, cols.last_modified_ms, np.iinfo(np.int64).min).astype("datetime64[ms]"),
        utc=True,
    )
    return pd.DataFrame(
        {
            "snapshot_date": pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), pd.Index([cols.date.isoformat()])),
            "model_id": cols.model_id,
            "downloads": cols.downloads,
            "downloads_all_time": dat,
            "likes": cols.likes,
            "pipeline_tag": _categorical(cols.pipeline_code, cols.pipeline_vocab),
            "library_name": _categorical(cols.library_code, cols.library_vocab),
            "created_at": cols.created_at,
            "trending_rank": rank,
            "trending_score": cols.trending_score,
            "tags": _categorical(cols.tags_code, tags_vocab),
            "author": _categorical(cols.author_code, cols.author_vocab),
            "last_modified": last_modified,
        }
    )


def _choice(rng: np.random.Generator, table: tuple[tuple[str | None, float], ...], n: int) -> tuple[I32, Obj]:
    """Codes (-1 for None) drawn with the table's weights, and the vocabulary of the non-None values."""
    names = [name for name, _ in table]
    weights = np.array([w for _, w in table])
    drawn = rng.choice(len(names), size=n, p=weights / weights.sum())
    vocab = [name for name in names if name is not None]
    remap = np.array([vocab.index(name) if name is not None else -1 for name in names], dtype=np.int32)
    return remap[drawn], np.array(vocab, dtype=object)


def _cum_exp(amp: F64, tau: F64, s: F64) -> F64:
    """Integral over [0, s] of amp * exp(-x / tau); zero before the start."""
    out: F64 = amp * tau * -np.expm1(-np.maximum(s, 0.0) / tau)
    return out


def _cum_burst(amp: F64, rise: F64, tau: F64, s: F64) -> F64:
    """Integral over [0, s] of amp * (1 - exp(-x / rise)) * exp(-x / tau): a ramp up, then a decay."""
    k = rise * tau / (rise + tau)
    s = np.maximum(s, 0.0)
    out: F64 = amp * (tau * -np.expm1(-s / tau) - k * -np.expm1(-s / k))
    return out


@dataclass(frozen=True)
class _Params:
    created: F64  # creation time, days since start (float; negative = before start)
    deleted: F64  # deletion time (inf = never)
    base: F64  # baseline downloads per day
    age_tau: F64  # baseline slowly fades with age
    launch: F64  # launch spike amplitude (downloads per day)
    launch_tau: F64
    burst_at: F64  # burst start (inf = none)
    burst_rise: F64
    burst_tau: F64
    burst_downloads: F64  # downloads per day at the burst's scale (0 = hype only)
    burst_likes: F64  # likes per day at the burst's scale (0 = silent)
    lag: F64  # downloads follow the likes of a burst by this many days
    like_rate: F64  # likes per download of steady use
    update_every: F64  # days between commits while maintained
    maintained_for: F64  # days after creation during which commits happen


def _draw_params(n: int, days: int, rng: np.random.Generator, created: F64 | None = None) -> _Params:
    """`created`: the creation times of a cohort of new models (sorted); drawn for a whole Hub when None."""
    if created is None:
        new_share = min(0.5, NEW_PER_DAY * days)
        is_new = rng.random(n) < new_share
        created = np.where(is_new, rng.uniform(0.0, days, n), -np.minimum(1.0 + rng.exponential(400.0, n), 2200.0))
        created.sort()  # model index = creation order, like the Hub's ObjectIds
    deleted = np.where(rng.random(n) < 0.02, created + rng.uniform(1.0, 400.0, n), np.inf)

    base = np.exp(rng.normal(-1.2, 2.4, n))
    launch = base * np.exp(rng.normal(1.5, 1.0, n))
    has_burst = rng.random(n) < min(0.6, 0.003 * (days + 60))
    burst_at = np.where(has_burst, rng.uniform(-60.0, days, n), np.inf)
    # fresh releases are the most likely to go viral, right at launch
    launch_burst = (created > -60.0) & (rng.random(n) < 0.3)
    burst_at = np.where(launch_burst, created + rng.uniform(0.0, 3.0, n), burst_at)
    burst_at = np.where(burst_at < created, created + rng.uniform(0.0, 3.0, n), burst_at)
    scale = (base + 0.3 * launch + 0.5) * np.exp(rng.normal(2.5, 1.3, n))
    kind = rng.random(n)
    burst_downloads = np.where(kind < 0.80, scale, 0.0)
    burst_likes = np.where((kind < 0.65) | (kind >= 0.80), scale, 0.0) * np.exp(rng.normal(np.log(1 / 400), 0.8, n))
    return _Params(
        created=created,
        deleted=deleted,
        base=base,
        age_tau=np.exp(rng.uniform(np.log(150.0), np.log(1500.0), n)),
        launch=launch,
        launch_tau=rng.uniform(4.0, 25.0, n),
        burst_at=burst_at,
        burst_rise=rng.uniform(1.0, 4.0, n),
        burst_tau=rng.uniform(3.0, 20.0, n),
        burst_downloads=burst_downloads,
        burst_likes=burst_likes,
        lag=rng.uniform(1.0, 5.0, n),
        like_rate=np.exp(rng.normal(np.log(1 / 2000), 0.8, n)),
        update_every=np.exp(rng.normal(np.log(20.0), 0.8, n)),
        maintained_for=rng.exponential(60.0, n),
    )


def _code_of(hub: SyntheticHub, column: str, value: str) -> int:
    """The code of `value` in the hub's pipeline or library vocabulary, adding it when new."""
    vocab = list(getattr(hub, f"{column}_vocab"))
    if value not in vocab:
        vocab.append(value)
        setattr(hub, f"{column}_vocab", np.array(vocab, dtype=object))
    return vocab.index(value)


class SyntheticHub:
    """`SyntheticHub(n_models, days, seed, start_date)`: `.day(d)` is day d (0-based) as a DataFrame."""

    def __init__(
        self,
        n_models: int,
        days: int,
        seed: int = 0,
        start_date: dt.date = dt.date(2025, 1, 1),
        trending_size: int = 1000,
        featured: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        """`featured`: repo id -> (pipeline tag, library) of real repos the replay Hub also serves (the demo's
        deployable models). Each takes the place of one synthetic model created before `start_date`, keeping
        that model's dynamics, so it is listed, ingested and scored like any other."""
        if not 1 <= n_models <= MAX_MODELS:
            raise ValueError(f"n_models must be between 1 and {MAX_MODELS}, got {n_models}")
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        self.n_models, self.days, self.seed, self.start_date = n_models, days, seed, start_date
        self.trending_size = trending_size
        rng = np.random.default_rng([seed, 0])
        self._p = _draw_params(n_models, days, rng)
        self.pipeline_code, self.pipeline_vocab = _choice(rng, PIPELINE_TAGS, n_models)
        self.library_code, self.library_vocab = _choice(rng, LIBRARIES, n_models)
        self._license_code, self._license_vocab = _choice(rng, LICENSES, n_models)
        self._n_authors = max(1, n_models // 12)
        self.author_code, self._name_parts, self._created_seconds = self._identities(rng, n_models)
        self._featured_authors: dict[int, str] = {}
        self._featured = self._place(dict(featured or {}))
        self._new_per_day = max(1.0, NEW_PER_DAY * n_models)

    def _identities(self, rng: np.random.Generator, n: int) -> tuple[I32, npt.NDArray[np.int64], I64]:
        """Author codes, name parts and creation second of the day of n models."""
        # Zipf-like: a few organisations own many models
        authors = np.minimum((self._n_authors * rng.random(n) ** 2.5).astype(np.int32), self._n_authors - 1)
        names = rng.integers(0, [len(_FAMILY), len(_SIZE), len(_VARIANT)], size=(n, 3))
        return authors, names, rng.integers(0, 86_400, n)

    def extend(self, days: int) -> None:
        """Serve days up to `days` (exclusive): models created on each new day join, drawn from that day's seed."""
        for d in range(self.days, days):
            rng = np.random.default_rng([self.seed, _COHORT, d + _DAY_OFFSET])
            n = int(rng.poisson(self._new_per_day))
            if n:
                self._append(rng, n, np.sort(rng.uniform(d, d + 1.0, n)), d + 1)
            self.days = d + 1

    def _append(self, rng: np.random.Generator, n: int, created: F64, days: int) -> None:
        p = _draw_params(n, days, rng, created)
        self._p = _Params(
            **{f: np.concatenate([getattr(self._p, f), getattr(p, f)]) for f in _Params.__dataclass_fields__}
        )
        tables = ((PIPELINE_TAGS, "pipeline_code"), (LIBRARIES, "library_code"), (LICENSES, "_license_code"))
        for table, name in tables:  # codes index the same vocabularies: featured values are appended after
            setattr(self, name, np.concatenate([getattr(self, name), _choice(rng, table, n)[0]]))
        authors, names, seconds = self._identities(rng, n)
        self.author_code = np.concatenate([self.author_code, authors])
        self._name_parts = np.concatenate([self._name_parts, names])
        self._created_seconds = np.concatenate([self._created_seconds, seconds])
        self.n_models += n
        for cached in ("model_id", "_tags", "_created"):
            self.__dict__.pop(cached, None)

    def _place(self, featured: dict[str, tuple[str, str]]) -> dict[int, str]:
        """Model index -> featured repo id: the most-liked-looking older models (largest bursts of likes), so
        a featured model has a history worth looking at; their task and library become the featured ones."""
        if not featured:
            return {}
        older = np.flatnonzero(self._p.created < 0)
        if len(older) < len(featured):
            raise ValueError(f"{len(featured)} featured models need as many models created before the start")
        chosen = older[np.argsort(-self._p.burst_likes[older], kind="stable")[: len(featured)]]
        placed = {}
        authors = sorted({repo_id.split("/")[0] for repo_id in featured})
        first_code = int(self.author_code.max()) + 1
        self._featured_authors = {first_code + k: author for k, author in enumerate(authors)}
        for index, (repo_id, (task, library)) in zip(chosen.tolist(), featured.items(), strict=True):
            self.pipeline_code[index] = _code_of(self, "pipeline", task)
            self.library_code[index] = _code_of(self, "library", library)
            self.author_code[index] = first_code + authors.index(repo_id.split("/")[0])
            placed[index] = repo_id
        return placed

    @property
    def dates(self) -> list[dt.date]:
        return [self.start_date + dt.timedelta(days=d) for d in range(self.days)]

    @cached_property
    def author_vocab(self) -> Obj:
        a, b = len(_AUTHOR_A), len(_AUTHOR_B)
        names = [
            f"{_AUTHOR_A[j % a]}-{_AUTHOR_B[(j // a) % b]}{j // (a * b) or ''}"
            for j in range(int(self.author_code.max()) + 1)
        ]
        for code, author in self._featured_authors.items():
            names[code] = author
        return np.array(names, dtype=object)

    @cached_property
    def model_id(self) -> Obj:
        authors = self.author_vocab[self.author_code].tolist()
        stems = [f"{f}-{s}-{v}" for f in _FAMILY for s in _SIZE for v in _VARIANT]
        stem = (self._name_parts[:, 0] * len(_SIZE) + self._name_parts[:, 1]) * len(_VARIANT) + self._name_parts[:, 2]
        ids = [f"{a}/{stems[k]}-{i:x}" for i, (a, k) in enumerate(zip(authors, stem.tolist(), strict=True))]
        for index, repo_id in self._featured.items():
            ids[index] = repo_id
        return np.array(ids, dtype=object)

    @cached_property
    def _tags(self) -> tuple[I32, tuple[tuple[str, ...], ...]]:
        """Tag lists are combinations of library, task and licence: a small vocabulary of tuples."""
        n_lib, n_pipe, n_lic = len(self.library_vocab) + 1, len(self.pipeline_vocab) + 1, len(self._license_vocab) + 1
        code = ((self.library_code + 1) * n_pipe + (self.pipeline_code + 1)) * n_lic + (self._license_code + 1)
        vocab: list[tuple[str, ...]] = []
        for lib in range(n_lib):
            for pipe in range(n_pipe):
                for lic in range(n_lic):
                    tags = [str(self.library_vocab[lib - 1])] if lib else []
                    tags += [str(self.pipeline_vocab[pipe - 1])] if pipe else []
                    tags += [f"license:{self._license_vocab[lic - 1]}"] if lic else []
                    vocab.append((*tags, "region:us"))
        return code.astype(np.int32), tuple(vocab)

    @cached_property
    def _created(self) -> tuple[Obj, F64]:
        """ISO strings (the Hub's `createdAt` format) and epoch seconds, built once: they never change."""
        start = int(dt.datetime.combine(self.start_date, dt.time(), dt.UTC).timestamp())
        day = np.floor(self._p.created).astype(np.int64)
        first = int(day.min())
        day_str = [(self.start_date + dt.timedelta(days=int(d))).isoformat() for d in range(first, int(day.max()) + 1)]
        sec = self._created_seconds.tolist()
        clock = [f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000Z" for s in range(86_400)]
        iso = [day_str[d - first] + clock[s] for d, s in zip(day.tolist(), sec, strict=True)]
        ts = start + day * 86_400.0 + self._created_seconds
        return np.array(iso, dtype=object), ts.astype(np.float64)

    def _noise(self, stream: int, t: int) -> F64:
        u = np.random.default_rng([self.seed, stream, t + _DAY_OFFSET]).random(self.n_models, dtype=np.float32)
        return u.astype(np.float64)

    def _cum_downloads(self, t: float) -> F64:
        p = self._p
        age = t - p.created
        steady = _cum_exp(p.base, p.age_tau, age) + _cum_exp(p.launch, p.launch_tau, age)
        return steady + _cum_burst(p.burst_downloads, p.burst_rise, p.burst_tau, t - p.burst_at - p.lag)

    def _cum_likes(self, t: float) -> F64:
        p = self._p
        age = t - p.created
        steady = _cum_exp(p.base, p.age_tau, age) + _cum_exp(p.launch, p.launch_tau, age)
        return p.like_rate * steady + _cum_burst(p.burst_likes, p.burst_rise, p.burst_tau, t - p.burst_at)

    def _counter(self, t: int, stream: int, weekly: bool) -> I64:
        """Cumulative count at the end of day t: closed-form expectation plus a telescoping noise term.

        eps(t) = m(t) * (C(t) - C(t-1)) with m in [0, 0.6]; every rate falls by at most exp(-1/3) a day,
        so C(t+1) + eps(t+1) >= C(t) + eps(t): the counter never decreases.
        """
        cum = self._cum_downloads if stream == _NOISE_DOWNLOADS else self._cum_likes
        now, before = cum(t + 1.0), cum(float(t))
        m = 0.3 * self._noise(stream, t)
        if weekly:  # a Hub-wide weekly rhythm (weekend dip), global phase from the weekday
            weekday = (self.start_date + dt.timedelta(days=t)).weekday()
            m += 0.15 * (1.0 + np.sin(2 * np.pi * weekday / 7.0))
        else:
            m += 0.15
        return np.floor(now + m * (now - before)).astype(np.int64)

    def day_columns(self, d: int) -> DayColumns:
        """Day d (0-based) of the Hub as columns; only models that exist at the end of that day."""
        if not 0 <= d < self.days:
            raise ValueError(f"day must be in [0, {self.days}), got {d}")
        p = self._p
        end = d + 1.0
        rows = np.flatnonzero((p.created < end) & (p.deleted > end))
        all_time = self._counter(d, _NOISE_DOWNLOADS, weekly=True)
        downloads = all_time - self._counter(d - ROLLING_DAYS, _NOISE_DOWNLOADS, weekly=True)
        likes = self._counter(d, _NOISE_LIKES, weekly=False)
        likes7d = likes - self._counter(d - 7, _NOISE_LIKES, weekly=False)
        score = likes7d + likes - self._counter(d - 2, _NOISE_LIKES, weekly=False)
        score_rows = score[rows]
        rank = np.zeros(len(rows), dtype=np.int64)
        candidates = np.flatnonzero(score_rows > 0)
        if len(candidates):
            k = min(self.trending_size, len(candidates))
            top = candidates[np.argpartition(-score_rows[candidates], k - 1)[:k]]
            top = top[np.lexsort((top, -score_rows[top]))]  # ties: older model first
            rank[top] = np.arange(1, k + 1)
        last_mod_day = (
            p.created + np.floor(np.minimum(end - p.created, p.maintained_for) / p.update_every) * p.update_every
        )
        created_iso, created_ts = self._created
        last_mod = created_ts + np.floor(last_mod_day - p.created) * 86_400.0
        tags_code, tags_vocab = self._tags
        return DayColumns(
            date=self.start_date + dt.timedelta(days=d),
            model_index=rows.astype(np.int64),
            model_id=self.model_id[rows],
            author_code=self.author_code[rows],
            author_vocab=self.author_vocab,
            pipeline_code=self.pipeline_code[rows],
            pipeline_vocab=self.pipeline_vocab,
            library_code=self.library_code[rows],
            library_vocab=self.library_vocab,
            tags_code=tags_code[rows],
            tags_vocab=tags_vocab,
            downloads=downloads[rows],
            downloads_all_time=all_time[rows],
            likes=likes[rows],
            likes7d=likes7d[rows],
            trending_score=score_rows,
            trending_rank=rank,
            created_at=created_iso[rows],
            created_ts=created_ts[rows],
            last_modified_ms=(last_mod[rows] * 1000).astype(np.int64),
        )

    def day(self, d: int) -> pd.DataFrame:
        return columns_to_frame(self.day_columns(d))

    def history(self, max_rows: int = 20_000_000) -> pd.DataFrame:
        """All days in one frame, for small hubs (the pipeline streams `.day(d)` instead)."""
        if self.n_models * self.days > max_rows:
            raise ValueError(f"{self.n_models} models x {self.days} days is too large for history(); use day(d)")
        return pd.concat([self.day(d) for d in range(self.days)], ignore_index=True)


def _compact(values: npt.ArrayLike) -> npt.NDArray[np.floating]:
    """float32 when every value is exactly representable (counts below 2**24), else float64 unchanged.

    The features and labels read every column as float64, so the values they see are the same; the
    ~27 days the streaming builder holds take ~20% less memory.
    """
    wide = np.asarray(values, dtype="float64")
    small = wide.astype("float32")
    return small if np.array_equal(small, wide, equal_nan=True) else wide


def typed_days(hub: SyntheticHub) -> Iterator[pd.DataFrame]:
    """The hub's days in the typed history format, built from its columns (no string parsing)."""
    ids = pd.CategoricalDtype(pd.Index(hub.model_id))
    for d in range(hub.days):
        c = hub.day_columns(d)
        n = len(c)
        yield pd.DataFrame(
            {
                "snapshot_date": np.full(n, np.datetime64(c.date, "ns")),
                "model_id": pd.Categorical.from_codes(c.model_index, dtype=ids),
                "downloads": _compact(c.downloads),
                "downloads_all_time": _compact(np.where(c.downloads_all_time < 0, np.nan, c.downloads_all_time)),
                "likes": _compact(c.likes),
                "pipeline_tag": pd.Categorical.from_codes(c.pipeline_code, categories=pd.Index(c.pipeline_vocab)),
                "library_name": pd.Categorical.from_codes(c.library_code, categories=pd.Index(c.library_vocab)),
                "created_at": pd.to_datetime(c.created_ts, unit="s"),
                "trending_rank": _compact(np.where(c.trending_rank > 0, c.trending_rank, np.nan)),
            }
        )
