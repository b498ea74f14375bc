"""TemplateIndex and its backends (hsst.gallery.flat): exact top-k on real embeddings, numpy, onnxruntime (int8) and FAISS agreeing per storage, the
switch by size, removal, input checks, and searches running while templates land."""

import threading

import numpy as np
import pytest

from hsst.core.errors import ConfigError, InputError
from hsst.gallery.flat import BLOCK_COLUMNS, MAX_BINDINGS, STORAGES, TAIL_MAX, Codec, faiss_available
from hsst.gallery.index import IndexOptions, TemplateIndex

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed (pip install 'hsst[faiss]')")


def _unit(rng, n, dim=192):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True))


def _gallery(real_faces, fill=500):
    """Real templates (every photo but each person's last) and random unit-vector distractors."""
    names, probes = real_faces.probes()
    keep = [i for i, n in enumerate(real_faces.names) if not np.any(np.all(real_faces.embeddings[i] == probes, axis=1))]
    real = real_faces.embeddings[keep]
    vectors = np.ascontiguousarray(np.concatenate([real, _unit(np.random.default_rng(0), fill)]))
    owners = [real_faces.names[i] for i in keep] + [f"fill{i}" for i in range(fill)]
    return vectors, owners, names, probes


def _index(vectors, owners, **options):
    index = TemplateIndex(vectors.shape[1], IndexOptions(**options))
    index.add(vectors, np.arange(10, 10 + len(vectors)), owners)
    return index


def test_float32_numpy_is_exact_and_finds_the_real_person(real_faces):
    vectors, owners, names, probes = _gallery(real_faces)
    index = _index(vectors, owners, backend="numpy")
    scores, labels = index.search(probes, k=5)
    brute = probes @ vectors.T
    for i in range(len(probes)):
        order = np.argsort(-brute[i])[:5]
        np.testing.assert_array_equal(labels[i], order + 10)
        np.testing.assert_allclose(scores[i], brute[i][order], rtol=1e-5, atol=1e-6)
    ids, best = index.search_owners(probes, k=1)
    assert (ids[:, 0] == np.array(names)).mean() >= 0.8  # LFW, two enrolment photos, 500 distractors
    assert best.dtype == np.float32 and ids.dtype == object


@needs_faiss
@pytest.mark.parametrize("storage", STORAGES)
def test_numpy_and_faiss_score_the_same_codes(real_faces, storage):
    vectors, owners, _, probes = _gallery(real_faces)
    ours = _index(vectors, owners, storage=storage, backend="numpy")
    theirs = _index(vectors, owners, storage=storage, backend="faiss")
    assert ours.backend == "numpy" and theirs.backend == "faiss"
    s1, l1 = ours.search(probes, k=10)
    s2, l2 = theirs.search(probes, k=10)
    np.testing.assert_allclose(s1, s2, atol=2e-5)
    # equal scores may be ordered differently; otherwise the same templates
    assert (l1[:, 0] == l2[:, 0]).mean() == 1.0
    exact = _index(vectors, owners, backend="numpy").search(probes, k=1)[1]
    assert (l1[:, 0] == exact[:, 0]).mean() == 1.0  # compact codes keep the real top-1 here
    np.testing.assert_allclose(s1[:, 0], (probes @ vectors.T).max(axis=1), atol=0.02 if storage == "int8" else 2e-3)


def test_onnxruntime_scores_the_int8_codes_exactly_as_numpy(real_faces):
    vectors, owners, _, probes = _gallery(real_faces)
    ours = _index(vectors, owners, storage="int8")  # auto: onnxruntime
    reference = _index(vectors, owners, storage="int8", backend="numpy")
    assert ours.backend == "onnxruntime" and reference.backend == "numpy"
    s1, l1 = ours.search(probes, k=10)
    s2, l2 = reference.search(probes, k=10)
    np.testing.assert_array_equal(s1, s2)  # integer dot products, one scale: the same float32 numbers
    assert (l1[:, 0] == l2[:, 0]).all()
    for i in range(len(probes)):  # the gate's one-query path (IO binding) gives the batch path's answer
        one_s, one_l = ours.search(np.ascontiguousarray(probes[i:i + 1]), 1)
        assert one_s.dtype == np.float32 and one_s[0, 0] == s1[i, 0] and one_l[0, 0] == l1[i, 0]
    odd = _unit(np.random.default_rng(9), 300) * np.float32(3.7)  # the query is quantised in the graph: any scale
    odd[0] = 0.0
    np.testing.assert_array_equal(ours.search(odd, k=3)[0], reference.search(odd, k=3)[0])
    exact = _index(vectors, owners, backend="numpy").search(probes, k=1)[1]
    assert (l1[:, 0] == exact[:, 0]).mean() == 1.0


