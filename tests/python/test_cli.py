"""The command line as a user meets it, and the library's rule for the reconstruction length."""
import pytest

import c3


def test_reconstruction_length_rule_matches_the_decoder():
    """max_new_tokens_limit against the C++ position check, with a prompt around the latent block."""
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    latents_count, context = 4, 20
    config = c3.cascade.scratch_model_config(shape, context, latents_count)
    cascade = c3.Cascade.new(config, config, latents_count, prompt="ab{latents}cde", seed=0)
    # Byte-level prompt: 2 tokens before the block, 3 after, the block is <img> + N + </img>.
    limit = config["max_position_embeddings"] - (2 + latents_count + 2 + 3)
    assert cascade.max_new_tokens_limit == limit
    latents = cascade.compress(["hello", "a longer text here"])
    cascade.model.reconstruct(latents, max_new_tokens=limit)  # the decoder accepts the limit...
    with pytest.raises(c3.C3ValueError, match="max_position_embeddings"):
        cascade.model.reconstruct(latents, max_new_tokens=limit + 1)  # ...and refuses one more
    with pytest.raises(c3.C3ValueError, match=f"at most {limit}"):
        cascade.reconstruct(latents, max_new_tokens=limit + 1)
    margin = c3.cascade.RECONSTRUCTION_MARGIN
    assert cascade.default_max_new_tokens([5, 18]) == min(limit, 18 + margin)
    assert cascade.default_max_new_tokens([5, 10_000]) == limit
    assert cascade.default_max_new_tokens() == min(limit, cascade.max_context_tokens + margin)
    assert cascade.reconstruct(latents, source_tokens=[5, 18]) == cascade.reconstruct(
        latents, max_new_tokens=min(limit, 18 + margin))
