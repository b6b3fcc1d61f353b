"""Retrieval: exact kNN with exclusions, the strategies, and the BM25 filter, on hand-checkable fixtures."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from rait.errors import RaitError
from rait.records import Mention, Record
from rait.retrieval.bm25 import BM25Index, load_stopwords, tokenize
from rait.retrieval.embed import Embedder
from rait.retrieval.pool import ExamplePool, build_index, check_options, knn_search, mixed_nn_rows


class TableEmbedder(Embedder):
    """Looks vectors up in a table; counts the texts it embeds."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table
        self.seen: list[str] = []
        super().__init__("table", cache=False)

    def _embed(self, texts):
        self.seen.extend(texts)
        return np.stack([self.table[t] for t in texts])


def unit(degrees: float) -> np.ndarray:
    return np.array([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))], dtype=np.float32)


# id, text, angle: r6 duplicates r0's text; r7 sits 3 degrees from r0/r6.
CIRCLE = [("r0", "alpha", 0), ("r1", "beta", 10), ("r2", "gamma", 25), ("r3", "delta", 45),
          ("r4", "epsilon", 90), ("r5", "zeta", 180), ("r6", "alpha", 0), ("r7", "eta", 3)]  # fmt: skip
TABLE = {text: unit(angle) for _, text, angle in CIRCLE} | {"omega": unit(40)}


def circle_pool(**kwargs) -> tuple[ExamplePool, TableEmbedder]:
    records = [Record(id=i, text=t, mentions=[Mention(t, "thing")]) for i, t, _ in CIRCLE]
    embedder = TableEmbedder(TABLE)
    return ExamplePool(records, embedder, show_progress=False, **kwargs), embedder


def ids(pool: ExamplePool, rows: list[list[int]]) -> list[list[str]]:
    return [[pool.records[i].id for i in row] for row in rows]


def test_nn_never_self_nor_same_text_and_ties_by_index():
    pool, _ = circle_pool()
    got = ids(pool, pool.self_retrieve(k=2, strategy="nn"))
    assert got[0] == ["r7", "r1"]  # r6 has r0's text: excluded
    assert got[6] == ["r7", "r1"]
    assert got[7] == ["r0", "r6"]  # equal vectors: tie broken by pool index
    assert got[4] == ["r3", "r2"]
    text_of = {r.id: r.text for r in pool.records}
    for row, found in enumerate(got):
        assert len(found) == 2 and all(text_of[f] != pool.records[row].text for f in found)


def test_knn_search_scores_and_padding():
    vectors = np.stack([unit(a) for a in (0, 10, 20)])
    index = build_index(vectors)
    found, scores = knn_search(index, vectors, 3, pool_groups=np.arange(3), query_groups=np.arange(3))
    assert found.tolist() == [[1, 2, -1], [0, 2, -1], [1, 0, -1]]
    assert scores[0, 0] == pytest.approx(math.cos(math.radians(10)), abs=1e-6)
    assert scores[0, 2] == -np.inf
    # a query outside the pool (group -1) may retrieve everything
    found, _ = knn_search(index, vectors[:1], 3, pool_groups=np.arange(3), query_groups=np.array([-1]))
    assert found.tolist() == [[0, 1, 2]]


def test_dnn_draws_only_from_the_K_nearest():
    pool, _ = circle_pool()
    drawn: set[str] = set()
    for seed in range(25):
        picked = ids(pool, pool.self_retrieve(k=2, strategy="dnn", K=3, seed=seed))[4]
        assert len(picked) == 2 and set(picked) <= {"r3", "r2", "r1"}
        drawn |= set(picked)
    assert drawn == {"r3", "r2", "r1"}


def test_random_excludes_self_and_duplicates_and_is_seeded():
    pool, embedder = circle_pool()
    runs = [ids(pool, pool.self_retrieve(k=3, strategy="random", seed=seed)) for seed in range(20)]
    assert embedder.seen == []  # random needs no embeddings
    for run in runs:
        assert not {"r0", "r6"} & set(run[0]) and not {"r0", "r6"} & set(run[6])
        assert all(len(set(row)) == 3 and pool.records[i].id not in row for i, row in enumerate(run))
    assert runs[3] == ids(pool, pool.self_retrieve(k=3, strategy="random", seed=3))
    assert len({tuple(run[0]) for run in runs}) > 1


