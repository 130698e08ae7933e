"""The c3 command line: demo, train, compress, reconstruct, eval, models."""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from ._loader import VersionAction


def _read_texts(path: str | None, passage_bytes: int):
    from . import corpus

    text = open(path, encoding="utf-8").read() if path else None
    return corpus.passages(passage_bytes, text=text)


def command_demo(args):
    from .demo import run_demo

    ratios = tuple(int(r) for r in args.ratios.split(","))
    run_demo(args.output, ratios=ratios, minutes=args.minutes, size=args.size, seed=args.seed)
    print(f"report: {os.path.join(args.output, 'report.md')}")


def _load_config(args) -> dict:
    config = {}
    if args.config:
        with open(args.config) as handle:
            config = json.load(handle)
    for key in ("latents", "ratio", "steps", "batch", "learning_rate", "hidden_size", "layers", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            config[key] = value
    return config


def command_train(args):
    from . import corpus
    from .cascade import Cascade, byte_tokenizer
    from .demo import model_config
    from .training import fit

    config = _load_config(args)
    latents, ratio = int(config.get("latents", 16)), int(config.get("ratio", 4))
    steps, batch = int(config.get("steps", 200)), int(config.get("batch", 16))
    seed = int(config.get("seed", 0))
    length = latents * ratio
    train, _ = corpus.split(_read_texts(args.text, length), seed=seed)
    if args.encoder and args.decoder:
        cascade = Cascade.from_pretrained(args.encoder, args.decoder, latents, seed=seed)
    else:
        hidden, layers = int(config.get("hidden_size", 128)), int(config.get("layers", 4))
        shape = dict(hidden_size=hidden, intermediate_size=hidden * 3, num_layers=layers,
                     num_heads=max(1, hidden // 16), num_kv_heads=max(1, hidden // 32))
        positions = length + latents + 64
        cascade = Cascade.new(model_config(shape, positions), model_config(shape, positions), latents,
                              tokenizer=byte_tokenizer(), seed=seed)
    for part in args.freeze or []:
        cascade.model.set_trainable(part, False)
    trainer = cascade.trainer(learning_rate=float(config.get("learning_rate", 3e-3)),
                              warmup_steps=max(1, steps // 20), total_steps=steps, min_lr_ratio=0.05)
    rng = np.random.default_rng(seed)

    def batches():
        while True:
            yield [train[i] for i in rng.integers(0, len(train), size=batch)]

    reports = fit(trainer, batches(), steps, step_fn=lambda t, b: cascade.train_step(t, b), progress=not args.quiet)
    cascade.save(args.output)
    print(json.dumps({"output": args.output, "steps": steps, "final_loss": reports[-1]["loss"]}))


def _texts_file(path: str):
    with open(path, encoding="utf-8") as handle:
        if path.endswith(".json"):
            return list(json.load(handle))
        return [line.rstrip("\n") for line in handle if line.strip()]


def command_compress(args):
    from .cascade import Cascade, save_latents

    cascade = Cascade.load(args.cascade)
    texts = _texts_file(args.texts)
    latents = cascade.compress(texts, truncate=args.truncate)
    save_latents(args.output, latents, cascade, source_tokens=[len(r) for r in cascade.tokenize(texts)])
    print(json.dumps({"output": args.output, "shape": list(latents.shape)}))


def command_reconstruct(args):
    from .cascade import Cascade, load_latents

    cascade = Cascade.load(args.cascade)
    latents, _ = load_latents(args.latents, cascade)
    texts = cascade.reconstruct(latents, max_new_tokens=args.max_new_tokens)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(texts, handle, ensure_ascii=False, indent=1)
    print(json.dumps({"output": args.output, "count": len(texts)}))


def command_eval(args):
    from . import analysis
    from .cascade import Cascade

    cascade = Cascade.load(args.cascade)
    texts = _texts_file(args.texts)
    latents = cascade.compress(texts, truncate=True)
    lengths = [len(r) for r in cascade.tokenize(texts)]
    hypotheses = cascade.reconstruct(latents, max_new_tokens=max(lengths) + 8)
    metrics = analysis.fox_metrics(texts, hypotheses)
    references = cascade.tokenize(texts)
    hypothesis_ids = [np.asarray(cascade.tokenizer.encode(h), dtype=np.int32) for h in hypotheses]
    metrics["decay"] = {k: np.asarray(v).tolist() for k, v in analysis.decay_curve(list(zip(references, hypothesis_ids))).items()}
    metrics["compression_ratio"] = float(np.mean(lengths) / cascade.num_latents)
    with open(args.output, "w") as handle:
        json.dump(metrics, handle, indent=2)
    print(json.dumps({k: metrics[k] for k in ("precision", "edit_distance", "bleu", "compression_ratio")}))


def command_models(args):
    from .models import smollm2

    if args.name != "smollm2":
        raise SystemExit(f"unknown model {args.name!r} (available: smollm2)")
    print(smollm2())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="c3", description="Context Cascade Compression: train, compress, "
                                     "reconstruct and analyse text cascades on the CPU.")
    parser.add_argument("--version", action=VersionAction, help="print the version and the build information, then exit")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train small cascades at several ratios and write a report")
    demo.add_argument("--output", default="reports/demo")
    demo.add_argument("--minutes", type=float, default=10.0)
    demo.add_argument("--ratios", default="4,8,16")
    demo.add_argument("--size", choices=["default", "tiny"], default="default")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=command_demo)

    train = commands.add_parser("train", help="train a cascade (from scratch, or from two pretrained models)")
    train.add_argument("--output", required=True, help="directory to save the cascade (official C3 layout)")
    train.add_argument("--text", help="a UTF-8 text file (default: the embedded corpus)")
    train.add_argument("--config", help="JSON file with any of: latents, ratio, steps, batch, learning_rate, "
                       "hidden_size, layers, seed")
    train.add_argument("--latents", type=int)
    train.add_argument("--ratio", type=int)
    train.add_argument("--steps", type=int)
    train.add_argument("--batch", type=int)
    train.add_argument("--learning-rate", dest="learning_rate", type=float)
    train.add_argument("--hidden-size", dest="hidden_size", type=int)
    train.add_argument("--layers", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--encoder", help="pretrained encoder directory (Hugging Face)")
    train.add_argument("--decoder", help="pretrained decoder directory (Hugging Face)")
    train.add_argument("--freeze", action="append", choices=["encoder", "decoder", "queries", "projector"])
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(run=command_train)

    compress = commands.add_parser("compress", help="texts -> latents file (safetensors)")
    compress.add_argument("--cascade", required=True)
    compress.add_argument("--texts", required=True, help="text file (one text per line) or JSON list")
    compress.add_argument("--output", required=True)
    compress.add_argument("--truncate", action="store_true", help="cut texts longer than the encoder allows")
    compress.set_defaults(run=command_compress)

    reconstruct = commands.add_parser("reconstruct", help="latents file -> texts (JSON list)")
    reconstruct.add_argument("--cascade", required=True)
    reconstruct.add_argument("--latents", required=True)
    reconstruct.add_argument("--output", required=True)
    reconstruct.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=512)
    reconstruct.set_defaults(run=command_reconstruct)

    evaluation = commands.add_parser("eval", help="Fox metrics and decay curve of a cascade on texts")
    evaluation.add_argument("--cascade", required=True)
    evaluation.add_argument("--texts", required=True)
    evaluation.add_argument("--output", required=True, help="metrics JSON")
    evaluation.set_defaults(run=command_eval)

    models = commands.add_parser("models", help="real pretrained weights available offline")
    models.add_argument("name", help="smollm2: convert the packaged SmolLM2-135M GGUF once and print its path")
    models.set_defaults(run=command_models)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
