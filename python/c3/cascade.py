"""c3.Cascade: text in, latents out, text back. The C++ CascadeModel does the work; this layer tokenizes.

Contexts are left-padded (every row's query block sits at the end, so the queries see the whole text) and
answers are right-padded and end with the stop token.
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple, Optional, Sequence

import numpy as np

from . import _core
from .jsonfiles import read_json_object

LATENT_START, LATENT_END, LATENT_PAD = "<img>", "</img>", "<imgpad>"
# The official decoder prompt ("mpt" chat layout); {latents} stands for <img> + N x <imgpad> + </img>.
OFFICIAL_SYSTEM = "You should follow the instructions carefully and explain your answers in detail."
OFFICIAL_PROMPT = ("<|im_start|>system\n" + OFFICIAL_SYSTEM + "<|im_end|><|im_start|>user\n{latents}\n"
                   "Repeat the text: <|im_end|><|im_start|>assistant\n")


# Tokens a reconstruction may write past the source's length: the stop token, and a few more for an output that
# runs a little long (an inserted token shifts the rest), so that it is cut by the stop token rather than the cap.
RECONSTRUCTION_MARGIN = 8
# Positions a from-scratch model gets beyond its context and latent block: room for the reconstruction margin and
# for texts somewhat longer than the training passages.
SCRATCH_POSITION_ROOM = 64


def scratch_model_config(shape: dict, context_tokens: int, n_latents: int) -> dict:
    """A Llama configuration for a from-scratch encoder or decoder that reads contexts of `context_tokens` tokens
    into `n_latents` latents. `shape` gives hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads,
    and optionally rope_theta, the rotary base (default 10^4)."""
    return dict(dict(rope_theta=10000.0), **shape, model_type="llama", attention_bias=False,
                tie_word_embeddings=True,
                max_position_embeddings=int(context_tokens) + int(n_latents) + SCRATCH_POSITION_ROOM)


def byte_tokenizer():
    """The byte-level tokenizer for from-scratch experiments (bytes 0-255, then the special tokens)."""
    return _core.ByteTokenizer()


def _split_prompt(tokenizer, prompt: str):
    if "{latents}" not in prompt:
        raise ValueError("the prompt template must contain '{latents}' where the latent block goes")
    before, after = prompt.split("{latents}", 1)
    encode = lambda text: [int(i) for i in tokenizer.encode(text)] if text else []  # noqa: E731
    return encode(before), encode(after)


def _rows(texts_or_ids) -> list:
    """A batch as a list of rows. One string is refused (list() would split it into characters), and so is an empty
    batch."""
    if isinstance(texts_or_ids, (str, bytes)):
        raise TypeError("pass a list of texts, not one string")
    rows = list(texts_or_ids)
    if not rows:
        raise _core.C3ValueError("the batch is empty: pass at least one text or row of token ids")
    return rows


def _source_token_counts(source_tokens, rows: int) -> np.ndarray:
    """source_tokens as int64 token counts, one per row of latents: another length is a c3.ShapeError, and
    anything but non-negative whole numbers a c3.C3ValueError."""
    try:
        counts = np.asarray(source_tokens)
    except (TypeError, ValueError):
        counts = np.asarray(None)
    limit = np.iinfo(np.int32).max
    wrong = f"source_tokens must be token counts, integers from 0 to {limit}"
    if counts.dtype.kind not in "iuf":
        raise _core.C3ValueError(f"{wrong}, got an array of {counts.dtype}")
    if counts.ndim != 1 or len(counts) != rows:
        raise _core.ShapeError(f"source_tokens: expected {rows} counts (one per row of latents), got shape "
                               f"{list(counts.shape)}")
    bad = ~np.isfinite(counts) | (counts < 0) | (counts > limit) | (counts != np.floor(counts))
    if np.any(bad):
        row = int(np.argmax(bad))
        raise _core.C3ValueError(f"{wrong}, got {counts[row].item()!r} at row {row}")
    return counts.astype(np.int64)


class LongLatents(NamedTuple):
    """One document's chunked latents (Cascade.compress_long): latents [K, N, d_dec] float32, one block of N per
    chunk; offsets [K] and lengths [K] int64, each chunk's first token in the document and its token count;
    source_tokens, the document's token count (the sum of lengths). An empty document has K = 0. Save them with
    save_latents(path, long.latents, cascade, chunk_offsets=long.offsets, chunk_lengths=long.lengths)."""
    latents: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    source_tokens: int


def _chunk_positions(values, name: str) -> np.ndarray:
    """Chunk offsets or lengths as int64 (C++ checks what they must be); anything but a list of integers is a
    c3.C3ValueError."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise _core.ShapeError(f"{name} must be a list of integers, one per row of latents, got shape "
                               f"{list(array.shape)}")
    if array.size and array.dtype.kind not in "iu":
        raise _core.C3ValueError(f"{name} must be integers, got an array of {array.dtype}")
    return array.astype(np.int64)


