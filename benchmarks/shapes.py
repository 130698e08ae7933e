"""The byte-level and ~100M Llama shapes that the benchmarks share, in Hugging Face's names (MODELS) and in c3's
(c3_config): importing this module needs neither PyTorch nor transformers."""

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
}
MAX_POSITIONS = 2048


def c3_config(name: str) -> dict:
    """MODELS[name] as a c3.Transformer configuration (Llama, tied embeddings)."""
    shape = MODELS[name]
    return dict(model_type="llama", vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
                intermediate_size=shape["intermediate_size"], num_layers=shape["num_hidden_layers"],
                num_heads=shape["num_attention_heads"], num_kv_heads=shape["num_key_value_heads"],
                attention_bias=False, tie_word_embeddings=True, max_position_embeddings=MAX_POSITIONS)
