"""Tokenizer helpers in Python: extra special tokens on top of a C++ tokenizer (BPE or byte-level)."""
from __future__ import annotations

import re

import numpy as np

from . import _core


def has_token(tokenizer, name: str) -> bool:
    try:
        tokenizer.token_to_id(name)
        return True
    except _core.TokenizerError:
        return False


class WithSpecialTokens:
    """A tokenizer plus special tokens it lacks (C3's <img>, </img>, <imgpad> for a pretrained tokenizer).

    The new tokens get ids from `first_id` on; text is split on them, the pieces go to the base tokenizer.
    """

    def __init__(self, base, names, first_id: int):
        self.base = base
        self.extra = {name: first_id + index for index, name in enumerate(names)}
        self.names = {token_id: name for name, token_id in self.extra.items()}
        self.vocab_size = first_id + len(names)
        self._pattern = re.compile("(" + "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True)) + ")")

    def token_to_id(self, name: str) -> int:
        return self.extra[name] if name in self.extra else int(self.base.token_to_id(name))

    def id_to_token(self, token_id: int) -> str:
        return self.names.get(int(token_id)) or self.base.id_to_token(int(token_id))

    def encode(self, text: str) -> np.ndarray:
        ids = []
        for piece in self._pattern.split(text):
            if not piece:
                continue
            if piece in self.extra:
                ids.append(self.extra[piece])
            else:
                ids.extend(int(i) for i in self.base.encode(piece))
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """The text of `ids`; skip_special_tokens leaves out the added tokens and the base's own special ones."""
        text, run = [], []

        def flush():
            if run:
                text.append(self.base.decode(np.asarray(run, dtype=np.int32), skip_special_tokens=skip_special_tokens))
                run.clear()

        for token_id in (int(i) for i in ids):
            if token_id in self.names:
                flush()
                if not skip_special_tokens:
                    text.append(self.names[token_id])
            else:
                run.append(token_id)
        flush()
        return "".join(text)
