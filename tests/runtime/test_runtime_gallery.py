"""InMemoryGallery: exact top-k against brute force, per-identity max over templates, input checks."""
import numpy as np
import pytest

from hsst.core.errors import InputError
from hsst.core.preprocess import l2_normalize
from hsst.runtime.gallery import Gallery, InMemoryGallery


def _gallery(rng, ids=40, dim=64, max_templates=4):
    gallery = InMemoryGallery(dim)
    templates = {}
    for i in range(ids):
        t = l2_normalize(rng.standard_normal((int(rng.integers(1, max_templates + 1)), dim)).astype(np.float32))
        gallery.add(f"id{i:03d}", t, {"index": i})
        templates[f"id{i:03d}"] = t
    return gallery, templates


def test_search_matches_brute_force():
    rng = np.random.default_rng(0)
    gallery, templates = _gallery(rng)
    queries = l2_normalize(rng.standard_normal((25, 64)).astype(np.float32))
    ids, scores = gallery.search(queries, k=5)
    assert ids.shape == (25, 5) and scores.dtype == np.float32
    names = list(templates)
    brute = np.array([[float((templates[n] @ q).max()) for n in names] for q in queries])
    for qi in range(len(queries)):
        order = np.argsort(-brute[qi])[:5]
        assert list(ids[qi]) == [names[j] for j in order]
        np.testing.assert_allclose(scores[qi], brute[qi, order], rtol=1e-5, atol=1e-6)


def test_k_larger_than_gallery_and_empty():
    gallery = InMemoryGallery(8)
    q = l2_normalize(np.ones((1, 8), np.float32))
    ids, scores = gallery.search(q, k=3)
    assert ids.tolist() == [[None, None, None]] and np.all(np.isneginf(scores))
    gallery.add("a", q)
    ids, scores = gallery.search(q, k=3)
    assert ids[0, 0] == "a" and ids[0, 1] is None
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_add_remove_metadata_and_interface():
    gallery = InMemoryGallery()
    assert isinstance(gallery, Gallery)
    v = l2_normalize(np.arange(1, 9, dtype=np.float32)[None])
    gallery.add("alice", v, {"photos": ["a.jpg"]})
    gallery.add("alice", v * 2, {"badge": 7})  # templates normalised on add, metadata merged
    assert len(gallery) == 1 and "alice" in gallery and gallery.identities == ["alice"]
    assert gallery.num_templates("alice") == 2
    assert gallery.metadata("alice") == {"photos": ["a.jpg"], "badge": 7}
    assert gallery.remove("alice") and not gallery.remove("alice")
    assert len(gallery) == 0


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 8), np.float64), "float32"),
    (np.zeros((2, 7), np.float32), "dimension"),
    (np.zeros((0, 8), np.float32), "shape"),
    (np.asfortranarray(np.ones((3, 8), np.float32)), "C-contiguous"),
    (np.full((1, 8), np.nan, np.float32), "NaN"),
    ([0.0] * 8, "numpy array"),
])
def test_query_checks(bad, message):
    gallery = InMemoryGallery(8)
    gallery.add("a", l2_normalize(np.ones((1, 8), np.float32)))
    with pytest.raises(InputError, match=message):
        gallery.search(bad)


def test_add_checks():
    gallery = InMemoryGallery(8)
    with pytest.raises(InputError, match="zero vector"):
        gallery.add("a", np.zeros((1, 8), np.float32))
    with pytest.raises(InputError, match="identity"):
        gallery.add("", np.ones((1, 8), np.float32))
    with pytest.raises(InputError, match="k must be"):
        gallery.search(np.ones((1, 8), np.float32), k=0)