def _stop_token(tokenizer) -> int:
    for name in ("<|im_end|>", "<eos>", "<|endoftext|>", "</s>"):
        try:
            return int(tokenizer.token_to_id(name))
        except Exception:  # noqa: BLE001 - this tokenizer has no such token; try the next name
            continue
    raise _core.TokenizerError("the tokenizer has no stop token (<|im_end|>, <eos>, <|endoftext|> or </s>)")


def _padded(rows, left: bool):
    """(ids [B, L] int32, mask [B, L] uint8) of token rows padded with zeros to the longest, on the left (contexts,
    task suffixes) or the right (answers)."""
    length = max(len(row) for row in rows)
    ids = np.zeros((len(rows), length), dtype=np.int32)
    mask = np.zeros((len(rows), length), dtype=np.uint8)
    for index, row in enumerate(rows):
        where = slice(length - len(row), length) if left else slice(0, len(row))
        ids[index, where], mask[index, where] = row, 1
    return ids, mask


def _task(spec) -> tuple:
    """(name, chunk) of a task: "continue", or ("chunk", k) with k a non-negative integer; anything else is a
    c3.C3ValueError."""
    if isinstance(spec, str):
        if spec == "chunk":
            raise _core.C3ValueError('the chunk task needs its chunk: ("chunk", k)')
        return spec, 0
    if (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], (int, np.integer))
            and not isinstance(spec[1], bool) and int(spec[1]) >= 0):
        return str(spec[0]), int(spec[1])
    raise _core.C3ValueError(f'a task is "continue" or ("chunk", k) with k >= 0, got {spec!r}')


def _check_addresses(tasks, blocks: int) -> None:
    """Every ("chunk", k) of `tasks` addresses one of a document's `blocks` chunks, or a c3.C3ValueError."""
    for task in tasks:
        name, index = _task(task)
        if name == "chunk" and index >= blocks:
            raise _core.C3ValueError(f"task {task!r} addresses chunk {index} of a document of {blocks}")


