"""scoring.evaluate's strict greedy curve against a brute-force count, beside its teacher-forced curve."""
import numpy as np

import c3
from c3.eval import scoring
from c3.cascade import byte_tokenizer, scratch_model_config


def test_strict_decay_counts_position_by_position_matches():
    """strict_decay: per relative-position bin (position * bins // length), the share of reference tokens equal to
    the greedy reconstruction's token at the same index, counted in plain Python from the reconstructions."""
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    config = scratch_model_config(shape, 40, 4)
    cascade = c3.Cascade.new(config, config, 4, tokenizer=byte_tokenizer(), seed=3)
    texts = ["the quick brown fox", "jumps over", "a lazy dog, twice over", "ab"]
    trainer = cascade.trainer(learning_rate=1e-2)
    for _ in range(60):  # part-way: some tokens right, some wrong
        cascade.train_step(trainer, texts)
    metrics = scoring.evaluate(cascade, texts, max_new_tokens=24)
    references = cascade.tokenize(texts)
    latents, mask = cascade.encode(references)
    hypotheses = cascade.reconstruct(latents, max_new_tokens=24, source_tokens=[len(r) for r in references],
                                     return_ids=True, latent_mask=mask)
    bins = scoring.DECAY_BINS
    correct, total = np.zeros(bins), np.zeros(bins)
    for reference, hypothesis in zip(references, hypotheses):
        for position, token in enumerate(reference):
            b = position * bins // len(reference)
            total[b] += 1
            correct[b] += position < len(hypothesis) and int(hypothesis[position]) == int(token)
    strict = metrics["strict_decay"]
    np.testing.assert_array_equal(strict["count"], total)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(strict["accuracy"], correct / np.where(total > 0, total, np.nan))
    assert correct.sum() > 0 and correct.sum() < total.sum()  # a part-trained cascade gets some, not all
    assert strict["passages"] == len(texts) and len(metrics["teacher_decay"]["accuracy"]) == bins
