"""Long documents at scale: chunked compression of a large text against the encoder's own prefill rate, and decoding
over a KV cache of more than 2,048 latent positions, in one process.

    python benchmarks/long_documents.py [--megabytes 1] [--chunk-tokens 256] [--blocks 128] [--threads 2]
                                        [--pretrained-tokens 4096] [--json out.json]

Compression: a byte-level cascade of the sweep's small shape (d 128, 3 layers, N = 16) compresses the first
`megabytes` of the King James Version (c3.prose) with Cascade.compress_long in chunks of `chunk_tokens`. The
baseline is the encoder's prefill alone: Transformer.forward on the same batches of chunk-length inputs (the context,
<img>, the N query slots and </img>), timed in the same process. Compression runs at the prefill rate when the ratio
of the two rates is near 1: the chunking, the queries and the projector add little.

Decoding: the decoder reads `blocks` blocks of N latents (blocks x N latent positions, each block with its two
markers) and writes 64 tokens greedily with its KV cache; the script prints the prompt's prefill time and the decode
rate in tokens per second, and the same decode after a single block, so that the cost of the long cache shows.

Pretrained (--pretrained-tokens T, 0 to skip): a cascade of two SmolLM2-135M (c3.models.smollm2, offline; Q and the
projector untrained, which does not change the cost) compresses the first T tokens of the King James Version in
chunks of 128 tokens, against its encoder's own prefill on the same inputs, and its decoder reads all T / 128 blocks
and writes 64 tokens greedily, as for the byte-level cascade.
"""
import argparse
import json
import os
import platform
import time

import numpy as np

import c3
from c3 import prose
from c3.cascade import scratch_model_config
from c3.experiments.recipe import SIZES

NEW_TOKENS = 64


def kjv_bytes(count: int) -> np.ndarray:
    """The first `count` bytes of the King James Version, books in order."""
    text = "\n\n".join(body for _, body in prose.ood_prose_documents()).encode("utf-8")
    if len(text) < count:
        raise SystemExit(f"the King James Version has {len(text)} bytes, fewer than {count}")
    return np.frombuffer(text[:count], dtype=np.uint8).astype(np.int32)


def timed(function, repeats=3):
    """(median seconds, last result) over `repeats` calls after one untimed call."""
    result = function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        samples.append(time.perf_counter() - started)
    return float(np.median(samples)), result


def compression(megabytes: float, chunk_tokens: int, batch_chunks: int) -> dict:
    shape, latents = SIZES["small"]["model"], SIZES["small"]["latents"]
    config = scratch_model_config(shape, chunk_tokens, latents)
    cascade = c3.Cascade.new(config, config, latents, seed=0)
    document = kjv_bytes(int(megabytes * 1_000_000))
    seconds, longs = timed(lambda: cascade.compress_long([document], chunk_tokens, batch_chunks), repeats=1)
    chunks = longs[0].latents.shape[0]
    # The encoder's prefill on the same inputs: batch_chunks rows of the chunk, <img>, N slots and </img>.
    rows = np.resize(document[:chunk_tokens * batch_chunks], (batch_chunks, chunk_tokens))
    config_c3 = cascade.model.config
    markers = np.full((batch_chunks, latents + 2), config_c3["latent_pad_token"], np.int32)
    markers[:, 0], markers[:, -1] = config_c3["latent_start_token"], config_c3["latent_end_token"]
    inputs = np.concatenate([rows, markers], axis=1)
    prefill_seconds, _ = timed(lambda: cascade.model.encoder.forward(inputs, logits="none"))
    prefill_rate = batch_chunks * chunk_tokens / prefill_seconds  # context tokens per second
    rate = len(document) / seconds
    return dict(bytes=int(len(document)), chunk_tokens=chunk_tokens, chunks=int(chunks), batch_chunks=batch_chunks,
                seconds=seconds, tokens_per_second=rate, encoder_prefill_tokens_per_second=prefill_rate,
                fraction_of_prefill_rate=rate / prefill_rate)


def decoding(blocks: int) -> dict:
    shape, latents = SIZES["small"]["model"], SIZES["small"]["latents"]
    encoder = scratch_model_config(shape, 256, latents)
    decoder = scratch_model_config(shape, blocks * (latents + 2) + 2 * NEW_TOKENS, latents)
    cascade = c3.Cascade.new(encoder, decoder, latents, seed=0)
    width = cascade.model.config["decoder"]["hidden_size"]
    rng = np.random.default_rng(0)
    result = {}
    for count in (1, blocks):
        joined = rng.standard_normal((1, count * latents, width)).astype(np.float32)
        prefill, _ = timed(lambda: cascade.model.score(joined, np.zeros((1, 1), np.int32), blocks=count))
        total, _ = timed(lambda: cascade.model.reconstruct(joined, max_new_tokens=NEW_TOKENS, stop_tokens=[],
                                                           blocks=count))
        result[f"blocks_{count}"] = dict(latent_positions=count * latents, prompt_tokens=int(
            cascade.model.prompt_length(latents, count)), prompt_seconds=prefill,
            decode_tokens_per_second=NEW_TOKENS / max(total - prefill, 1e-9))
    return result


