"""The held-out design by document (c3.corpus.documents, document_splits, heldout_passages): disjoint splits, passages
inside single documents that never overlap each other, and no 32-byte window shared with the training text."""
import numpy as np
import pytest

import c3
from c3 import corpus


def joined_bytes(documents) -> bytes:
    return "\n\n".join(text for _, text in documents).encode("utf-8")


def test_documents_are_the_pydoc_topics():
    import pydoc_data.topics

    documents = corpus.documents()
    assert [name for name, _ in documents] == sorted(pydoc_data.topics.topics)
    assert "\n\n".join(text for _, text in documents) == corpus.default_text()
    assert corpus.documents({"b": "two", "a": "one"}) == [("a", "one"), ("b", "two")]
    assert corpus.documents("plain") == [("text", "plain")]
    with pytest.raises(c3.C3ValueError):
        corpus.documents([("a", "x"), ("a", "y")])


def test_splits_are_disjoint_cover_every_document_and_follow_the_seed():
    documents = corpus.documents()
    splits = corpus.document_splits(documents, seed=0)
    names = {key: [name for name, _ in value] for key, value in splits.items()}
    assert set(names) == {"train", "dev", "test"}
    everything = names["train"] + names["dev"] + names["test"]
    assert sorted(everything) == sorted(name for name, _ in documents)  # covers, each once
    assert len(set(everything)) == len(everything)  # disjoint
    assert len(names["train"]) == round(0.8 * len(documents)) and len(names["dev"]) == round(0.1 * len(documents))
    assert corpus.document_splits(documents, seed=0) == splits
    assert corpus.document_splits(documents, seed=1) != splits
    # Each split keeps the documents' order.
    order = {name: position for position, (name, _) in enumerate(documents)}
    assert all(sorted(part, key=order.get) == part for part in names.values())


@pytest.mark.parametrize("count", [3, 4, 10])
def test_small_corpora_give_every_requested_split_a_document(count):
    documents = [(f"d{i}", "x" * 10) for i in range(count)]
    splits = corpus.document_splits(documents, seed=0)
    assert all(len(part) >= 1 for part in splits.values())
    assert sum(len(part) for part in splits.values()) == count
    with pytest.raises(c3.C3ValueError):
        corpus.document_splits(documents, fractions=(0.5, 0.5, 0.5))


def test_heldout_passages_do_not_overlap_stay_in_one_document_and_share_no_window_with_training():
    documents = corpus.documents()
    splits = corpus.document_splits(documents, seed=0)
    train = joined_bytes(splits["train"])
    held_out = splits["test"]
    result = corpus.heldout_passages(held_out, train, length=128, count=40, seed=0)
    passages, document_ids, offsets, report = result
    assert len(passages) == len(document_ids) == len(offsets) == report["returned"] == min(40, report["clean"])
    spans = set()
    for passage, document_id, offset in zip(passages, document_ids.tolist(), offsets.tolist()):
        document = held_out[document_id][1].encode("utf-8")
        assert len(passage) == 128 and offset % 128 == 0
        assert offset + 128 <= len(document) and document[offset:offset + 128] == passage  # inside one document
        spans.add((document_id, offset))
        assert not any(passage[i:i + 32] in train for i in range(128 - 32 + 1))  # brute force: no leaked window
    assert len(spans) == len(passages)  # distinct, and with offsets at multiples of 128, no shared byte
    assert report["available"] == sum(len(text.encode("utf-8")) // 128 for _, text in held_out)
    assert report["leaked"] + report["clean"] == report["available"]
    assert report["leaked"] > 0  # the topics repeat boilerplate, so the filter has work to do
    assert list(zip(document_ids.tolist(), offsets.tolist())) == sorted(spans)  # document order
    again = corpus.heldout_passages(held_out, train, length=128, count=40, seed=0)
    assert again.passages == passages and np.array_equal(again.offsets, offsets)
    other = corpus.heldout_passages(held_out, train, length=128, count=40, seed=1)
    assert report["clean"] > 40 and other.passages != passages  # the seed picks which clean passages


def test_heldout_passages_report_a_shortfall_and_fail_when_nothing_is_clean():
    held_out = [("one", "alpha beta gamma delta " * 20), ("two", "a fresh sentence that appears once, " * 3)]
    train = ("alpha beta gamma delta " * 4).encode("utf-8")
    result = corpus.heldout_passages(held_out, train, length=64, count=50, seed=0)
    assert result.report["short"] and result.report["returned"] == result.report["clean"] < 50
    assert result.report["note"]
    assert set(result.document_ids.tolist()) == {1}  # every passage of the repeated document leaks
    with pytest.raises(c3.C3ValueError):
        corpus.heldout_passages(held_out[:1], train, length=64, count=5, seed=0)
    with pytest.raises(c3.C3ValueError):
        corpus.heldout_passages(held_out, train, length=16, count=5, seed=0)  # shorter than the window


def test_heldout_passages_accept_a_prebuilt_index():
    from c3.leakage import WindowIndex

    splits = corpus.document_splits(corpus.documents(), seed=0)
    train = joined_bytes(splits["train"])
    built = corpus.heldout_passages(splits["dev"], train, length=96, count=20, seed=3)
    reused = corpus.heldout_passages(splits["dev"], WindowIndex(train), length=96, count=20, seed=3)
    assert built.passages == reused.passages and built.report == reused.report


def test_a_leaked_window_at_either_edge_of_a_passage_drops_that_passage_only():
    rng = np.random.default_rng(0)

    def letters(size):
        return "".join(chr(ord("a") + value) for value in rng.integers(0, 26, size))

    train = letters(5000)
    length = 100
    # Document 0: passage 0 ends with 32 training bytes; document 1: passage 1 starts with them.
    edge_end = letters(length - 32) + train[1000:1032] + letters(2 * length)
    edge_start = letters(length) + train[3000:3032] + letters(2 * length - 32)
    held_out = [("end", edge_end), ("start", edge_start)]
    result = corpus.heldout_passages(held_out, train.encode("ascii"), length=length, count=10, seed=0)
    kept = list(zip(result.document_ids.tolist(), result.offsets.tolist()))
    assert kept == [(0, 100), (0, 200), (1, 0), (1, 200)]
    assert result.report["leaked"] == 2 and result.report["available"] == 6
    # One byte short of a window at either edge leaks nothing.
    near = [("end", edge_end[:length - 1] + "#" + edge_end[length:]),
            ("start", edge_start[:length] + "#" + edge_start[length + 1:])]
    assert corpus.heldout_passages(near, train.encode("ascii"), length=length, count=10, seed=0).report["leaked"] == 0
