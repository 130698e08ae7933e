"""Documents of any length, compressed in chunks (Cascade.compress_long, CascadeModel.compress_chunks,
include/c3/cascade/chunks.hpp): each chunk's latents equal compress of that chunk alone, memory is one batch of
chunks however long the document, chunk offsets and lengths survive latents files (save_latents / load_latents and
`c3 compress --chunk-tokens`), and bad settings or damaged files are typed errors."""
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import c3
from c3 import _core
from c3.cascade import scratch_model_config

SHAPE = dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1)
CONTEXT = 24  # a chunk reads at most this many tokens (max_context_tokens is larger: SCRATCH_POSITION_ROOM)
N = 4
WIDTH_N_METHODS = ["c3", "mean_pool", "mean_pool_hidden", "hierarchical", "truncate", "truncate_last"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One c3 thread: these models are tiny, and on a busy machine every parallel region of a second thread waits
    for a core."""
    before = c3.num_threads()
    c3.set_num_threads(1)
    yield
    c3.set_num_threads(before)


def cascade(method="c3", seed=0):
    config = scratch_model_config(SHAPE, CONTEXT, N)
    return c3.Cascade.new(config, config, N, seed=seed, method=method)


def document(length, seed):
    return np.random.default_rng(seed).integers(0, 256, size=length).astype(np.int32)


# ---- (b) each chunk as compress compresses it alone -----------------------------------------------------------
@pytest.mark.parametrize("method", WIDTH_N_METHODS)
def test_compress_long_equals_compress_of_each_chunk_alone(method):
    model = cascade(method)
    chunk = 10
    # Lengths: several full chunks and a short tail (>= N, which truncation and pooling need), one chunk exactly,
    # a tail alone, several full chunks, an empty document; batches of 3 chunks run across documents and mix a
    # full chunk with a tail.
    lengths = [47, 10, 6, 30, 0, 25]
    documents = [document(length, seed) for seed, length in enumerate(lengths)]
    results = model.compress_long(documents, chunk, batch_chunks=3)
    assert len(results) == len(documents)
    for ids, result in zip(documents, results):
        expected_count = -(-len(ids) // chunk)
        assert isinstance(result, c3.LongLatents)
        assert result.latents.shape == (expected_count, N, SHAPE["hidden_size"])
        assert result.latents.dtype == np.float32
        assert result.offsets.dtype == np.int64 and result.lengths.dtype == np.int64
        np.testing.assert_array_equal(result.offsets, np.arange(expected_count) * chunk)
        np.testing.assert_array_equal(result.lengths, [min(chunk, len(ids) - k * chunk) for k in range(expected_count)])
        assert result.source_tokens == len(ids) == int(result.lengths.sum())
        for k, (offset, length) in enumerate(zip(result.offsets, result.lengths)):
            alone = model.compress([ids[offset:offset + length]])[0]
            np.testing.assert_allclose(result.latents[k], alone, rtol=0, atol=1e-5)


def test_compress_long_reads_texts_and_batch_size_does_not_change_results():
    model = cascade()
    texts = ["a text that runs over several chunks of twelve tokens, ending in a short one", "short", ""]
    by_text = model.compress_long(texts, 12, batch_chunks=2)
    by_ids = model.compress_long(model.tokenize(texts), 12, batch_chunks=64)
    for text, row, first, second in zip(texts, model.tokenize(texts), by_text, by_ids):
        assert first.source_tokens == len(row) == len(text.encode("utf-8"))
        np.testing.assert_array_equal(first.offsets, second.offsets)
        np.testing.assert_array_equal(first.lengths, second.lengths)
        np.testing.assert_allclose(first.latents, second.latents, rtol=0, atol=1e-5)
    assert by_text[2].latents.shape == (0, N, SHAPE["hidden_size"]) and len(by_text[2].offsets) == 0
    # A chunk as long as the whole context: one chunk, the latents of compress.
    whole = model.compress_long([texts[0][:model.max_context_tokens]], model.max_context_tokens)[0]
    np.testing.assert_allclose(whole.latents, model.compress([texts[0][:model.max_context_tokens]]), atol=1e-5)


# ---- (d) bad settings are typed errors ------------------------------------------------------------------------
def test_bad_chunk_settings_and_methods_are_typed_errors():
    model = cascade()
    limit = model.max_context_tokens
    for bad in (0, -3, limit + 1, 10 ** 9):
        with pytest.raises(c3.C3ValueError, match=f"chunk_tokens must be between 1 and {limit}"):
            model.compress_long(["some text"], bad)
    # The C++ check names the encoder's own limit, for callers of the binding.
    with pytest.raises(c3.C3ValueError, match=f"between 1 and {model.model.max_context_length}"):
        model.model.compress_chunks([document(5, 0)], model.model.max_context_length + 1)
    with pytest.raises(c3.C3ValueError, match="chunk_tokens must be between 1"):
        model.model.compress_chunks([document(5, 0)], 0)
    with pytest.raises(c3.C3ValueError, match="batch_chunks must be at least 1"):
        model.compress_long(["some text"], 4, batch_chunks=0)
    with pytest.raises(c3.C3ValueError, match="batch_chunks must be at least 1"):
        model.model.compress_chunks([document(5, 0)], 4, 0)
    with pytest.raises(c3.C3ValueError, match="outside the encoder vocabulary"):
        model.compress_long([np.array([1, 2, 10 ** 6])], 2)
    with pytest.raises(c3.C3ValueError):
        model.compress_long([np.array([1.5, 2.0])], 2)
    with pytest.raises(c3.ShapeError):
        model.compress_long([np.zeros((2, 3), dtype=np.int32)], 2)
    with pytest.raises(TypeError):
        model.compress_long("one string", 4)
    for method, reason in (("no_context", "an empty block"), ("full_context", "as wide as its context")):
        with pytest.raises(c3.C3ValueError, match=f"N rows per chunk.*{reason}"):
            cascade(method).compress_long(["some text"], 4)
    # A tail shorter than N is refused by truncation, naming the chunks of its batch.
    with pytest.raises(c3.C3ValueError, match="document 0 chunk 1"):
        cascade("truncate").compress_long([document(12, 0)], 10)


# ---- (a) offsets and lengths through latents files ------------------------------------------------------------
def test_chunk_offsets_round_trip_through_save_and_load_latents(tmp_path):
    model = cascade()
    long = model.compress_long([document(53, 1)], 16)[0]
    path = str(tmp_path / "long.safetensors")
    c3.save_latents(path, long.latents, model, chunk_offsets=long.offsets, chunk_lengths=long.lengths,
                    metadata={"source": "test"})
    latents, metadata = c3.load_latents(path, model)
    np.testing.assert_array_equal(latents, long.latents)
    np.testing.assert_array_equal(metadata["chunk_offsets"], [0, 16, 32, 48])
    np.testing.assert_array_equal(metadata["chunk_lengths"], [16, 16, 16, 5])
    assert metadata["chunk_offsets"].dtype == np.int64
    np.testing.assert_array_equal(metadata["source_tokens"], [16, 16, 16, 5])  # a chunk's tokens, per row
    assert metadata["user.source"] == "test"
    # An empty document: K = 0.
    empty = model.compress_long([[]], 16)[0]
    c3.save_latents(str(tmp_path / "empty.safetensors"), empty.latents, model, chunk_offsets=empty.offsets,
                    chunk_lengths=empty.lengths)
    latents, metadata = c3.load_latents(str(tmp_path / "empty.safetensors"), model)
    assert latents.shape == (0, N, SHAPE["hidden_size"]) and len(metadata["chunk_offsets"]) == 0
    # Without chunks, files are as before: no chunk keys, and the checksum over the data alone.
    plain = str(tmp_path / "plain.safetensors")
    c3.save_latents(plain, long.latents, model, source_tokens=long.lengths)
    latents, metadata = c3.load_latents(plain)
    assert "chunk_offsets" not in metadata and not any(key.startswith("c3.chunk") for key in metadata)
    assert metadata["c3.checksum"] == _core.sha256(long.latents.astype("<f4").tobytes() +
                                                   long.lengths.astype("<f4").tobytes())


def test_bad_chunks_are_refused_when_written(tmp_path):
    latents = np.zeros((3, N, 8), dtype=np.float32)
    path = str(tmp_path / "bad.safetensors")
    for offsets, lengths, message in (([0, 4, 9], [4, 4, 2], "starts at token 9, not where chunk 1 ends"),
                                      ([0, 4, 8], [4, 4, 0], "length 0"),
                                      ([0, 4], [4, 4], "2 chunk offsets and 2 chunk lengths for 3 rows"),
                                      ([-4, 0, 4], [4, 4, 4], "offset -4")):
        with pytest.raises(c3.C3ValueError, match=message):
            c3.save_latents(path, latents, chunk_offsets=offsets, chunk_lengths=lengths)
    with pytest.raises(c3.C3ValueError, match="go together"):
        c3.save_latents(path, latents, chunk_offsets=[0, 4, 8])
    with pytest.raises(c3.C3ValueError, match="source tokens but its chunk has length"):
        c3.save_latents(path, latents, source_tokens=[4, 4, 3], chunk_offsets=[0, 4, 8], chunk_lengths=[4, 4, 4])
    with pytest.raises(c3.C3ValueError, match="integers"):
        c3.save_latents(path, latents, chunk_offsets=[0.0, 4.5, 8.0], chunk_lengths=[4, 4, 4])
    assert not os.path.exists(path)


def rewrite_metadata(path, change):
    """The safetensors file at `path` with change(metadata) applied to its header's __metadata__, data kept."""
    data = open(path, "rb").read()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    change(header["__metadata__"])
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text + data[8 + size:])