def test_onnxruntime_waiting_templates_are_searched_until_the_rebuild():
    """Templates added one at a time wait outside the session (scored by numpy) until enough wait; removals
    rebuild it. Every search, one query or many, equals a brute-force search over the same codes."""
    rng = np.random.default_rng(8)
    x = _unit(rng, 3000)
    codec = Codec("int8", 192)
    index = TemplateIndex(192, IndexOptions(storage="int8", backend="onnxruntime"))
    labels = np.arange(3000, dtype=np.int64)
    index.add(x[:2000], labels[:2000], ["o"] * 2000)
    backend = index._backend
    assert backend._sealed == 2000
    queries = _unit(rng, 5)

    def check(present):
        codes = codec.encode(x[present]).astype(np.float32)
        q, factor = codec.prepare(queries)
        brute = codes @ q.T * factor[None, :]
        scores, got = index.search(queries, 3)
        np.testing.assert_allclose(scores, np.sort(brute, axis=0)[::-1][:3].T, rtol=1e-6)
        for i in range(len(queries)):
            one_s, one_l = index.search(np.ascontiguousarray(queries[i:i + 1]), 1)
            assert one_s[0, 0] == pytest.approx(brute[:, i].max(), rel=1e-6)
            assert one_l[0, 0] == labels[present][brute[:, i].argmax()]

    for i in range(2000, 2040):
        index.add(x[i:i + 1], labels[i:i + 1], ["o"])
    assert 0 < len(index) - backend._sealed <= min(TAIL_MAX, 2000 // 64)  # some wait, then were sealed
    queries[0] = x[2039]  # the newest template, still waiting, is its own best match
    check(np.arange(2040))
    assert index.remove(labels[5:2035:3]) == 677 and backend._sealed == len(index)
    check(np.setdiff1d(np.arange(2040), np.arange(5, 2035, 3)))


def test_owners_are_ranked_by_their_best_template(real_faces):
    vectors, owners, _, probes = _gallery(real_faces, fill=50)
    index = _index(vectors, owners, backend="numpy")
    ids, scores = index.search_owners(probes, k=4)
    sims = probes @ vectors.T
    people = sorted(set(owners))
    for i in range(len(probes)):
        per_owner = {p: max(sims[i][j] for j, o in enumerate(owners) if o == p) for p in people}
        expected = sorted(people, key=lambda p: -per_owner[p])[:4]
        assert list(ids[i]) == expected
        np.testing.assert_allclose(scores[i], [per_owner[p] for p in expected], rtol=1e-5)
        assert len(set(ids[i])) == 4


def test_remove_and_padding():
    rng = np.random.default_rng(1)
    x = _unit(rng, 6, 16)
    index = TemplateIndex(16)
    index.add(x, np.arange(6), ["a", "a", "b", "b", "c", "c"])
    assert index.remove([0, 1, 99]) == 2 and len(index) == 4 and index.num_owners == 2
    ids, scores = index.search_owners(x[0], k=3)
    assert ids[0, 2] is None and scores[0, 2] == -np.inf and set(ids[0, :2]) == {"b", "c"}
    scores, labels = index.search(x[2], k=6)
    assert labels[0, 0] == 2 and list(labels[0, 4:]) == [-1, -1]
    index.remove([2, 3, 4, 5])
    assert index.search_owners(x[0], k=1)[0][0, 0] is None
    index.add(x[:1], np.array([7]), ["d"])
    with pytest.raises(InputError, match="already in the index"):
        index.add(x[:1], np.array([7]), ["d"])


@needs_faiss
def test_auto_moves_to_faiss_when_the_gallery_grows(real_faces):
    vectors, owners, _, probes = _gallery(real_faces, fill=300)
    index = TemplateIndex(192, IndexOptions(storage="int8", faiss_min=200))
    index.add(vectors[:150], np.arange(150), owners[:150])
    assert index.backend == "onnxruntime"
    before = index.search(probes, k=3)
    index.add(vectors[150:], np.arange(150, len(vectors)), owners[150:])
    assert index.backend == "faiss" and len(index) == len(vectors)
    after = _index(vectors, owners, storage="int8", backend="numpy").search(probes, k=3)
    np.testing.assert_allclose(index.search(probes, k=3)[0], after[0], atol=2e-5)
    assert before[0].shape == (len(probes), 3)
    index.remove(np.arange(0, 100))
    assert len(index) == len(vectors) - 100 and not set(index.search(probes, k=3)[1].ravel()) & set(range(100))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 192), np.float64), "float32"),
    (np.zeros((2, 64), np.float32), "dimension 64"),
    (np.zeros((4, 192), np.float32)[::2], "C-contiguous"),
    (np.full((1, 192), np.nan, np.float32), "NaN"),
    (np.zeros((0, 192), np.float32), r"shape \(N>0, D\)"),
    ([0.0] * 192, "numpy array"),
])
def test_queries_are_checked_like_faiss(bad, message):
    index = TemplateIndex(192)
    with pytest.raises(InputError, match=message):
        index.search(bad)


