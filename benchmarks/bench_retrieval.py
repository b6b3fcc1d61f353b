"""Retrieval benchmark: RA-IT data building (k=2, NN and NN+BM25) on the 2,217 Pile-NER passages and on a
synthetic 50,000-passage pool, against a bare faiss floor.

    python benchmarks/bench_retrieval.py [--synthetic 50000] [--output results/bench_retrieval.json]
        [--synthetic-only]

Pile-NER (needs the shared data): embedding throughput of the offline embedders (warm model, no
cache), then ``build_data`` for NN and NN+BM25 reading the embeddings just cached.
Synthetic: random 384-d unit vectors (embedding skipped) and texts from a seeded Zipf word generator
(100-300 words, like Pile-NER's ~208); kNN is compared with one bare ``IndexFlatIP.search`` of the same
vectors, and the BM25 filter (gensim 3.8 scale) is timed on 128 candidates per query (the DNN+BM25
worst case), also against scoring the whole pool per query (one sparse product) on a sample of queries,
which must give the same scores. Peak memory is the process's
maximum resident set size so far (it only grows)."""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from rait.build_data import BuildConfig, build_conversations, build_data, write_conversations
from rait.data.benchmarks import is_available
from rait.data.sources import load_source
from rait.records import Mention, Record
from rait.retrieval.bm25 import BM25Index
from rait.retrieval.embed import get_embedder
from rait.retrieval.pool import build_index, knn_search
from rait.templates import NegativeTypeSampler

ROOT = Path(__file__).resolve().parents[1]
console = Console()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def synthetic_records(n: int, seed: int = 0, vocab: int = 30_000) -> list[Record]:
    """``n`` passages of 100-300 words drawn from a Zipf(1.1) vocabulary of pronounceable pseudo-words;
    the first two words of each passage are its mentions."""
    rng = np.random.default_rng(seed)
    syllables = np.array([c + v for c in "bdfgklmnprstvz" for v in "aeiou"])
    parts = rng.integers(0, len(syllables), size=(vocab, 3))
    words = np.array(["".join(syllables[p[: 2 + i % 2]]) + str(i) for i, p in enumerate(parts)])
    weights = 1.0 / np.arange(1, vocab + 1) ** 1.1
    lengths = rng.integers(100, 301, size=n)
    tokens = words[rng.choice(vocab, size=int(lengths.sum()), p=weights / weights.sum())]
    records, start = [], 0
    for i, length in enumerate(lengths):
        passage = tokens[start : start + length]
        start += length
        text = " ".join(passage)
        mentions = [
            Mention(str(passage[0]), f"type{i % 50}"),
            Mention(str(passage[1]), f"type{(i + 7) % 50}"),
        ]
        records.append(Record(id=f"syn-{i}", text=text, mentions=mentions))
    return records


def bench_pile_ner(work: Path) -> dict:
    records, _ = load_source("pile_ner_subset")
    texts = [r.text for r in records]
    result: dict = {"passages": len(records)}
    for name in ("minilm", "use-multilingual"):
        embedder = get_embedder(name, cache_dir=work / "cache")
        _, load_s = timed(embedder.encode, ["warm-up"], show_progress=False)
        vectors, embed_s = timed(embedder.encode, texts)
        result[f"embed_{name}"] = {
            "dim": int(vectors.shape[1]),
            "model_load_s": round(load_s, 2),
            "embed_s": round(embed_s, 2),
            "passages_per_s": round(len(texts) / embed_s, 1),
        }
        console.print(
            f"[bold]{name}[/]: {len(texts)} passages in {embed_s:.1f} s ({len(texts) / embed_s:.1f}/s)"
        )
    for strategy in ("nn", "nn_bm25"):
        config = BuildConfig(
            source="pile_ner_subset",
            output=work / f"pile_{strategy}.json",
            strategy=strategy,
            embedder="minilm",
            cache_dir=str(work / "cache"),
        )
        manifest = build_data(config)
        result[strategy] = {
            "timings_s": manifest["timings_s"],
            "fallback_vanilla": manifest["counts"]["fallback_vanilla"],
            "examples_per_sample": manifest["counts"]["examples_per_sample"],
            "peak_rss_mb": round(peak_mb()),
        }
        console.print(
            f"pile-ner {strategy}: {manifest['timings_s']} fallback {manifest['counts']['fallback_vanilla']}"
        )
    return result