class Cascade:
    """A C3 cascade with its tokenizer."""

    def __init__(self, model: "_core.CascadeModel", tokenizer, max_context_tokens: Optional[int] = None,
                 tokenizer_file: Optional[str] = None):
        self.model = model
        self.tokenizer = tokenizer
        # The tokenizer.json this cascade's tokenizer was read from, if any: save() copies it along.
        self.tokenizer_file = tokenizer_file
        config = model.config
        self.num_latents = int(config["num_latents"])
        self.stop_token = int(config["stop_tokens"][0]) if config["stop_tokens"] else _stop_token(tokenizer)
        limit = model.max_context_length
        self.max_context_tokens = min(max_context_tokens or limit, limit)

    @property
    def block_width(self) -> int:
        """Rows between <img> and </img> for this cascade's method: N, 0 for no_context, and the longest context the
        encoder reads for full_context (whose block is as wide as its context)."""
        return self.model.block_width(self.max_context_tokens)

    def prompt_length_for(self, block_width: int) -> int:
        """Tokens of the decoder prompt around a latent block of `block_width` rows: prefix, <img>, the block,
        </img>, suffix."""
        return self.model.prompt_length(int(block_width))

    @property
    def max_new_tokens_limit(self) -> int:
        """The most tokens a reconstruction can write after a block of block_width rows: the decoder's positions
        left after its prompt."""
        return self.max_new_tokens_limit_for(self.block_width)

    def max_new_tokens_limit_for(self, block_width: int) -> int:
        return int(self.model.config["decoder"]["max_position_embeddings"]) - self.prompt_length_for(block_width)

    def default_max_new_tokens(self, source_tokens=None) -> int:
        """The reconstruction length to allow: the longest source (token counts, as load_latents returns them;
        without them, the longest context the encoder reads) plus RECONSTRUCTION_MARGIN, at most
        max_new_tokens_limit."""
        longest = int(np.max(source_tokens)) if source_tokens is not None and len(source_tokens) else \
            self.max_context_tokens
        return max(0, min(self.max_new_tokens_limit, longest + RECONSTRUCTION_MARGIN))

    def check_max_new_tokens(self, max_new_tokens: int, block_width: Optional[int] = None) -> int:
        """max_new_tokens itself, or a C3ValueError that names the limit after a block of `block_width` rows
        (default: block_width)."""
        width = self.block_width if block_width is None else int(block_width)
        return self._fits_after(max_new_tokens, self.prompt_length_for(width), f"around a latent block of {width} rows")

    def _fits_after(self, max_new_tokens: int, prompt: int, what: str) -> int:
        """max_new_tokens itself when it is at least 1 and fits the decoder's positions after a prompt of `prompt`
        tokens (`what` says what the prompt holds), else a C3ValueError naming the limit."""
        limit = int(self.model.config["decoder"]["max_position_embeddings"]) - int(prompt)
        if int(max_new_tokens) > limit or limit < 1:
            raise _core.C3ValueError(
                f"max_new_tokens {int(max_new_tokens)} does not fit: the decoder's max_position_embeddings of "
                f"{self.model.config['decoder']['max_position_embeddings']} minus its prompt of {prompt} tokens "
                f"({what}) leaves at most {max(limit, 0)}")
        if int(max_new_tokens) < 1:
            raise _core.C3ValueError(f"max_new_tokens must be at least 1, got {int(max_new_tokens)}")
        return int(max_new_tokens)

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def new(cls, encoder_config: dict, decoder_config: dict, n_latents: int, tokenizer=None,
            projector: str = "linear", prompt: str = "{latents}", seed: int = 0, method: str = "c3") -> "Cascade":
        """A cascade of two freshly initialised transformers (seeded). Vocabulary sizes default to the tokenizer's.

        method: 'c3', or a baseline with the same decoder and latent budget N: 'mean_pool' (means of N windows of
        the encoder's token embeddings, then the projector), 'mean_pool_hidden' (the same windows over the encoder's
        final hidden states of the context alone), 'hierarchical' (the convolutional encoder of Lee et al. on the
        token embeddings, include/c3/cascade/hierarchical.hpp), 'truncate' / 'truncate_last' (the decoder reads the
        first / last N context tokens), 'no_context' (the decoder alone), 'full_context' (the whole context)."""
        tokenizer = tokenizer or byte_tokenizer()
        encoder_config = dict(encoder_config, vocab_size=encoder_config.get("vocab_size", tokenizer.vocab_size))
        decoder_config = dict(decoder_config, vocab_size=decoder_config.get("vocab_size", tokenizer.vocab_size))
        config = cls._config(tokenizer, encoder_config, decoder_config, n_latents, projector, prompt)
        config["method"] = method
        return cls(_core.CascadeModel(config, seed=seed), tokenizer)

    @property
    def method(self) -> str:
        """'c3' or the baseline this cascade is (see Cascade.new)."""
        return str(self.model.config["method"])

    @classmethod
    def from_pretrained(cls, encoder_dir: str, decoder_dir: str, n_latents: int, tokenizer=None,
                        projector: str = "linear", prompt: str = "{latents}", seed: int = 0,
                        method: str = "c3") -> "Cascade":
        """C3 (or a baseline, `method` as in Cascade.new) from two pretrained Hugging Face models; Q, the projector
        and a baseline's own parts start random (seeded).

        The tokenizer defaults to the decoder directory's tokenizer.json. The special tokens C3 needs (<img>,
        </img>, <imgpad>) are added when the tokenizer lacks them, and both models' vocabularies grow to match
        (new rows start at the mean embedding).
        """
        from .text import WithSpecialTokens, has_token

        tokenizer_file = None
        if tokenizer is None:
            tokenizer_file = os.path.join(decoder_dir, "tokenizer.json")
            tokenizer = _core.BpeTokenizer.from_file(tokenizer_file)
        encoder = _core.Transformer.load(encoder_dir)
        decoder = _core.Transformer.load(decoder_dir)
        missing = [name for name in (LATENT_START, LATENT_END, LATENT_PAD) if not has_token(tokenizer, name)]
        if missing:
            first = max(tokenizer.vocab_size, encoder.config["vocab_size"], decoder.config["vocab_size"])
            tokenizer = WithSpecialTokens(tokenizer, missing, first)
            tokenizer_file = None  # the file lacks the added tokens
        for model in (encoder, decoder):
            if model.config["vocab_size"] < tokenizer.vocab_size:
                model.resize_vocabulary(tokenizer.vocab_size, seed=seed)
        config = cls._config(tokenizer, encoder.config, decoder.config, n_latents, projector, prompt)
        for key in ("encoder", "decoder"):
            config.pop(key)
        config["method"] = method
        return cls(_core.CascadeModel.from_models(encoder, decoder, config, seed=seed), tokenizer,
                   tokenizer_file=tokenizer_file)

    @classmethod
    def load(cls, path: str, tokenizer=None, prompt: str = OFFICIAL_PROMPT, storage: str = "float32") -> "Cascade":
        """Load a C3 directory in the official layout (decoder + llm1/ encoder).

        Directories written by c3 carry their special tokens and prompt; for official checkpoints they come from
        the tokenizer (tokenizer.json in the directory, or the one given) and the official prompt.
        storage='bf16' keeps encoder and decoder matrices in bfloat16 (inference only).
        """
        config = read_json_object(os.path.join(path, "config.json"))
        tokenizer_file = None
        if tokenizer is None:
            tokenizer_path = os.path.join(path, "tokenizer.json")
            if os.path.exists(tokenizer_path):
                tokenizer, tokenizer_file = _core.BpeTokenizer.from_file(tokenizer_path), tokenizer_path
            else:
                tokenizer = byte_tokenizer()
        defaults = {}
        if "c3" not in config:
            prefix, suffix = _split_prompt(tokenizer, prompt)
            defaults = dict(prompt_prefix=prefix, prompt_suffix=suffix, stop_tokens=[_stop_token(tokenizer)],
                            latent_start_token=int(tokenizer.token_to_id(LATENT_START)),
                            latent_end_token=int(tokenizer.token_to_id(LATENT_END)),
                            latent_pad_token=int(tokenizer.token_to_id(LATENT_PAD)))
        return cls(_core.CascadeModel.load(path, defaults, storage), tokenizer, tokenizer_file=tokenizer_file)

    @staticmethod
    def _config(tokenizer, encoder_config, decoder_config, n_latents, projector, prompt) -> dict:
        prefix, suffix = _split_prompt(tokenizer, prompt)
        return dict(encoder=dict(encoder_config), decoder=dict(decoder_config), num_latents=int(n_latents),
                    projector=projector, latent_start_token=int(tokenizer.token_to_id(LATENT_START)),
                    latent_end_token=int(tokenizer.token_to_id(LATENT_END)),
                    latent_pad_token=int(tokenizer.token_to_id(LATENT_PAD)), prompt_prefix=prefix,
                    prompt_suffix=suffix, stop_tokens=[_stop_token(tokenizer)])

    def save(self, path: str, dtype: str = "F32") -> None:
        """Save in the official C3 layout (plus c3's own keys), loadable by Cascade.load. The tokenizer.json the
        tokenizer came from is copied along, so that the reloaded cascade tokenizes the same way."""
        extra = {}
        if self.tokenizer_file:
            target = os.path.join(str(path), "tokenizer.json")
            if not (os.path.exists(target) and os.path.samefile(self.tokenizer_file, target)):
                extra["tokenizer.json"] = str(self.tokenizer_file)  # copied in before the directory swap
        self.model.save(str(path), dtype, extra_files=extra)

    # ---- text <-> ids -------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list:
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not one string")
        return [np.asarray(self.tokenizer.encode(text), dtype=np.int32) for text in texts]

    def context_batch(self, texts_or_ids, truncate: bool = False):
        """(ids [B, L] left-padded, mask [B, L]) for the encoder. Too-long contexts raise, or are cut if asked."""
        texts_or_ids = _rows(texts_or_ids)
        rows = self.tokenize(texts_or_ids) if isinstance(texts_or_ids[0], str) else [np.asarray(r) for r in texts_or_ids]
        for index, row in enumerate(rows):
            if len(row) == 0:
                raise _core.C3ValueError(f"context {index} is empty")
            if len(row) > self.max_context_tokens:
                if not truncate:
                    raise _core.C3ValueError(
                        f"context {index} has {len(row)} tokens, more than the encoder's {self.max_context_tokens} "
                        f"(max_position_embeddings minus the latent block); pass truncate=True to cut it")
                rows[index] = row[:self.max_context_tokens]
        return _padded(rows, left=True)

    def answer_batch(self, texts_or_ids, add_stop: bool = True):
        """(ids [B, L] right-padded with the stop token appended, mask [B, L]) for the decoder."""
        texts_or_ids = _rows(texts_or_ids)
        rows = self.tokenize(texts_or_ids) if isinstance(texts_or_ids[0], str) else [np.asarray(r) for r in texts_or_ids]
        if add_stop:
            rows = [np.append(row, self.stop_token) for row in rows]
        return _padded(rows, left=False)

    def decode(self, tokens, lengths=None) -> list:
        texts = []
        for index, row in enumerate(np.asarray(tokens)):
            row = row[: int(lengths[index])] if lengths is not None else row
            row = [int(t) for t in row if int(t) != self.stop_token]
            texts.append(self.tokenizer.decode(np.asarray(row, dtype=np.int32)))
        return texts

    # ---- the research API ---------------------------------------------------------------------------------
    def compress(self, texts, truncate: bool = False) -> np.ndarray:
        """Texts (or token-id rows) -> latents [B, N, d_dec] (float32)."""
        ids, mask = self.context_batch(_rows(texts), truncate=truncate)
        return self.model.compress(ids, mask)

    def compress_long(self, texts, chunk_tokens: int, batch_chunks: int = 32) -> list:
        """Texts (or token-id rows) of any length -> one LongLatents per text: its tokens cut into consecutive
        chunks of chunk_tokens tokens (the last one shorter), each compressed into N latents exactly as compress
        compresses that chunk alone. The chunks of all texts run in batches of at most batch_chunks, so memory is
        one batch's activations however long the texts; only the latents, K x N x d_dec per text, grow with them
        (include/c3/cascade/chunks.hpp). chunk_tokens runs from 1 to max_context_tokens. Only methods whose latent
        block is N rows wide chunk: c3 and the baselines but no_context and full_context (a C3ValueError)."""
        rows = _rows(texts)
        rows = self.tokenize(rows) if isinstance(rows[0], str) else [np.asarray(row) for row in rows]
        chunk_tokens, batch_chunks = int(chunk_tokens), int(batch_chunks)
        if not 1 <= chunk_tokens <= self.max_context_tokens:
            raise _core.C3ValueError(f"chunk_tokens must be between 1 and {self.max_context_tokens} (the longest "
                                     f"context this cascade's encoder reads), got {chunk_tokens}")
        if batch_chunks < 1:
            raise _core.C3ValueError(f"batch_chunks must be at least 1, got {batch_chunks}")
        for index, row in enumerate(rows):
            if row.ndim != 1:
                raise _core.ShapeError(f"text {index}: token ids must be one row, got shape {list(row.shape)}")
        rows = [row.astype(np.int32) if row.size == 0 else row for row in rows]  # [] is a float array
        results = self.model.compress_chunks(rows, chunk_tokens, batch_chunks)
        return [LongLatents(latents, offsets, lengths, int(len(row)))
                for row, (latents, offsets, lengths) in zip(rows, results)]

    def encode(self, texts, truncate: bool = False):
        """(latents [B, W, d_dec], latent mask [B, W] or None): as compress, with the mask that full_context
        needs for contexts of unequal length (pass it to score and reconstruct as latent_mask)."""
        ids, mask = self.context_batch(_rows(texts), truncate=truncate)
        return self.model.compress_with_mask(ids, mask)

    def reconstruct(self, latents: np.ndarray, max_new_tokens: Optional[int] = None, return_ids: bool = False,
                    source_tokens=None, **options):
        """Latents -> texts, greedy by default (sample=True, temperature, top_k, top_p, no_repeat_ngram_size...).

        max_new_tokens defaults to default_max_new_tokens(source_tokens): source_tokens are the texts' token
        counts (load_latents gives them as metadata["source_tokens"]). A value that does not fit after the given
        latent block (its width: N, 0 for no_context, a context's for full_context) raises.
        """
        if source_tokens is not None:
            source_tokens = _source_token_counts(source_tokens, int(np.shape(latents)[0]))
        if max_new_tokens is None:
            max_new_tokens = self.default_max_new_tokens(source_tokens)
        width = int(np.shape(latents)[1])  # the block given: N, 0 (no_context) or a context's width
        tokens, lengths = self.model.reconstruct(
            latents, max_new_tokens=self.check_max_new_tokens(max_new_tokens, width), **options)
        if return_ids:
            return [row[:length][row[:length] != self.stop_token] for row, length in zip(tokens, lengths)]
        return self.decode(tokens, lengths)

    def score(self, latents: np.ndarray, texts, latent_mask=None, task: Optional[str] = None) -> dict:
        """Teacher-forced scores of the reference texts given latents: per-position log_probability, rank,
        predicted, correct, valid [B, L] (the stop token excluded). task "continue": the texts are what follows
        each context, asked for by the task's suffix (task_ids) in place of the prompt's."""
        ids, mask = self.answer_batch(_rows(texts), add_stop=False)
        task_arguments = {}
        if task is not None:
            task_arguments = dict(task=np.tile(self.task_ids(task), (len(ids), 1)))  # one task for every row
        scores = self.model.score(latents, ids, mask, latent_mask=latent_mask, **task_arguments)
        scores["correct"] = (scores["rank"] == 0) & scores["valid"]
        scores["reference"] = ids
        return scores

    # ---- documents: a decoder prompt of many blocks and a task -------------------------------------------------
    def task_ids(self, task: str, chunk: Optional[int] = None) -> np.ndarray:
        """Token ids [S] of a task's decoder suffix (the text is C++'s, c3._core.task_prompt): "chunk" asks for the
        text of chunk `chunk` (0-based) of a document's blocks, addressed reconstruction; "continue" for the text
        that follows the document."""
        name, index = _task(task if chunk is None else (task, chunk))
        return np.asarray(self.tokenizer.encode(_core.task_prompt(name, index)), dtype=np.int32)

    def task_batch(self, tasks):
        """(ids [B, S] left-padded, mask [B, S]) of the tasks' suffixes; each task is "continue" or ("chunk", k)."""
        return _padded([self.task_ids(task) for task in _rows(tasks)], left=True)

    def _document_rows(self, document: "LongLatents", tasks, batch_size: int):
        """(the document's blocks as [1, K * N, d_dec], K, the task batches of at most batch_size rows)."""
        latents = np.asarray(document.latents, dtype=np.float32)
        if latents.ndim != 3 or latents.shape[0] < 1:
            raise _core.ShapeError(f"a document's latents must be [K >= 1, N, d_dec], got shape {list(latents.shape)}")
        if int(batch_size) < 1:
            raise _core.C3ValueError(f"batch_size must be at least 1, got {batch_size}")
        blocks = latents.shape[0]
        tasks = _rows(tasks)
        _check_addresses(tasks, blocks)
        joined = latents.reshape(1, blocks * latents.shape[1], latents.shape[2])
        return joined, blocks, [tasks[i:i + int(batch_size)] for i in range(0, len(tasks), int(batch_size))]

    def document_score(self, document: "LongLatents", texts, tasks, batch_size: int = 16) -> dict:
        """Teacher-forced scores of reference texts, one per task, given a document's blocks (Cascade.compress_long):
        the decoder reads all K blocks, each in its own <img> ... </img>, then the task's suffix; tasks are
        "continue" or ("chunk", k). Returns what score returns, [B, L]."""
        joined, blocks, parts = self._document_rows(document, tasks, batch_size)
        texts = _rows(texts)
        if len(texts) != sum(len(part) for part in parts):
            raise _core.C3ValueError(f"{len(texts)} texts for {sum(len(part) for part in parts)} tasks")
        ids, mask = self.answer_batch(texts, add_stop=False)
        pieces, start = [], 0
        for part in parts:
            task, task_mask = self.task_batch(part)
            rows = slice(start, start + len(part))
            pieces.append(self.model.score(np.repeat(joined, len(part), axis=0), ids[rows], mask[rows],
                                           blocks=blocks, task=task, task_mask=task_mask))
            start += len(part)
        scores = {name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]}
        scores["correct"] = (scores["rank"] == 0) & scores["valid"]
        scores["reference"] = ids
        return scores

    def document_reconstruct(self, document: "LongLatents", tasks, max_new_tokens: Optional[int] = None,
                             return_ids: bool = False, batch_size: int = 16, **options) -> list:
        """Each task's answer (greedy by default; options as in reconstruct) given a document's blocks: the text of
        chunk k for ("chunk", k), the text that follows the document for "continue". max_new_tokens defaults to the
        longest chunk plus RECONSTRUCTION_MARGIN, at most what the decoder's positions leave after the prompt."""
        joined, blocks, parts = self._document_rows(document, tasks, batch_size)
        width = joined.shape[1] // blocks
        longest_task = max(len(self.task_ids(task)) for part in parts for task in part)
        prompt = self.model.prompt_length(width, blocks, longest_task)
        if max_new_tokens is None:
            longest = int(np.max(document.lengths)) if len(document.lengths) else self.max_context_tokens
            limit = int(self.model.config["decoder"]["max_position_embeddings"]) - prompt
            max_new_tokens = max(1, min(limit, longest + RECONSTRUCTION_MARGIN))
        max_new_tokens = self._fits_after(max_new_tokens, prompt, f"{blocks} blocks of {width} rows and the task")
        texts = []
        for part in parts:
            task, task_mask = self.task_batch(part)
            tokens, lengths = self.model.reconstruct(np.repeat(joined, len(part), axis=0),
                                                     max_new_tokens=int(max_new_tokens), blocks=blocks, task=task,
                                                     task_mask=task_mask, **options)
            if return_ids:
                texts += [row[:length][row[:length] != self.stop_token] for row, length in zip(tokens, lengths)]
            else:
                texts += self.decode(tokens, lengths)
        return texts

    def document_group(self, documents, answers, tasks, add_stop: bool = True) -> tuple:
        """One group for trainer.step_weighted: B documents, each a list of K chunks (texts or id rows, the same K
        for every document), each compressed into its own block; the B answers (the stop token appended unless
        add_stop=False, as for continuations) and one task per document ("continue" or ("chunk", k))."""
        documents = _rows(documents)
        counts = {len(_rows(chunks)) for chunks in documents}
        if len(counts) != 1:
            raise _core.C3ValueError(f"every document of a group needs the same number of chunks, got {sorted(counts)}")
        if len(_rows(answers)) != len(documents) or len(_rows(tasks)) != len(documents):
            raise _core.C3ValueError(f"{len(documents)} documents, {len(_rows(answers))} answers and "
                                     f"{len(_rows(tasks))} tasks: give one answer and one task per document")
        _check_addresses(_rows(tasks), counts.copy().pop())
        contexts, context_mask = self.context_batch([chunk for chunks in documents for chunk in chunks])
        answer_ids, answer_mask = self.answer_batch(_rows(answers), add_stop=add_stop)
        task, task_mask = self.task_batch(tasks)
        return contexts, context_mask, answer_ids, answer_mask, counts.pop(), task, task_mask

    def compression_ratio(self, texts) -> np.ndarray:
        return np.array([len(row) for row in self.tokenize(_rows(texts))]) / self.num_latents

    def identity(self) -> str:
        """Which cascade made a set of latents: 16 hex digits of SHA-256 over the configuration and every parameter
        (encoder, decoder, queries, projector), computed in C++ from the weights in memory, so that two cascades
        differing in any weight differ here. The SHA-256 runs again only when a weight changed since the last call
        (a fast fingerprint of every parameter says so). Cascade.save records it in config.json ("c3": "identity")."""
        fingerprint = (self.model.parameters_fingerprint(), json.dumps(self.model.config, sort_keys=True))
        cached = getattr(self, "_identity", None)
        if cached is None or cached[0] != fingerprint:
            cached = self._identity = (fingerprint, self.model.identity())
        return cached[1]

    def trainer(self, **options) -> "_core.CascadeTrainer":
        """An AdamW trainer over the trainable parts (see CascadeModel.set_trainable)."""
        return _core.CascadeTrainer(self.model, **options)

    def train_step(self, trainer, contexts, answers=None, micro_batches: int = 1, continuation_contexts=None,
                   continuations=None, continuation_weight: float = 0.0, continuation_task: bool = False) -> dict:
        """One step on texts (or id rows): answers default to the contexts themselves (reconstruction).

        With continuation_weight w > 0 the loss is (1 - w) * reconstruction + w * continuation, the latter the
        mean loss on `continuations` (no stop token) given `continuation_contexts`. continuation_task: the
        continuation rows end their prompt with the "continue" task's suffix (task_ids) instead of the prompt's, so
        that the decoder is told which of the two it is asked for (score with task="continue" then)."""
        if continuation_weight:
            if not 0 < continuation_weight <= 1 or continuations is None or continuation_contexts is None:
                raise _core.C3ValueError("continuation_weight must be in (0, 1] and needs continuation_contexts and "
                                         "continuations")
            follow = self.context_batch(_rows(continuation_contexts)) + self.answer_batch(
                _rows(continuations), add_stop=False)
            if continuation_task:
                follow += (1, np.tile(self.task_ids("continue"), (len(follow[0]), 1)), None)
            groups = [self.context_batch(_rows(contexts)) + self.answer_batch(
                          _rows(answers if answers is not None else contexts)), follow]
            return trainer.step_weighted(groups, [1.0 - continuation_weight, continuation_weight])
        context_ids, context_mask = self.context_batch(_rows(contexts))
        answer_ids, answer_mask = self.answer_batch(_rows(answers if answers is not None else contexts))
        return trainer.step(context_ids, context_mask, answer_ids, answer_mask, micro_batches=micro_batches)

    def loss(self, contexts, answers=None) -> float:
        context_ids, context_mask = self.context_batch(_rows(contexts))
        answer_ids, answer_mask = self.answer_batch(_rows(answers if answers is not None else contexts))
        return self.model.loss(context_ids, context_mask, answer_ids, answer_mask)