@pytest.mark.parametrize("storage, backend", [(s, "numpy") for s in STORAGES] + [("int8", "onnxruntime")] +
                         [pytest.param(s, "faiss", marks=needs_faiss) for s in STORAGES])
def test_non_finite_queries_are_refused_on_every_path(storage, backend):
    x = _unit(np.random.default_rng(6), 50)
    index = TemplateIndex(192, IndexOptions(storage=storage, backend=backend))
    index.add(x, np.arange(50), ["a"] * 50)
    for value in (np.nan, np.inf, -np.inf):
        q = x[:2].copy()
        q[1, 7] = value
        for k in (1, 3):
            with pytest.raises(InputError, match="NaN or inf"):
                index.search(q, k=k)
            with pytest.raises(InputError, match="NaN or inf"):
                index.search_owners(q[1], k=k)


def test_bad_k_labels_and_options():
    index = TemplateIndex(8)
    x = _unit(np.random.default_rng(2), 2, 8)
    for k in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="k must be"):
            index.search(x, k=k)
    with pytest.raises(InputError, match="labels must be 2 integers"):
        index.add(x, np.array([1.0, 2.0]), ["a", "b"])
    with pytest.raises(InputError, match="distinct"):
        index.add(x, np.array([1, 1]), ["a", "b"])
    with pytest.raises(InputError, match="1 owners for 2 templates"):
        index.add(x, np.array([1, 2]), ["a"])
    with pytest.raises(ConfigError, match="storage 'int4'"):
        IndexOptions(storage="int4")
    with pytest.raises(ConfigError, match="backend 'gpu'"):
        IndexOptions(backend="gpu")
    with pytest.raises(ConfigError, match="'onnxruntime' scores int8 codes"):
        IndexOptions(storage="float32", backend="onnxruntime")


def test_int8_clips_rare_large_components_only():
    codec = Codec("int8", 192)
    x = _unit(np.random.default_rng(3), 2000)
    codes = codec.encode(x)
    assert codes.dtype == np.int8 and np.abs(codes).max() <= 127
    assert (np.abs(x) > codec.range).mean() < 1e-4