def test_results_do_not_depend_on_query_order():
    pool, _ = circle_pool()
    order = [5, 2, 7, 0, 4, 1, 6, 3]
    shuffled = ExamplePool([pool.records[i] for i in order], TableEmbedder(TABLE), show_progress=False)
    for strategy in ("dnn", "random", "mixed_nn"):
        a = ids(pool, pool.self_retrieve(k=2, strategy=strategy, K=4, seed=7))
        b = ids(shuffled, shuffled.self_retrieve(k=2, strategy=strategy, K=4, seed=7))
        assert {pool.records[i].id: a[i] for i in range(8)} == {
            shuffled.records[i].id: b[i] for i in range(8)
        }


def test_mixed_nn_rows_honour_the_ratio_exactly():
    seeds = [f"id{i}" for i in range(50)]
    rows = mixed_nn_rows(seeds, 0.3, seed=1)
    assert len(rows) == 15 and list(rows) == sorted(rows)
    reordered = list(reversed(seeds))
    assert {reordered[i] for i in mixed_nn_rows(reordered, 0.3, seed=1)} == {seeds[i] for i in rows}
    assert len(mixed_nn_rows(seeds, 0.0)) == 0 and len(mixed_nn_rows(seeds, 1.0)) == 50


def test_mixed_nn_is_nn_on_its_share_and_random_elsewhere():
    angles = {f"t{i}": i * 6.0 for i in range(30)} | {f"u{i}": i * 6.0 + 0.5 for i in range(30)}  # twins
    records = [Record(id=text, text=text) for text in angles]
    pool = ExamplePool(records, TableEmbedder({t: unit(a) for t, a in angles.items()}), show_progress=False)
    mixed = pool.self_retrieve(k=1, strategy="mixed_nn", mixed_ratio=0.4, seed=5)
    nn = pool.self_retrieve(k=1, strategy="nn", seed=5)
    rand = pool.self_retrieve(k=1, strategy="random", seed=5)
    nn_rows = set(mixed_nn_rows([r.id for r in records], 0.4, seed=5).tolist())
    assert len(nn_rows) == 24
    assert all(mixed[i] == (nn[i] if i in nn_rows else rand[i]) for i in range(60))
    assert all(records[nn[i][0]].id[1:] == records[i].id[1:] for i in range(60))  # NN = the twin


def test_retrieve_external_texts():
    pool, embedder = circle_pool()
    got = pool.retrieve(["alpha", "omega"], k=2)
    assert [[r.id for r in row] for row in got] == [["r7", "r1"], ["r3", "r2"]]
    assert embedder.seen[:2] == ["alpha", "omega"]
    got = pool.retrieve(["omega"], k=2, exclude_ids={"r3", "r1"})
    assert [r.id for r in got[0]] == ["r2", "r7"]


def test_identical_texts_only_with_the_reference_flag():
    pool, _ = circle_pool()
    assert [r.id for r in pool.retrieve(["alpha"], k=2)[0]] == ["r7", "r1"]
    assert [r.id for r in pool.retrieve(["alpha"], k=3, exclude_identical=False)[0]] == ["r0", "r6", "r7"]
    leaked = pool.retrieve(["alpha"], k=2, strategy="random", exclude_identical=False, seed=1)
    assert len(leaked[0]) == 2