def save_latents(path: str, latents: np.ndarray, cascade: Optional[Cascade] = None, source_tokens=None,
                 metadata: Optional[dict] = None, chunk_offsets=None, chunk_lengths=None) -> None:
    """Latents [B, N, d] with their metadata (cascade identity, N, source token counts, a SHA-256 checksum of the
    data) as safetensors, written by C++ (io::write_latents). Non-finite latents are a c3.C3ValueError.

    chunk_offsets and chunk_lengths (together, one per row) make the file one document's chunked latents, as
    Cascade.compress_long gives them (LongLatents.offsets, .lengths); source_tokens then default to the chunk
    lengths, and C++ checks that the chunks are consecutive (each starts where the previous one ends)."""
    latents = np.asarray(latents, dtype=np.float32)
    if latents.ndim != 3:
        raise _core.ShapeError(f"latents must be [batch, N, d], got shape {latents.shape}")
    if (chunk_offsets is None) != (chunk_lengths is None):
        raise _core.C3ValueError("chunk_offsets and chunk_lengths go together")
    if chunk_offsets is not None:
        chunk_offsets = _chunk_positions(chunk_offsets, "chunk_offsets")
        chunk_lengths = _chunk_positions(chunk_lengths, "chunk_lengths")
        if source_tokens is None and len(chunk_lengths) == latents.shape[0]:  # else C++ names the mismatch
            source_tokens = chunk_lengths
    meta = {f"user.{k}": str(v) for k, v in (metadata or {}).items()}
    if cascade is not None:
        meta["c3.cascade"] = cascade.identity()
    if source_tokens is not None:
        source_tokens = _source_token_counts(source_tokens, latents.shape[0])
    counts = None if source_tokens is None else np.asarray(source_tokens, dtype=np.float64).reshape(-1)
    _core.write_latents(str(path), latents, counts, meta, chunk_offsets, chunk_lengths)


def load_latents(path: str, cascade: Optional[Cascade] = None):
    """(latents, metadata). With a cascade, checks that it is the one that made them (its identity covers every
    weight). The file is checked in C++ (kind, rank 3, N against the metadata, finite values, and the data against
    its c3.checksum where the file has one; files written before checksums have none); any mismatch is a
    c3.FormatError. A file of one document's chunked latents (save_latents with chunk_offsets) gives
    metadata["chunk_offsets"] and metadata["chunk_lengths"] (int64 [B]), checked to be consecutive chunks."""
    latents, metadata, source_tokens, chunks = _core.read_latents(str(path), chunks=True)
    if cascade is not None and metadata.get("c3.cascade") not in (None, cascade.identity()):
        raise _core.C3ValueError(f"{path}: latents were made by cascade {metadata['c3.cascade']}, "
                                 f"not by this one ({cascade.identity()})")
    if source_tokens is not None:
        metadata["source_tokens"] = source_tokens
    if chunks is not None:
        metadata["chunk_offsets"], metadata["chunk_lengths"] = chunks
    return latents, metadata