def bench_synthetic(n: int, work: Path, dim: int = 384, K: int = 128) -> dict:
    records, gen_s = timed(synthetic_records, n)
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    result: dict = {
        "passages": n,
        "dim": dim,
        "generate_s": round(gen_s, 2),
        "embedding": "skipped (random vectors)",
    }
    console.print(f"synthetic: {n} passages generated in {gen_s:.1f} s")

    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    floors = {}
    for width in (3, K + 1):  # k=2 plus the query itself; K=128 plus itself
        _, floors[width] = timed(index.search, vectors, width)
    del index
    result["faiss_floor_s"] = {f"k{w}": round(s, 2) for w, s in floors.items()}
    console.print(f"bare IndexFlatIP.search: {result['faiss_floor_s']}")

    sampler = NegativeTypeSampler.from_records(records)
    for strategy in ("nn", "nn_bm25"):
        config = BuildConfig(source="synthetic", output=work / f"syn_{strategy}.json", strategy=strategy)
        start = time.perf_counter()
        built = build_conversations(records, config, lang="en", sampler=sampler, vectors=vectors)
        build_s = time.perf_counter() - start
        _, write_s = timed(write_conversations, config.output, built.conversations)
        size_mb = config.output.stat().st_size / 2**20
        config.output.unlink()
        timings = {name: round(s, 2) for name, s in built.pool.timings.items()}
        counts = np.bincount(built.example_counts, minlength=3).tolist()
        result[strategy] = {
            "timings_s": timings
            | {"build": round(build_s, 2), "write": round(write_s, 2), "total": round(build_s + write_s, 2)},
            "knn_over_floor": round(built.pool.timings["knn"] / floors[3], 2),
            "examples_per_sample": counts,
            "output_mb": round(size_mb),
            "peak_rss_mb": round(peak_mb()),
        }
        console.print(f"synthetic {strategy}: {result[strategy]}")
        del built

    bm25, index_s = timed(BM25Index, [r.text for r in records])
    (found, _), knn_s = timed(
        knn_search,
        build_index(vectors),
        vectors,
        K,
        pool_groups=np.arange(n),
        query_groups=np.arange(n),
        show_progress=True,
    )
    scores, score_s = timed(bm25.score, bm25.doc_terms, found, show_progress=True)
    sample = 200
    full, full_s = timed(
        lambda: [(bm25.weights @ bm25.doc_terms[i].T).toarray().ravel()[found[i]] for i in range(sample)]
    )
    np.testing.assert_allclose(np.array(full), scores[:sample], rtol=1e-9)
    result[f"K{K}"] = {
        "knn_s": round(knn_s, 2),
        "knn_over_floor": round(knn_s / floors[K + 1], 2),
        "bm25_index_s": round(index_s, 2),
        "bm25_score_candidates_s": round(score_s, 2),
        "bm25_filter_s": round(index_s + score_s, 2),
        "whole_pool_per_query_s": round(full_s / sample, 4),
        "whole_pool_extrapolated_s": round(full_s / sample * n, 1),
        "median_candidate_score": round(float(np.median(scores[np.isfinite(scores)])), 2),
        "peak_rss_mb": round(peak_mb()),
    }
    console.print(f"K={K}: {result[f'K{K}']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=50_000, help="synthetic pool size")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "bench_retrieval.json")
    parser.add_argument(
        "--synthetic-only", action="store_true", help="skip the Pile-NER part (embedding takes minutes)"
    )
    args = parser.parse_args()
    results: dict = {
        "machine": {
            "cpus": faiss.omp_get_max_threads(),
            "python": platform.python_version(),
            "faiss": faiss.__version__,
            "note": "2 shared CPU cores; other jobs ran at the same time",
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.synthetic_only:
            console.print("Pile-NER part skipped (--synthetic-only)")
        elif is_available("pile_ner_subset", "train"):
            results["pile_ner"] = bench_pile_ner(work)
        else:
            console.print("[yellow]shared data not found: Pile-NER part skipped[/]")
        results["synthetic"] = bench_synthetic(args.synthetic, work)
    results["peak_rss_mb"] = round(peak_mb())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    table = Table(title="retrieval benchmark (seconds)")
    for column in ("set", "strategy", "embed", "kNN", "BM25", "total", "kNN / faiss floor", "peak RSS MB"):
        table.add_column(column)
    for key, label in (("pile_ner", "Pile-NER 2,217"), ("synthetic", f"synthetic {args.synthetic:,}")):
        for strategy in ("nn", "nn_bm25"):
            row = results.get(key, {}).get(strategy)
            if row:
                t = row["timings_s"]
                table.add_row(
                    label,
                    strategy,
                    str(t.get("embed", 0.0)),
                    str(t["knn"]),
                    str(t["bm25"]),
                    str(t["total"]),
                    str(row.get("knn_over_floor", "")),
                    str(row["peak_rss_mb"]),
                )
    console.print(table)
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