def test_damaged_chunk_offsets_in_a_file_are_format_errors(tmp_path):
    model = cascade()
    long = model.compress_long([document(40, 2)], 10)[0]
    original = str(tmp_path / "long.safetensors")
    c3.save_latents(original, long.latents, model, chunk_offsets=long.offsets, chunk_lengths=long.lengths)
    bytes_written = open(original, "rb").read()

    def damaged(change, reseal=True):
        """A copy with its metadata changed; reseal: with c3.checksum recomputed as io/latents.hpp defines it,
        so that the chunk checks themselves must refuse the file."""
        path = str(tmp_path / "damaged.safetensors")
        open(path, "wb").write(bytes_written)

        def apply(metadata):
            change(metadata)
            if reseal and "c3.chunk_offsets" in metadata and "c3.chunk_lengths" in metadata:
                text = (f"c3.chunk_offsets={metadata['c3.chunk_offsets']}\n"
                        f"c3.chunk_lengths={metadata['c3.chunk_lengths']}")
                metadata["c3.checksum"] = _core.sha256(long.latents.astype("<f4").tobytes() +
                                                       long.lengths.astype("<f4").tobytes() + text.encode())
        rewrite_metadata(path, apply)
        return path

    # The resealed untouched copy loads: the test's checksum is the file's.
    np.testing.assert_array_equal(c3.load_latents(damaged(lambda m: None))[1]["chunk_offsets"], [0, 10, 20, 30])
    cases = [
        (lambda m: m.update({"c3.chunk_offsets": "[0,10,21,30]"}), False, "does not match its checksum"),
        (lambda m: m.update({"c3.chunk_offsets": "[0,10,21,30]"}), True, "starts at token 21"),
        (lambda m: m.update({"c3.chunk_offsets": "[0,10,20,30,40]"}), True, "5 chunk offsets"),
        (lambda m: m.update({"c3.chunk_offsets": "[0,10,20,30]", "c3.chunk_lengths": "[10,10,10,0]"}), True,
         "source tokens but its chunk has length 0|length 0"),
        (lambda m: m.update({"c3.chunk_offsets": "[0,10,20,\"30\"]"}), True, "not an integer"),
        (lambda m: m.update({"c3.chunk_offsets": "[0,10,20,30.5]"}), True, "not an integer"),
        (lambda m: m.update({"c3.chunk_offsets": "{\"a\": 1}"}), True, "not a JSON list"),
        (lambda m: m.update({"c3.chunk_offsets": "[0,10,20,"}), True, "not valid JSON"),
        (lambda m: m.pop("c3.chunk_lengths"), True, "without c3.chunk_lengths"),
        (lambda m: m.pop("c3.checksum"), False, "needs c3.checksum"),
    ]
    for change, reseal, message in cases:
        with pytest.raises(c3.FormatError, match=message):
            c3.load_latents(damaged(change, reseal))


