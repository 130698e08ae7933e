"""c3.leakage.WindowIndex: verbatim window overlaps, checked against brute force (Python's `in` on bytes)."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import c3  # noqa: E402
from c3 import leakage  # noqa: E402
from c3.leakage import WindowIndex  # noqa: E402


def brute_force(train: bytes, passage: bytes, window: int) -> np.ndarray:
    return np.array([passage[i:i + window] in train for i in range(len(passage) - window + 1)], dtype=bool)


def random_bytes(size: int, seed: int, alphabet: bytes = bytes(range(256))) -> bytes:
    rng = np.random.default_rng(seed)
    return bytes(np.frombuffer(alphabet, np.uint8)[rng.integers(0, len(alphabet), size)])


# Texts over two or three letters repeat short windows often, so both answers occur, including windows that sit at
# the very start or end of the training text or of the passage.
small_texts = st.binary(min_size=0, max_size=120).map(lambda raw: bytes(b"abc"[value % 3] for value in raw))


@settings(max_examples=50, derandomize=True, deadline=None)
@given(train=small_texts, passage=small_texts, window=st.integers(1, 7))
def test_matches_equal_brute_force(train, passage, window):
    index = WindowIndex(train, window=window)
    expected = brute_force(train, passage, window)
    np.testing.assert_array_equal(index.matches(passage), expected)
    assert index.contains(passage) == bool(expected.any())
    assert index.leaked_fraction(passage) == (float(expected.mean()) if expected.size else 0.0)
    assert len(index) == max(0, len(train) - window + 1)


def test_windows_at_the_start_and_end_of_the_training_text():
    train = random_bytes(5000, seed=1)
    index = WindowIndex(train)
    assert index.contains(train[:32]) and index.contains(train[-32:])
    assert index.leaked_fraction(train) == 1.0
    assert not index.contains(train[:31]) and index.leaked_fraction(train[-31:]) == 0.0


def test_finds_a_planted_32_byte_overlap_but_not_31_bytes():
    train = random_bytes(200_000, seed=2)
    unrelated = random_bytes(600, seed=3)
    index = WindowIndex(train)
    assert not index.contains(unrelated)
    planted = unrelated[:300] + train[123_456:123_456 + 32] + unrelated[300:]
    assert index.contains(planted)
    assert index.leaked_fraction(planted) == pytest.approx(1 / (len(planted) - 31))
    assert np.flatnonzero(index.matches(planted)).tolist() == [300]
    near_miss = unrelated[:300] + train[123_456:123_456 + 31] + unrelated[300:]
    assert not index.contains(near_miss)
    assert index.leaked_fraction(near_miss) == 0.0


def test_natural_text_agrees_with_brute_force():
    text = c3.corpus.default_text().encode("utf-8")
    train, held_out = text[:200_000], text[200_000:230_000]
    index = WindowIndex(train)
    passages = [held_out[start:start + 256] for start in range(0, 30_000 - 256, 1000)]
    found = [index.contains(passage) for passage in passages]
    assert found == [bool(brute_force(train, passage, 32).any()) for passage in passages]
    assert any(found) and not all(found)  # the documentation repeats itself, but not everywhere


@pytest.mark.parametrize("forced", ["constant", "modulus 3"])
def test_hash_collisions_never_report_leakage(monkeypatch, forced):
    original = leakage._window_hashes

    def colliding(data, window):
        hashes = original(data, window)
        return np.zeros_like(hashes) if forced == "constant" else hashes % np.uint64(3)

    monkeypatch.setattr(leakage, "_window_hashes", colliding)
    for seed in range(4):
        train = random_bytes(400, seed=10 + seed, alphabet=b"ab")
        passage = random_bytes(150, seed=20 + seed, alphabet=b"ab")
        index = WindowIndex(train, window=9)
        np.testing.assert_array_equal(index.matches(passage), brute_force(train, passage, 9))
    train, unrelated = random_bytes(3000, seed=5), random_bytes(400, seed=6)
    index = WindowIndex(train)
    assert not index.contains(unrelated)  # every window collides, none matches
    assert index.contains(unrelated[:100] + train[1000:1032] + unrelated[100:])


def test_rejects_what_is_not_bytes():
    with pytest.raises(c3.C3ValueError):
        WindowIndex([1, 2, 3])
    with pytest.raises(c3.C3ValueError):
        WindowIndex(b"abc", window=0)
    assert WindowIndex("héllo wörld", window=4).contains("wörld".encode("utf-8"))  # str reads as UTF-8


def test_every_byte_of_a_window_reaches_the_hash_bits_the_index_keeps():
    # The index keeps the high 40 bits (or more) of each hash; windows that differ in one byte, wherever it is,
    # must differ there too, or common text would pile up candidates to compare.
    for where in (0, 15, 31):
        windows = np.tile(np.frombuffer(b"x" * 32, np.uint8), (256, 1))
        windows[:, where] = np.arange(256)
        hashes = np.array([leakage._window_hashes(row, 32)[0] for row in windows], dtype=np.uint64)
        assert np.unique(hashes >> np.uint64(24)).size == 256