@pytest.mark.parametrize("storage, backend", [("float32", "numpy"), ("int8", "onnxruntime")])
def test_searches_run_while_templates_land(real_faces, searching, storage, backend):
    """Four threads search while the main thread adds templates one person at a time: no error, no torn
    result, and each template is found by the first search after its add returns."""
    vectors = real_faces.embeddings
    index = TemplateIndex(192, IndexOptions(storage=storage, backend=backend))
    index.add(_unit(np.random.default_rng(4), 200), np.arange(1000, 1200), [f"fill{i}" for i in range(200)])

    def search(rng):
        q = np.ascontiguousarray(vectors[rng.integers(len(vectors))][None])
        ids, scores = index.search_owners(q, k=3)
        assert ids[0, 0] is not None and np.all(np.diff(scores[0]) <= 0)

    with searching(search):
        for i, v in enumerate(vectors):
            index.add(np.ascontiguousarray(v[None]), np.array([i]), [f"face{i}"])
            ids, scores = index.search_owners(v, k=1)
            assert ids[0, 0] == f"face{i}" and scores[0, 0] > (0.999 if storage == "float32" else 0.98)
            if i % 7 == 3:
                index.remove([i - 1])


@pytest.mark.parametrize("storage", ["float32", "int8"])
def test_numpy_blocks_match_brute_force_across_block_boundaries(storage):
    """More templates than two numpy blocks, added in uneven chunks and partly removed: every top-k equals a
    brute-force search over the same codes (zero-padded block columns never win, labels stay with their rows)."""
    rng = np.random.default_rng(3)
    n = 2 * BLOCK_COLUMNS + 777
    x = _unit(rng, n)
    x[:, 0] = np.abs(x[:, 0]) + 0.3  # every template leans to +e1: the query -e1 scores negative against all
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.arange(10, 10 + n, dtype=np.int64)
    index = TemplateIndex(192, IndexOptions(storage=storage, backend="numpy"))
    start = 0
    for size in (1, 999, BLOCK_COLUMNS, 5, n):  # the last chunk takes the rest
        stop = min(n, start + size)
        index.add(x[start:stop], labels[start:stop], [f"o{i}" for i in labels[start:stop]])
        start = stop
    gone = labels[rng.choice(n, 3000, replace=False)]
    assert index.remove(gone) == 3000 and len(index) == n - 3000
    keep = ~np.isin(labels, gone)
    codec = Codec(storage, 192)
    codes = codec.encode(x[keep]).astype(np.float32)
    queries = _unit(rng, 7)
    queries[:3] = x[keep][:3]
    queries[3] = 0.0
    queries[3, 0] = -1.0  # scores negative everywhere: a zero-padded column would win if it were scored
    q, factor = codec.prepare(queries)
    brute = codes @ q.T * (1.0 if factor is None else factor[None, :])
    row_of = {label: i for i, label in enumerate(labels[keep])}
    for k in (1, 5):
        scores, got = index.search(queries, k)
        best = np.sort(brute, axis=0)[::-1][:k].T  # the k best scores; which of tied templates comes first is free
        np.testing.assert_allclose(scores, best, rtol=1e-5, atol=1e-6)
        mine = np.array([[brute[row_of[label], i] for label in row] for i, row in enumerate(got)])
        np.testing.assert_allclose(mine, scores, rtol=1e-5, atol=1e-6)  # each label is the row that scored it
    one_s, one_l = index.search(queries[3:4], 1)  # the gate's single-query path
    assert brute[row_of[one_l[0, 0]], 3] == pytest.approx(brute[:, 3].max(), abs=1e-6) and one_s[0, 0] < 0


def test_onnxruntime_keeps_a_bounded_number_of_thread_bindings():
    """Each searching thread gets its own IO binding (buffers) for one-query searches; more threads than
    MAX_BINDINGS at once drop the kept ones instead of holding a score buffer per thread forever."""
    x = _unit(np.random.default_rng(10), 300)
    index = TemplateIndex(192, IndexOptions(storage="int8"))
    index.add(x, np.arange(300), ["o"] * 300)
    together = threading.Barrier(MAX_BINDINGS + 4)
    found = []

    def search(i):
        together.wait()  # all alive at once: distinct thread ids
        found.append(index.search(np.ascontiguousarray(x[i:i + 1]), 1)[1][0, 0] == i)
        together.wait()

    threads = [threading.Thread(target=search, args=(i,)) for i in range(MAX_BINDINGS + 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == MAX_BINDINGS + 4 and all(found)
    assert 0 < len(index._backend._bindings) <= MAX_BINDINGS