def test_empty_pool_and_zero_k():
    empty = ExamplePool([], TableEmbedder(TABLE), show_progress=False)
    assert empty.retrieve(["alpha", "omega"]) == [[], []]
    pool, _ = circle_pool()
    assert pool.retrieve(["omega"], k=0) == [[]]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes(kind):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((400, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = np.arange(400)
    exact, _ = knn_search(build_index(vectors), vectors, 10, pool_groups=groups, query_groups=groups)
    approx, _ = knn_search(build_index(vectors, kind), vectors, 10, pool_groups=groups, query_groups=groups)
    assert not np.any(approx == np.arange(400)[:, None])
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall > 0.9


def test_options_are_checked():
    with pytest.raises(RaitError, match="unknown retrieval strategy"):
        check_options(2, "knn")
    with pytest.raises(RaitError, match="K"):
        check_options(4, "dnn", K=3)
    with pytest.raises(RaitError, match="ratio"):
        check_options(2, "mixed_nn", mixed_ratio=1.5)
    with pytest.raises(RaitError, match="unknown index"):
        ExamplePool([], index="annoy")


# ---------------------------------------------------------------------------------------------- BM25


def test_tokenize_as_the_reference():
    assert tokenize("The Cat,  the cat!") == ["The", "Cat,", "", "the", "cat!"]  # str.split(" ")
    assert tokenize("The cat sat", stopwords=load_stopwords("en")) == ["The", "cat", "sat"]  # exact match
    assert tokenize("the cat sat", stopwords=load_stopwords("en")) == ["cat", "sat"]
    tokens = tokenize("李白是唐代著名诗人，出生于碎叶城。", "zh")
    assert (
        tokens[:2] == ["李白", "是"]
        and "唐代" in tokens
        and "，" in tokens
        and "".join(tokens).endswith("。")
    )


def test_bm25_names_are_still_importable_from_rait_retrieval():
    import rait.retrieval
    import rait.retrieval.bm25

    assert (
        rait.retrieval.BM25Index,
        rait.retrieval.tokenize,
        rait.retrieval.load_stopwords,
    ) == (
        rait.retrieval.bm25.BM25Index,
        rait.retrieval.bm25.tokenize,
        rait.retrieval.bm25.load_stopwords,
    )


def test_stopword_file(tmp_path):
    path = tmp_path / "stop.txt"
    path.write_text("Cat\n\nmat\n", encoding="utf-8")
    assert load_stopwords(path) == {"Cat", "mat"}
    with pytest.raises(RaitError, match="does not exist"):
        load_stopwords(tmp_path / "missing.txt")


def gensim_score(corpus: list[list[str]], query: list[str], index: int) -> float:
    """gensim 3.8.3's ``BM25.get_score``, transcribed term by term (k1 1.5, b 0.75, epsilon 0.25)."""
    df: Counter = Counter(w for doc in corpus for w in set(doc))
    idf = {w: math.log(len(corpus) - f + 0.5) - math.log(f + 0.5) for w, f in df.items()}
    eps = 0.25 * sum(idf.values()) / len(idf)
    idf = {w: eps if v < 0 else v for w, v in idf.items()}
    avgdl = sum(map(len, corpus)) / len(corpus)
    tf, dl = Counter(corpus[index]), len(corpus[index])
    return sum(idf[w] * tf[w] * 2.5 / (tf[w] + 1.5 * (0.25 + 0.75 * dl / avgdl)) for w in query if w in tf)


def test_bm25_gensim_score_by_hand():
    texts = ["cat dog", "cat", "bird", "fish", "cow"]
    index = BM25Index(texts)
    scores = index.score(index.query_matrix(["dog dog", "cat", "bird"]), np.array([[0, 1], [0, -1], [2, 3]]))
    avgdl = 6 / 5
    idf_dog = math.log(5 - 1 + 0.5) - math.log(1 + 0.5)
    tf_part = 2.5 / (1 + 1.5 * (0.25 + 0.75 * 2 / avgdl))
    assert scores[0, 0] == pytest.approx(2 * idf_dog * tf_part, rel=1e-12)  # query term counted twice
    assert scores[0, 1] == 0
    idf_cat = math.log(5 - 2 + 0.5) - math.log(2 + 0.5)
    assert scores[1, 0] == pytest.approx(idf_cat * tf_part, rel=1e-12)
    assert scores[1, 1] == -np.inf
    assert scores[2, 1] == 0


def test_bm25_negative_idf_is_replaced_by_a_quarter_of_the_average():
    texts = ["a x", "a y", "a z", "b"]  # "a" is in 3 of 4 documents: log(1.5) - log(3.5) < 0
    index = BM25Index(texts)
    raw = {"a": math.log(1.5 / 3.5), "x": math.log(3.5 / 1.5)}
    average = (raw["a"] + 4 * raw["x"]) / 5  # a, x, y, z, b
    assert index.average_idf == pytest.approx(average)
    assert index.idf[index.vocab["a"]] == pytest.approx(0.25 * average)


def test_bm25_candidate_scores_match_gensim_term_by_term():
    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    texts = [" ".join(rng.choices(words, k=rng.randint(3, 15))) for _ in range(60)]
    corpus = [t.split(" ") for t in texts]
    index = BM25Index(texts)
    candidates = np.array([rng.sample(range(60), 5) for _ in range(60)])
    ours = index.score(index.doc_terms, candidates)
    for i in range(60):
        expected = [gensim_score(corpus, corpus[i], int(c)) for c in candidates[i]]
        np.testing.assert_allclose(ours[i], expected, rtol=1e-12)


def test_bm25_filter_drops_low_scoring_examples():
    texts = {
        "apple banana cherry": 0,
        "apple banana cherry date": 10,
        "zebra yak": 20,
        "kiwi": 120,
        "fig": 200,
    }
    records = [Record(id=f"d{i}", text=t) for i, t in enumerate(texts)]
    embedder = TableEmbedder({t: unit(a) for t, a in texts.items()})
    pool = ExamplePool(records, embedder, show_progress=False)
    index = pool.bm25
    overlap = float(index.score(index.doc_terms[[0]], np.array([[1]]))[0, 0])
    assert overlap > 0
    kept = ids(pool, pool.self_retrieve(k=2, strategy="nn_bm25", bm25_threshold=overlap / 2))
    assert ids(pool, pool.self_retrieve(k=2, strategy="nn"))[0] == ["d1", "d2"]
    assert kept[0] == ["d1"]  # "zebra yak" shares no word
    assert kept[3] == []  # "kiwi" shares nothing with its neighbours
    assert ids(pool, pool.self_retrieve(k=2, strategy="nn_bm25", bm25_threshold=overlap * 2))[0] == []
    assert ids(pool, pool.self_retrieve(k=2, strategy="dnn_bm25", K=3, bm25_threshold=overlap / 2))[0] in (
        ["d1"],
        [],
    )


def test_chinese_pool_end_to_end(tmp_path):
    """jieba BM25 + the USE embedder on Chinese passages."""
    from rait.retrieval.embed import get_embedder

    texts = [
        "李白是唐代著名诗人，出生于碎叶城。",
        "杜甫是唐代伟大的诗人，被称为诗圣。",
        "华为在深圳发布了新款手机。",
        "小米公司在北京发布了新款手机。",
        "今天上海下了一场大雨。",
    ]
    records = [Record(id=f"zh{i}", text=t, mentions=[Mention(t[:2], "名称")]) for i, t in enumerate(texts)]
    pool = ExamplePool(records, get_embedder(None, "zh", tmp_path), lang="zh", show_progress=False)
    got = ids(pool, pool.self_retrieve(k=1, strategy="nn_bm25", bm25_threshold=0.5))
    assert got[0] == ["zh1"] and got[1] == ["zh0"]
    assert got[2] == ["zh3"] and got[3] == ["zh2"]
    examples = pool.retrieve(["王维是唐代诗人。"], k=2, strategy="nn_bm25", bm25_threshold=0.5)[0]
    assert {r.id for r in examples} <= {"zh0", "zh1"} and examples


@pytest.mark.real_data
def test_in_domain_pool_from_benchmark(shared_data, tmp_path):
    from rait.retrieval.embed import get_embedder

    embedder = get_embedder("hashing", cache_dir=tmp_path)
    pool = ExamplePool.from_benchmark("crossner_ai", size=10, seed=1, embedder=embedder, show_progress=False)
    assert len(pool) == 10 and pool.lang == "en" and pool.records[0].types
    again = ExamplePool.from_benchmark("crossner_ai", size=10, seed=1, embedder=embedder)
    assert [r.id for r in again.records] == [r.id for r in pool.records]
    examples = pool.retrieve(["Deep learning uses neural networks."], k=2)[0]
    assert len(examples) == 2 and all(r.source == "crossner_ai" for r in examples)
    empty = ExamplePool.from_benchmark("weibo", size=0)
    assert len(empty) == 0 and empty.lang == "zh" and empty.retrieve(["你好"]) == [[]]
