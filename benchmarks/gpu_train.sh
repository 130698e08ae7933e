#!/usr/bin/env bash
# examples/train_torch.py on one CUDA GPU: a 4x cascade of c3 sweep's default shape (byte-level, d=128, 4 layers, 16
# latents, 64-byte passages), bf16 autocast and torch.compile, about SECONDS_PER_RUN (60) s of training (compilation
# included) at global batch 32 and then 256; prints text tokens/s. About 2.5 minutes in all.
# Run from the root of a c3 checkout on the GPU machine:  OUT=/some/dir bash gpu_train.sh
# Needs only python3 with torch and transformers (no network, no c3 build): the starting cascade is built here
# with transformers in the layout c3 writes (c3.torch.from_torch), the shape `c3 sweep` trains by default.
# $OUT receives machine.txt, train-b{32,256}.jsonl (the script's log) and log-b{32,256}.txt (stdout + stderr).
# EXTRA replaces the extra arguments to train_torch.py (default --compile; EXTRA=" " runs eager).
set -euo pipefail
OUT=${OUT:-$PWD/gpu-out}
WORK=${WORK:-/tmp/c3-gpu-train}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-60}
EXTRA=${EXTRA:---compile}
mkdir -p "$OUT" "$WORK"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "cpus $(nproc)";
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } \
  | tee "$OUT/machine.txt"

python3 - "$WORK/start" <<'PY'
import importlib.util, sys, torch, transformers
spec = importlib.util.spec_from_file_location("c3_torch", "python/c3/torch.py")
c3_torch = importlib.util.module_from_spec(spec); spec.loader.exec_module(c3_torch)
torch.manual_seed(0)
# c3 demo's default size (python/c3/demo.py: SIZES["default"], model_config) with c3's byte tokenizer: bytes,
# then <pad> <bos> <eos>=258 <img>=259 </img>=260 <imgpad>=261.
def model():
    config = transformers.LlamaConfig(vocab_size=262, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=144,
                                      rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                                      attention_bias=False, initializer_range=0.02)
    return transformers.LlamaForCausalLM(config)
cascade = dict(num_latents=16, projector="linear", latent_start_token=259, latent_end_token=260,
               latent_pad_token=261, prompt_prefix=[], prompt_suffix=[], stop_tokens=[258])
c3_torch.from_torch(c3_torch.CascadeModule(model(), model(), cascade), sys.argv[1])
print("start cascade:", sys.argv[1])
PY

for batch in 32 256; do
  rm -f "$OUT/train-b$batch.jsonl"
  # shellcheck disable=SC2086
  python3 examples/train_torch.py --cascade "$WORK/start" --output "$WORK/trained-b$batch" --device cuda --bf16 \
    --batch "$batch" --steps 100000 --learning-rate 3e-3 --warmup-steps 50 --weight-decay 0.01 \
    --max-seconds "$SECONDS_PER_RUN" --log-every 100 --log "$OUT/train-b$batch.jsonl" $EXTRA \
    > "$OUT/log-b$batch.txt" 2>&1 || { tail -20 "$OUT/log-b$batch.txt"; exit 1; }
done
python3 - "$OUT" "$EXTRA" <<'PY'
import json, sys
for batch in (32, 256):
    records = [json.loads(line) for line in open(f"{sys.argv[1]}/train-b{batch}.jsonl")]
    summary = records[-1]["summary"]
    losses = [r["loss"] for r in records if "loss" in r]
    print(f"batch {batch}: {summary['steps']} steps, {summary['text_tokens_per_second']:,.0f} text tokens/s "
          f"(bf16 autocast {sys.argv[2]}, first 100 steps untimed), loss {losses[0]:.3f} -> {losses[-1]:.3f}")
PY
