"""The hand-kept C++ reference (docs/cpp/*.md) covers every public header and names only what the headers define."""
import glob
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def documented_headers() -> dict:
    """{header path under include/: [names]} from the '## `c3/...hpp`' sections and their 'Names:' paragraphs."""
    sections = {}
    for page in sorted(glob.glob(os.path.join(ROOT, "docs", "cpp", "*.md"))):
        text = open(page, encoding="utf-8").read()
        for match in re.finditer(r"^## `(c3/[\w/]+\.hpp)`\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S):
            names = re.search(r"^Names: (.*?)(?:\n\n|\Z)", match.group(2), flags=re.M | re.S)
            assert names, f"{page}: {match.group(1)} has no 'Names:' paragraph"
            assert match.group(1) not in sections, f"{match.group(1)} is documented twice"
            sections[match.group(1)] = re.findall(r"`(\w+)`", names.group(1))
    return sections


def test_every_public_header_is_documented():
    headers = {os.path.relpath(path, os.path.join(ROOT, "include")).replace(os.sep, "/")
               for path in glob.glob(os.path.join(ROOT, "include", "c3", "**", "*.hpp"), recursive=True)}
    documented = documented_headers()
    assert sorted(headers - set(documented)) == [], "headers missing from docs/cpp"
    assert sorted(set(documented) - headers) == [], "docs/cpp names headers that do not exist"


def test_documented_names_exist_in_their_headers():
    missing = []
    for header, names in documented_headers().items():
        assert names, header
        source = open(os.path.join(ROOT, "include", header), encoding="utf-8").read()
        missing += [f"{header}: {name}" for name in names if not re.search(rf"\b{name}\b", source)]
    assert missing == []