def pretrained(tokens: int, chunk_tokens: int = 128, batch_chunks: int = 8) -> dict:
    from c3.models import smollm2

    directory = smollm2()
    cascade = c3.Cascade.from_pretrained(directory, directory, n_latents=16, seed=0)
    text = "\n\n".join(body for _, body in prose.ood_prose_documents()[:3])
    document = np.asarray(cascade.tokenizer.encode(text), np.int32)[:tokens]
    if len(document) < tokens:
        raise SystemExit(f"the first books hold {len(document)} tokens, fewer than {tokens}")
    seconds, longs = timed(lambda: cascade.compress_long([document], chunk_tokens, batch_chunks), repeats=1)
    blocks = longs[0].latents.shape[0]
    batch_chunks = min(batch_chunks, blocks)
    config = cascade.model.config
    markers = np.full((batch_chunks, 16 + 2), config["latent_pad_token"], np.int32)
    markers[:, 0], markers[:, -1] = config["latent_start_token"], config["latent_end_token"]
    inputs = np.concatenate([document[:batch_chunks * chunk_tokens].reshape(batch_chunks, chunk_tokens), markers], 1)
    prefill_seconds, _ = timed(lambda: cascade.model.encoder.forward(inputs, logits="none"), repeats=1)
    prefill_rate = batch_chunks * chunk_tokens / prefill_seconds
    joined = longs[0].latents.reshape(1, -1, longs[0].latents.shape[-1])
    prompt, _ = timed(lambda: cascade.model.score(joined, np.zeros((1, 1), np.int32), blocks=blocks), repeats=1)
    total, _ = timed(lambda: cascade.model.reconstruct(joined, max_new_tokens=NEW_TOKENS, stop_tokens=[],
                                                       blocks=blocks), repeats=1)
    return dict(tokens=int(len(document)), chunk_tokens=chunk_tokens, blocks=int(blocks),
                latent_positions=int(joined.shape[1]), seconds=seconds, tokens_per_second=len(document) / seconds,
                encoder_prefill_tokens_per_second=prefill_rate,
                fraction_of_prefill_rate=len(document) / seconds / prefill_rate,
                prompt_tokens=int(cascade.model.prompt_length(16, blocks)), prompt_seconds=prompt,
                decode_tokens_per_second=NEW_TOKENS / max(total - prompt, 1e-9))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=1.0)
    parser.add_argument("--chunk-tokens", type=int, default=256)
    parser.add_argument("--batch-chunks", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pretrained-tokens", type=int, default=4096,
                        help="tokens of the SmolLM2 cascade's document (0: skip it)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    c3.set_num_threads(args.threads)
    figures = dict(machine=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                   threads=args.threads, build=c3.build_info() if hasattr(c3, "build_info") else None,
                   compression=compression(args.megabytes, args.chunk_tokens, args.batch_chunks),
                   decoding=decoding(args.blocks),
                   pretrained=pretrained(args.pretrained_tokens) if args.pretrained_tokens else None)
    squeeze = figures["compression"]
    print(f"compress_long: {squeeze['bytes']:,} bytes in {squeeze['chunks']} chunks of {squeeze['chunk_tokens']} "
          f"in {squeeze['seconds']:.1f} s = {squeeze['tokens_per_second']:,.0f} tokens/s; encoder prefill "
          f"{squeeze['encoder_prefill_tokens_per_second']:,.0f} tokens/s; ratio "
          f"{squeeze['fraction_of_prefill_rate']:.2f}")
    for key, row in figures["decoding"].items():
        print(f"decode after {row['latent_positions']} latent positions ({row['prompt_tokens']} prompt tokens): "
              f"prompt {row['prompt_seconds'] * 1e3:.0f} ms, {row['decode_tokens_per_second']:.0f} tokens/s")
    if figures["pretrained"]:
        row = figures["pretrained"]
        print(f"SmolLM2 cascade: compress_long of {row['tokens']:,} tokens in {row['blocks']} chunks of "
              f"{row['chunk_tokens']} in {row['seconds']:.1f} s = {row['tokens_per_second']:,.0f} tokens/s; encoder "
              f"prefill {row['encoder_prefill_tokens_per_second']:,.0f} tokens/s; ratio "
              f"{row['fraction_of_prefill_rate']:.2f}; decode after {row['latent_positions']} latent positions "
              f"({row['prompt_tokens']} prompt tokens): prompt {row['prompt_seconds']:.2f} s, "
              f"{row['decode_tokens_per_second']:.1f} tokens/s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)


if __name__ == "__main__":
    main()