# ---- (a) through the command line -----------------------------------------------------------------------------
def run_c3(*arguments, cwd):
    environment = {key: value for key, value in os.environ.items() if key != "C3_DEBUG"}
    return subprocess.run([sys.executable, "-m", "c3.cli", *arguments], cwd=cwd, capture_output=True, text=True,
                          env=dict(environment, OMP_NUM_THREADS="1"), timeout=300)


def error_line(result):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("c3 compress: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long_documents")
    cascade().save(str(folder / "casc"))
    texts = ["the first text is long enough to need several chunks of nine tokens each", "tiny", "x" * 27]
    (folder / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    return folder, texts


def test_cli_compress_chunk_tokens_writes_one_file_per_text(workspace):
    folder, texts = workspace
    result = run_c3("compress", "--cascade", "casc", "--texts", "texts.json", "--output", "long", "--chunk-tokens",
                    "9", "--batch-size", "2", "--quiet", cwd=folder)
    assert result.returncode == 0, result.stderr
    lengths = [len(text.encode("utf-8")) for text in texts]
    assert json.loads(result.stdout) == {"output": "long", "files": 3, "chunks": sum(-(-n // 9) for n in lengths),
                                         "chunk_tokens": 9}
    assert sorted(os.listdir(folder / "long")) == [f"text-{i:05d}.safetensors" for i in range(3)]
    model = c3.Cascade.load(str(folder / "casc"))
    expected = model.compress_long(texts, 9)
    for index, long in enumerate(expected):
        latents, metadata = c3.load_latents(str(folder / "long" / f"text-{index:05d}.safetensors"), model)
        np.testing.assert_array_equal(metadata["chunk_offsets"], long.offsets)
        np.testing.assert_array_equal(metadata["chunk_lengths"], long.lengths)
        assert int(metadata["chunk_lengths"].sum()) == lengths[index]
        np.testing.assert_allclose(latents, long.latents, rtol=0, atol=1e-5)
    # Written again, the folder is replaced as a whole.
    again = run_c3("compress", "--cascade", "casc", "--texts", "texts.json", "--output", "long", "--chunk-tokens",
                   "20", "--quiet", cwd=folder)
    assert again.returncode == 0, again.stderr
    np.testing.assert_array_equal(c3.load_latents(str(folder / "long" / "text-00000.safetensors"))[1]["chunk_offsets"],
                                  np.arange(-(-lengths[0] // 20)) * 20)


def test_cli_compress_chunk_tokens_errors(workspace):
    folder, texts = workspace
    base = ("compress", "--cascade", "casc", "--texts", "texts.json")
    assert error_line(run_c3(*base, "--output", "never", "--chunk-tokens", "0", cwd=folder)) == (
        "c3 compress: error: --chunk-tokens: must be an integer at least 1 and at most 16777216, got '0'")
    limit = cascade().max_context_tokens
    line = error_line(run_c3(*base, "--output", "never", "--chunk-tokens", str(limit + 1), cwd=folder))
    assert f"reads at most {limit} tokens" in line
    assert "leave out --truncate" in error_line(run_c3(*base, "--output", "never", "--chunk-tokens", "8",
                                                       "--truncate", cwd=folder))
    assert not (folder / "never").exists()
    # A folder holding latents of another, longer run: they would stay beside the new files.
    stale = folder / "stale"
    stale.mkdir()
    (stale / "text-00007.safetensors").write_bytes(b"old")
    assert "holds text-00007.safetensors" in error_line(run_c3(*base, "--output", "stale", "--chunk-tokens", "8",
                                                               cwd=folder))
    (folder / "a_file").write_text("x")
    assert "a_file" in error_line(run_c3(*base, "--output", "a_file", "--chunk-tokens", "8", cwd=folder))


# ---- (c) memory: one batch of chunks, however long the document ----------------------------------------------
# The peak resident memory of the child: VmHWM, its high-water mark since exec. (resource's ru_maxrss would
# carry over the peak of the pytest process that forked it, hundreds of MB with torch loaded, and hide the growth.)
MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import c3
    from c3.cascade import scratch_model_config

    c3.set_num_threads(1)
    chunk, batch = 256, int(sys.argv[1])
    shape = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2)
    config = scratch_model_config(shape, chunk, 4)
    cascade = c3.Cascade.new(config, config, 4, seed=0)
    rng = np.random.default_rng(0)

    def peak_after(chunks):
        result = cascade.compress_long([rng.integers(0, 256, size=chunks * chunk).astype(np.int32)], chunk, batch)
        assert result[0].latents.shape[0] == chunks
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024  # kB

    ten = peak_after(10)
    hundred = peak_after(100)
    print(json.dumps(dict(growth=hundred - ten, output_bytes=100 * 4 * 64 * 4)))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_memory_is_bounded_by_a_batch_of_chunks_not_by_the_document():
    def probe(batch_chunks):
        environment = {key: value for key, value in os.environ.items() if key != "C3_DEBUG"}
        result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(batch_chunks)], capture_output=True,
                                text=True, env=environment, timeout=300)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.splitlines()[-1])

    slack = 20 << 20
    bounded = probe(4)
    # A document of 100 chunks peaks no higher than one of 10, but for its larger output.
    assert bounded["growth"] <= bounded["output_bytes"] + slack, bounded
    # The oracle can fail: with every chunk in one batch (activations of all 100 chunks at once) the same
    # measurement grows far past the bound.
    all_at_once = probe(100)
    assert all_at_once["growth"] > all_at_once["output_bytes"] + slack, all_at_once


# ---- a decoder that reads a document's blocks ------------------------------------------------------------------
def document_cascade(seed=0, method="c3"):
    """A byte cascade whose decoder has room for many blocks (its encoder reads chunks of CONTEXT tokens)."""
    return c3.Cascade.new(scratch_model_config(SHAPE, CONTEXT, N), scratch_model_config(SHAPE, 160, N), N,
                          seed=seed, method=method)


def test_task_prompts_come_from_cpp_and_encode_as_text():
    model = document_cascade()
    assert list(_core.task_names()) == ["chunk", "continue"]
    assert bytes(model.task_ids("chunk", 12).tolist()) == b"<chunk 12>"
    assert bytes(model.task_ids("continue").tolist()) == b"<continue>"
    ids, mask = model.task_batch([("chunk", 3), "continue"])
    assert ids.shape == (2, 10) and mask[0].tolist() == [0] + [1] * 9  # "<chunk 3>" left-padded
    with pytest.raises(_core.C3ValueError, match="unknown task 'summary'"):
        model.task_ids("summary")
    with pytest.raises(_core.C3ValueError, match="addresses no chunk"):
        model.task_ids("continue", 2)
    for hostile in ("chunk", ("chunk", -1), ("chunk",), ("chunk", 1.5), ("chunk", True), 3):
        with pytest.raises(_core.C3ValueError):
            model.task_batch([hostile])


def test_document_score_and_reconstruct_read_every_block_in_batches_of_any_size():
    model = document_cascade()
    text = "".join(chr(97 + i % 26) for i in range(70))
    long = model.compress_long([text], chunk_tokens=CONTEXT)[0]
    assert long.latents.shape[0] == 3
    chunks = [text[int(o):int(o) + int(n)] for o, n in zip(long.offsets, long.lengths)]
    tasks = [("chunk", 0), ("chunk", 2), "continue"]
    answers = [chunks[0], chunks[2], "what follows"]
    scores = model.document_score(long, answers, tasks)
    one_by_one = model.document_score(long, answers, tasks, batch_size=1)
    for name in ("valid", "predicted"):
        np.testing.assert_array_equal(scores[name], one_by_one[name])
    # Equal up to rounding: oneDNN's sgemm, where loaded, may block a product's sums by its row count.
    np.testing.assert_allclose(scores["log_probability"], one_by_one["log_probability"], rtol=1e-6, atol=1e-6)
    # The face adds nothing the model's own call over K = 3 blocks does not give.
    ids, mask = model.answer_batch(answers, add_stop=False)
    task, task_mask = model.task_batch(tasks)
    joined = np.repeat(long.latents.reshape(1, 3 * N, -1), 3, axis=0)
    direct = model.model.score(joined, ids, mask, blocks=3, task=task, task_mask=task_mask)
    np.testing.assert_array_equal(scores["log_probability"], direct["log_probability"])
    # Greedy answers are what teacher forcing on them predicts.
    answers = model.document_reconstruct(long, tasks, max_new_tokens=8, return_ids=True)
    again = model.document_reconstruct(long, tasks, max_new_tokens=8, return_ids=True, batch_size=2)
    assert all(np.array_equal(a, b) for a, b in zip(answers, again))
    for task, answer in zip(tasks, answers):
        if len(answer):
            check = model.document_score(long, [answer], [task])
            np.testing.assert_array_equal(check["predicted"][check["valid"]], answer)


def test_document_tasks_and_groups_refuse_bad_input():
    model = document_cascade()
    long = model.compress_long(["x" * 50], chunk_tokens=CONTEXT)[0]
    with pytest.raises(_core.C3ValueError, match="addresses chunk 3 of a document of 3"):
        model.document_score(long, ["x"], [("chunk", 3)])
    with pytest.raises(_core.C3ValueError, match="2 texts for 1 tasks"):
        model.document_score(long, ["x", "y"], ["continue"])
    with pytest.raises(_core.C3ValueError, match="max_new_tokens 500 does not fit"):
        model.document_reconstruct(long, ["continue"], max_new_tokens=500)
    with pytest.raises(_core.ShapeError, match="K >= 1"):
        model.document_score(long._replace(latents=long.latents[:0]), ["x"], ["continue"])
    with pytest.raises(_core.C3ValueError, match="same number of chunks"):
        model.document_group([["ab", "cd"], ["ef"]], ["ab", "ef"], ["continue", "continue"])
    with pytest.raises(_core.C3ValueError, match="one answer and one task per document"):
        model.document_group([["ab", "cd"]], ["ab", "cd"], ["continue"])
    with pytest.raises(_core.C3ValueError, match="addresses chunk 2 of a document of 2"):
        model.document_group([["ab", "cd"]], ["ab"], [("chunk", 2)])


def test_training_on_addressed_chunks_and_continuation_lowers_both_losses():
    model = document_cascade(seed=1)
    c3.set_num_threads(1)
    rng = np.random.default_rng(0)
    trainer = model.trainer(learning_rate=3e-3, warmup_steps=2, total_steps=60, weight_decay=0.0)
    words = ["alpha ", "beta ", "gamma ", "delta ", "eps "]

    def document():
        return ["".join(rng.choice(words) for _ in range(3))[:12] for _ in range(2)]

    def groups():
        documents = [document() for _ in range(4)]
        which = rng.integers(0, 2, size=4)
        chunk = model.document_group(documents, [d[k] for d, k in zip(documents, which)],
                                     [("chunk", int(k)) for k in which])
        follow = model.document_group(documents, [d[1][:4] for d in documents], ["continue"] * 4, add_stop=False)
        return [chunk, follow]

    fixed = groups()
    before = [model.model.loss(*group) for group in fixed]
    for _ in range(60):
        trainer.step_weighted(groups(), [0.8, 0.2])
    after = [model.model.loss(*group) for group in fixed]
    assert after[0] < before[0] - 0.5 and after[1] < before[1] - 0.5, (before, after)


# ---- continuation with a task token ---------------------------------------------------------------------------
def test_continuation_with_its_task_token_in_training_and_scoring():
    model = document_cascade(seed=2)
    contexts, follow = ["the first context", "and another one"], ["goes on", "and on"]
    ids, mask = model.context_batch(contexts)
    answers, answer_mask = model.answer_batch(contexts)
    follow_ids, follow_mask = model.answer_batch(follow, add_stop=False)
    task = np.tile(model.task_ids("continue"), (2, 1))
    reconstruction = model.model.loss(ids, mask, answers, answer_mask)
    with_task = model.model.loss(ids, mask, follow_ids, follow_mask, task=task)
    without = model.model.loss(ids, mask, follow_ids, follow_mask)
    assert abs(with_task - without) > 1e-4  # the task's suffix is in the prompt
    report = model.train_step(model.trainer(learning_rate=0.0), contexts, continuation_contexts=contexts,
                              continuations=follow, continuation_weight=0.25, continuation_task=True)
    assert abs(report["loss"] - (0.75 * reconstruction + 0.25 * with_task)) < 1e-5
    # Scoring asks the same way: score_rows' continuation nats are the task's.
    from c3.eval.scoring import score_rows

    latents = model.compress(contexts)
    scores = model.score(latents, follow, task="continue")
    direct = model.model.score(latents, follow_ids, follow_mask, task=task)
    np.testing.assert_array_equal(scores["log_probability"], direct["log_probability"])
    rows = [np.asarray(model.tokenizer.encode(text), np.int32) for text in contexts]
    following = [np.asarray(model.tokenizer.encode(text), np.int32) for text in follow]
    nats = score_rows(model, rows, reconstruct=False, continuations=following, continuation_task=True)
    expected = -np.where(direct["valid"], direct["log_probability"].astype(np.float64), 0).sum(axis=1)
    np.testing.assert_allclose(nats["continuation_nats"], expected, rtol=1e-12)
    plain = score_rows(model, rows, reconstruct=False, continuations=following)
    assert not np.allclose(plain["continuation_nats"], expected)


# ---- measures across a document --------------------------------------------------------------------------------
def test_document_measures_by_chunk_index_and_distance_from_the_end():
    from c3.eval import documents, surprisal

    model = document_cascade(seed=3)
    rng = np.random.default_rng(1)
    rows = [rng.integers(97, 123, size=length).astype(np.int32) for length in (3 * CONTEXT + 5 + 6, CONTEXT + 6)]
    measures = documents.document_measures(model, rows, CONTEXT, 6, batch_size=2)
    first, second = measures["per_document"]
    assert [r["index"] for r in first["chunks"]] == [0, 1, 2, 3] and [r["from_end"] for r in first["chunks"]] == \
        [3, 2, 1, 0]
    assert [r["tokens"] for r in first["chunks"]] == [CONTEXT, CONTEXT, CONTEXT, 5] and len(second["chunks"]) == 1
    # Every record is what the document's own calls give.
    long = model.compress_long([rows[0][:-6]], CONTEXT)[0]
    chunks = [rows[0][int(o):int(o) + int(n)] for o, n in zip(long.offsets, long.lengths)]
    scores = model.document_score(long, [chunks[2]], [("chunk", 2)])
    bits = -scores["log_probability"][0][scores["valid"][0]].astype(np.float64) / np.log(2)
    assert abs(first["chunks"][2]["teacher_forced"] - scores["correct"][0][scores["valid"][0]].mean()) < 1e-12
    assert abs(first["chunks"][2]["reconstruction_bits"] - bits.mean()) < 1e-9
    prior = np.asarray(surprisal.prior_surprisal(model, [chunks[2]])[0])
    assert np.isfinite(prior).all()  # the prior's prompt (<img></img>) gives the first token a context too
    assert abs(first["chunks"][2]["supplied_bits"] - np.mean(prior - bits)) < 1e-9
    hypothesis = model.document_reconstruct(long, [("chunk", 2)], return_ids=True)[0]
    assert first["chunks"][2]["strict"] == surprisal.strict_correct(chunks[2], hypothesis).mean()
    follow = model.document_score(long, [rows[0][-6:]], ["continue"])
    nats = -follow["log_probability"][0].astype(np.float64).sum()
    assert abs(first["continuation_bits"] - nats / np.log(2)) < 1e-9 and first["continuation_bytes"] == 6
    # Documents line up by index at the start and by distance at the end.
    by_index, by_end = measures["by_chunk_index"], measures["by_distance_from_end"]
    assert by_index["chunks"] == [2, 1, 1, 1] and by_end["chunks"] == [2, 1, 1, 1]
    assert abs(by_end["teacher_forced"][0] - np.mean([first["chunks"][3]["teacher_forced"],
                                                      second["chunks"][0]["teacher_forced"]])) < 1e-12
    assert by_index["teacher_forced"][3] == first["chunks"][3]["teacher_forced"]
    total = (first["continuation_bits"] + second["continuation_bits"]) / 12
    assert abs(measures["continuation_bits_per_byte"] - total) < 1e-12
    quick = documents.document_measures(model, rows, CONTEXT, 6, reconstruct=False)
    assert quick["by_chunk_index"]["strict"] == [None] * 4
    assert quick["by_chunk_index"]["teacher_forced"] == by_index["teacher_forced"]
    # A continuation cut inside a character counts its bytes, not the replacement character's.
    cut = np.concatenate([rows[1][:-6], np.array([97, 97, 97, 97, 0xE2, 0x80], np.int32)])
    assert documents.document_measures(model, [cut], CONTEXT, 6, reconstruct=False)["per_document"][0][
        "continuation_bytes"] == 6
    with pytest.raises(_core.C3ValueError, match="more than the 6 continuation tokens"):
        documents.document_measures(model, [rows[0][:6]], CONTEXT, 6)


def test_document_positions_plot_draws_each_measure():
    pytest.importorskip("matplotlib")
    from c3 import plots
    from c3.eval import documents

    model = document_cascade(seed=4)
    rows = [np.random.default_rng(2).integers(97, 123, size=2 * CONTEXT + 6).astype(np.int32)]
    measures = documents.document_measures(model, rows, CONTEXT, 6)
    figure = plots.plot_document_positions(measures)
    labels = [line.get_label() for axes in figure.axes for line in axes.get_lines()]
    assert labels == ["teacher forced", "strict greedy", "aligned greedy", "bits supplied per token"]
    assert "distance from the end" in figure.axes[0].get_xlabel()
    with pytest.raises(_core.C3ValueError, match="by must be"):
        plots.plot_document_positions(measures, by="by_size")
