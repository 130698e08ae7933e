"""c3 <-> PyTorch: hand a cascade to PyTorch for GPU training and take it back, bit for bit.

``to_torch(cascade)`` gives a ``CascadeModule`` (a ``torch.nn.Module``): the encoder and the decoder are transformers
causal LMs, and Q and the projector sit under the official checkpoint names (``model.Q.weight``,
``model.mm_projector.*``). Its forward is C3's training loss, the one ``Cascade.loss`` computes. ``from_torch(module,
path)`` writes the official C3 layout (decoder directory, encoder in ``llm1/``) in float32 or bf16, which
``c3.Cascade.load`` reads back.

Every compression method of c3 converts (``method`` in the cascade configuration): C3 itself and the baselines
under the same latent budget, mean_pool, truncate, truncate_last, no_context and full_context
(include/c3/cascade/baselines.hpp). Their latent block is W rows wide: N, 0 for no_context, the context length for
full_context, whose padding rows are masked (``encode`` gives that mask; score and generate take it).

This half of c3 needs only torch, transformers and safetensors (``pip install c3[torch]``): ``load(path)`` and
``from_torch`` read and write c3 directories without c3's compiled core, so a GPU machine with PyTorch alone can
train (examples/train_torch.py).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Optional

import torch
from torch import nn

try:  # typed errors when c3's core is present; plain ones where only this file is used
    from ._core import C3ValueError, ConfigError, FormatError
except ImportError:  # pragma: no cover - exercised on machines without the compiled core
    C3ValueError = ConfigError = FormatError = ValueError

__all__ = ["CascadeModule", "to_torch", "from_torch", "load", "ByteCodec", "codec_for"]

PARTS = ("encoder", "decoder", "queries", "projector")
BRIDGE_PREFIX = ("model.Q.", "model.mm_projector.")
# c3's compression methods (baselines.hpp), and those whose latent block holds the decoder's own token embeddings.
METHODS = ("c3", "mean_pool", "truncate", "truncate_last", "no_context", "full_context")
CONTEXT_TOKEN_METHODS = ("truncate", "truncate_last", "no_context", "full_context")
# c3's methods this mirror does not implement: a cascade of one of them trains and evaluates in c3 itself.
UNMIRRORED_METHODS = ("mean_pool_hidden", "hierarchical")


def positions_for(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count the real tokens before each one (0 at padding), as c3 numbers them."""
    return (torch.cumsum(mask, dim=1) - 1).clamp(min=0) * mask


class CascadeModule(nn.Module):
    """C3 in PyTorch: encoder, Q, projector, decoder; forward(contexts, answers) is the mean answer-token loss.

    Contexts are left-padded and answers right-padded (with the stop token appended), as Cascade.context_batch and
    Cascade.answer_batch make them. ``c3_config`` is c3's cascade configuration (CascadeModel.config).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, c3_config: dict, tokenizer_file: Optional[str] = None):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.c3_config = json.loads(json.dumps(c3_config))
        self.tokenizer_file = tokenizer_file
        self.num_latents = int(c3_config["num_latents"])
        encoder_hidden, decoder_hidden = encoder.config.hidden_size, decoder.config.hidden_size
        # Under `model.` so that named_parameters() gives the official names.
        self.model = nn.Module()
        self.model.Q = nn.Embedding(self.num_latents, encoder_hidden)
        if c3_config["projector"] == "linear":
            self.model.mm_projector = nn.Linear(encoder_hidden, decoder_hidden)
        elif c3_config["projector"] == "mlp":
            self.model.mm_projector = nn.Sequential(nn.Linear(encoder_hidden, decoder_hidden), nn.GELU(),
                                                    nn.Linear(decoder_hidden, decoder_hidden))
        else:
            raise ConfigError(f"unknown projector kind {c3_config['projector']!r} (known: linear, mlp)")
        self.method = str(c3_config.get("method", "c3"))
        if self.method in UNMIRRORED_METHODS:
            raise C3ValueError(f"c3.torch does not mirror the {self.method!r} baseline (it mirrors "
                               f"{', '.join(METHODS)}); train and evaluate it with c3 itself")
        if self.method not in METHODS:
            raise ConfigError(f"unknown compression method {self.method!r} (known: {', '.join(METHODS)})")
        self.prompt_prefix = [int(i) for i in c3_config["prompt_prefix"]]
        self.prompt_suffix = [int(i) for i in c3_config["prompt_suffix"]]
        self.latent_start_token = int(c3_config["latent_start_token"])
        self.latent_end_token = int(c3_config["latent_end_token"])
        self.latent_pad_token = int(c3_config["latent_pad_token"])
        self.latent_block = [self.latent_start_token] + [self.latent_pad_token] * self.num_latents + \
            [self.latent_end_token]
        self.stop_tokens = [int(i) for i in c3_config["stop_tokens"]]
        # Fixed token ids as buffers (not saved): they follow the module to the GPU once, not every forward.
        self.register_buffer("_latent_block", torch.tensor(self.latent_block), persistent=False)
        self.register_buffer("_prompt_before", torch.tensor(self.prompt_prefix + [self.latent_start_token],
                                                            dtype=torch.long), persistent=False)
        self.register_buffer("_prompt_after", torch.tensor([self.latent_end_token] + self.prompt_suffix,
                                                           dtype=torch.long), persistent=False)
        # The encoder's own output head never sees a gradient (only its hidden states are used); frozen, so that
        # DDP does not wait for it. It is saved back unchanged.
        head = encoder.get_output_embeddings()
        if head is not None and head.weight is not encoder.get_input_embeddings().weight:
            head.weight.requires_grad_(False)
        # Parts a baseline never runs are frozen for the same reason, and set_trainable leaves them so.
        self.unused_parameters = set()
        if self.method != "c3":
            embedding = encoder.get_input_embeddings().weight
            self.unused_parameters = {"model.Q.weight"} | {
                f"encoder.{name}" for name, p in encoder.named_parameters()
                if self.method in CONTEXT_TOKEN_METHODS or p is not embedding}
            if self.method in CONTEXT_TOKEN_METHODS:
                self.unused_parameters |= {f"model.mm_projector.{name}"
                                           for name, _ in self.model.mm_projector.named_parameters()}
            for name, parameter in self.named_parameters():
                if name in self.unused_parameters:
                    parameter.requires_grad_(False)

    # ---- parts ------------------------------------------------------------------------------------------------
    def part_parameters(self, part: str) -> list:
        """The part's parameters that its method uses (every one for C3)."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r} (known: {', '.join(PARTS)})")
        prefix = {"encoder": "encoder.", "decoder": "decoder.", "queries": "model.Q.",
                  "projector": "model.mm_projector."}[part]
        head = self.encoder.get_output_embeddings()
        untied_head = head is not None and head.weight is not self.encoder.get_input_embeddings().weight
        return [p for name, p in self.named_parameters() if name.startswith(prefix)
                and name not in self.unused_parameters and not (untied_head and p is head.weight)]

    def set_trainable(self, part: str, trainable: bool) -> None:
        """Freeze (False) or unfreeze a part: 'encoder', 'decoder', 'queries' or 'projector', as in c3."""
        for parameter in self.part_parameters(part):
            parameter.requires_grad_(trainable)

    def prompt_length_for(self, block_width: int) -> int:
        """Tokens of the decoder prompt around a latent block of `block_width` rows: prefix, <img>, the block,
        </img>, suffix (as c3's CascadeConfig lays it out; this module is its independent PyTorch twin)."""
        return len(self.prompt_prefix) + block_width + 2 + len(self.prompt_suffix)

    # ---- encoder side -----------------------------------------------------------------------------------------
    def compress(self, context_ids: torch.Tensor, context_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Contexts [B, L] (left-padded) -> latents [B, W, d_dec] (W = N; 0 for no_context, L for full_context,
        whose padding rows need the mask that encode gives)."""
        return self.encode(context_ids, context_mask)[0]

    def encode(self, context_ids: torch.Tensor, context_mask: Optional[torch.Tensor] = None):
        """(latents [B, W, d_dec], latent mask [B, W] or None when every row is real), by the cascade's method."""
        if self.method == "c3":
            return self._compress_c3(context_ids, context_mask), None
        device = self.model.Q.weight.device
        context_ids = context_ids.to(device).long()
        batch, length = context_ids.shape
        if context_mask is None:
            counts = torch.full((batch,), length, dtype=torch.long, device=device)
        else:
            context_mask = context_mask.to(device).long()
            counts = context_mask.sum(dim=1)  # real tokens per row; left padding puts them at the end
        if self.method in ("mean_pool", "truncate", "truncate_last") and int(counts.min()) < self.num_latents:
            raise C3ValueError(f"{self.method} needs at least N = {self.num_latents} context tokens; a context has "
                               f"{int(counts.min())}")
        if self.method == "mean_pool":
            return self.model.mm_projector(self._mean_pool(context_ids, counts)), None
        if self.method == "no_context":
            block_ids, block_mask = context_ids[:, :0], None
        elif self.method == "full_context":
            block_ids = context_ids if context_mask is None else \
                torch.where(context_mask == 1, context_ids, torch.full_like(context_ids, self.latent_pad_token))
            block_mask = context_mask
        else:
            first = length - counts if self.method == "truncate" else torch.full_like(counts, length - self.num_latents)
            columns = first[:, None] + torch.arange(self.num_latents, device=device)[None, :]  # [B, N]
            block_ids, block_mask = context_ids.gather(1, columns), None
        return self.decoder.get_input_embeddings()(block_ids), block_mask  # [B, W, d_dec]

    def _mean_pool(self, context_ids: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """[B, N, d_enc]: slot i is the mean of the encoder's token embeddings over window
        [first + i*count/N, first + (i+1)*count/N) of the row's real tokens, as c3 cuts them (integer division)."""
        batch, length = context_ids.shape
        device = context_ids.device
        first = (length - counts)[:, None]  # [B, 1]
        slots = torch.arange(self.num_latents, device=device)[None, :]  # [1, N]
        begin = first + slots * counts[:, None] // self.num_latents  # [B, N]
        end = first + (slots + 1) * counts[:, None] // self.num_latents
        columns = torch.arange(length, device=device)[None, None, :]  # [1, 1, L]
        inside = (columns >= begin[..., None]) & (columns < end[..., None])  # [B, N, L]
        embeddings = self.encoder.get_input_embeddings()(context_ids)  # [B, L, d_enc]
        weights = inside.to(embeddings.dtype) / (end - begin)[..., None].to(embeddings.dtype)
        return torch.bmm(weights, embeddings)

    def _compress_c3(self, context_ids: torch.Tensor, context_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """C3: the encoder's final hidden states (after its norm) at the N query slots, through the projector. No
        mask means every token is real: positions are then 0, 1, 2, ... and transformers' causal fast path runs
        without building a mask."""
        batch, length = context_ids.shape
        device = self.model.Q.weight.device
        context_ids = context_ids.to(device).long()
        block = self._latent_block.to(device).expand(batch, -1)
        if context_mask is None:
            ids, mask, positions = torch.cat([context_ids, block], dim=1), None, None
        else:
            context_mask = context_mask.to(device).long()
            ids = torch.cat([context_ids * context_mask, block], dim=1)
            mask = torch.cat([context_mask, torch.ones_like(block)], dim=1)
            positions = positions_for(mask)
        embeddings = self.encoder.get_input_embeddings()(ids)  # [B, L + N + 2, d_enc]
        queries = self.model.Q.weight.to(embeddings.dtype).unsqueeze(0).expand(batch, -1, -1)
        embeddings = torch.cat([embeddings[:, :length + 1], queries, embeddings[:, length + 1 + self.num_latents:]],
                               dim=1)
        hidden = self.encoder.base_model(inputs_embeds=embeddings, attention_mask=mask,
                                         position_ids=positions).last_hidden_state
        return self.model.mm_projector(hidden[:, length + 1:length + 1 + self.num_latents])

    # ---- decoder side -----------------------------------------------------------------------------------------
    def _decoder_inputs(self, latents: torch.Tensor, latent_mask: Optional[torch.Tensor],
                        answer_ids: Optional[torch.Tensor], answer_mask: Optional[torch.Tensor]):
        """(embeddings [B, P + La, d_dec], mask or None when every token is real, positions or None, answers) for a
        latent block of W = latents.shape[1] rows."""
        batch, width, device = latents.shape[0], latents.shape[1], latents.device
        block = torch.full((batch, width), self.latent_pad_token, dtype=torch.long, device=device)
        prompt = torch.cat([self._prompt_before.to(device).expand(batch, -1), block,
                            self._prompt_after.to(device).expand(batch, -1)], dim=1)
        if answer_ids is None:
            answer_ids = torch.zeros(batch, 0, dtype=torch.long, device=device)
        answer_ids = answer_ids.to(device).long()
        if answer_mask is None and latent_mask is None:
            ids, mask, positions = torch.cat([prompt, answer_ids], dim=1), None, None
        else:
            answer_mask = torch.ones_like(answer_ids) if answer_mask is None else answer_mask.to(device).long()
            prompt_mask = torch.ones_like(prompt)
            if latent_mask is not None:
                start = len(self.prompt_prefix) + 1
                prompt_mask[:, start:start + width] = latent_mask.to(device).long()
            ids = torch.cat([prompt, answer_ids * answer_mask], dim=1)
            mask = torch.cat([prompt_mask, answer_mask], dim=1)
            positions = positions_for(mask)
        embeddings = self.decoder.get_input_embeddings()(ids)  # [B, P + La, d_dec]
        start = len(self.prompt_prefix) + 1
        embeddings = torch.cat([embeddings[:, :start], latents.to(embeddings.dtype),
                                embeddings[:, start + width:]], dim=1)
        return embeddings, mask, positions, answer_ids

    def answer_logits(self, latents: torch.Tensor, answer_ids: torch.Tensor,
                      answer_mask: Optional[torch.Tensor] = None,
                      latent_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits [B, La, V]: the decoder's prediction for each answer position (teacher forcing). Only these rows
        go through the output head."""
        embeddings, mask, positions, answer_ids = self._decoder_inputs(latents, latent_mask, answer_ids, answer_mask)
        hidden = self.decoder.base_model(inputs_embeds=embeddings, attention_mask=mask,
                                         position_ids=positions).last_hidden_state
        start = self.prompt_length_for(latents.shape[1]) - 1
        return self.decoder.get_output_embeddings()(hidden[:, start:start + answer_ids.shape[1]])

    def forward(self, context_ids, context_mask, answer_ids, answer_mask, reduction: str = "mean"):
        """C3's loss: next-token cross-entropy on the answer tokens only; 'mean' over them (Cascade.loss) or 'sum'
        (for gradient accumulation over micro-batches of unequal token counts). A mask of None means no padding."""
        latents, latent_mask = self.encode(context_ids, context_mask)
        logits = self.answer_logits(latents, answer_ids, answer_mask, latent_mask)
        targets = answer_ids.to(logits.device).long()
        if answer_mask is not None:
            targets = torch.where(answer_mask.to(logits.device) == 1, targets, torch.full_like(targets, -100))
        return nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                           ignore_index=-100, reduction=reduction)

    @torch.no_grad()
    def score(self, latents, answer_ids, answer_mask=None, latent_mask=None) -> dict:
        """Teacher-forced log_probability of each reference token and the predicted (argmax) token, [B, La]."""
        logits = self.answer_logits(latents, answer_ids, answer_mask, latent_mask).float()
        log_softmax = torch.log_softmax(logits, dim=-1)
        answer_ids = answer_ids.to(logits.device).long()
        return {"log_probability": log_softmax.gather(-1, answer_ids[..., None])[..., 0],
                "predicted": logits.argmax(dim=-1)}

    @torch.no_grad()
    def generate(self, latents: torch.Tensor, max_new_tokens: int = 256, stop_tokens=None, pad_token: int = 0,
                 latent_mask: Optional[torch.Tensor] = None, return_log_probabilities: bool = False):
        """Greedy decoding with the KV cache, as CascadeModel.reconstruct: (tokens [B, steps], lengths [B]); a row
        ends after a stop token (counted in its length) and is filled with pad_token after. With
        return_log_probabilities, also each chosen token's log-probability [B, steps] (what scoring the output by
        teacher forcing gives)."""
        stop_tokens = self.stop_tokens if stop_tokens is None else [int(t) for t in stop_tokens]
        embeddings, mask, _, _ = self._decoder_inputs(latents, latent_mask, None, None)
        batch, device = latents.shape[0], latents.device
        if mask is None:
            mask = torch.ones(batch, embeddings.shape[1], dtype=torch.long, device=device)
        output = self.decoder(inputs_embeds=embeddings, attention_mask=mask, position_ids=positions_for(mask),
                              use_cache=True)
        stops = torch.tensor(stop_tokens, dtype=torch.long, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        lengths = torch.zeros(batch, dtype=torch.long, device=device)
        rows, log_probabilities = [], []
        position = mask.sum(dim=1, keepdim=True)  # [B, 1]: positions count the real tokens before
        for _ in range(max_new_tokens):
            logits = output.logits[:, -1].float()
            choice = logits.argmax(dim=-1)
            if return_log_probabilities:
                log_probabilities.append(torch.log_softmax(logits, dim=-1).gather(-1, choice[:, None])[:, 0])
            rows.append(torch.where(done, torch.full_like(choice, pad_token), choice))
            lengths += (~done).long()
            done = done | torch.isin(choice, stops)
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=device)], dim=1)
            output = self.decoder(input_ids=choice[:, None], attention_mask=mask, **_cache_argument(output),
                                  position_ids=position, use_cache=True)
            position = position + 1
        tokens = torch.stack(rows, dim=1) if rows else torch.zeros(batch, 0, dtype=torch.long, device=device)
        if return_log_probabilities:
            return tokens, lengths, (torch.stack(log_probabilities, dim=1) if rows else
                                     torch.zeros(batch, 0, device=device))
        return tokens, lengths


def _cache_argument(output) -> dict:
    """The KV cache of a forward's output as the next forward's argument: transformers names it `cache` from
    5.2x on, `past_key_values` before."""
    if getattr(output, "cache", None) is not None:
        return {"cache": output.cache}
    return {"past_key_values": output.past_key_values}


# ---- c3 directories (the official layout) ----------------------------------------------------------------------
def _read_tensors(directory: str) -> dict:
    from safetensors.torch import load_file

    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for name in files:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            raise FormatError(f"{directory}: {name} is missing")
        tensors.update(load_file(path))
    return tensors


def _causal_lm(config_dict: dict, tensors: dict, where: str, attn_implementation: Optional[str]) -> nn.Module:
    """A transformers causal LM of this configuration holding exactly these tensors (float32)."""
    import transformers

    config_dict = dict(config_dict)
    model_type = config_dict.pop("model_type")
    for key in ("architectures", "transformers_version", "torch_dtype", "dtype"):
        config_dict.pop(key, None)
    config = transformers.AutoConfig.for_model(model_type, **config_dict)
    if attn_implementation:
        config._attn_implementation = attn_implementation
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = {name: value.float() for name, value in tensors.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if unexpected or [name for name in missing if not (tied and name == "lm_head.weight")]:
        raise FormatError(f"{where}: tensors do not match a {model_type} model of this configuration "
                          f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    model.tie_weights() if tied else None
    return model.eval()


def load(path: str, attn_implementation: Optional[str] = None) -> CascadeModule:
    """A CascadeModule from a directory that c3 wrote (Cascade.save or from_torch), without c3's core.

    Checkpoints from the official code lack c3's "c3" key (special tokens, prompt): load those with
    c3.Cascade.load and pass the cascade to to_torch.
    """
    path = str(path)
    config = json.load(open(os.path.join(path, "config.json")))
    extra = config.get("c3")
    if not isinstance(extra, dict):
        raise ConfigError(f"{path}: config.json has no 'c3' key (an official checkpoint): load it with "
                          f"c3.Cascade.load and convert it with c3.torch.to_torch")
    if extra.get("method") in UNMIRRORED_METHODS:  # before its extra tensors are mistaken for the decoder's
        raise C3ValueError(f"{path}: c3.torch does not mirror the {extra['method']!r} baseline; train and evaluate "
                           f"it with c3 itself")
    encoder_directory = os.path.join(path, "llm1")
    if not os.path.isdir(encoder_directory):
        raise FormatError(f"{path}: a C3 checkpoint needs the encoder in the subfolder llm1/")
    encoder_config = json.load(open(os.path.join(encoder_directory, "config.json")))
    encoder = _causal_lm(encoder_config, _read_tensors(encoder_directory), encoder_directory, attn_implementation)
    decoder_config = {key: value for key, value in config.items()
                      if key not in ("c3", "latent_token_len", "contexts_compression_llm_hidden_size")}
    decoder_config["model_type"] = extra.get("decoder_model_type", "qwen2")
    tensors = _read_tensors(path)
    bridge = {name: tensors.pop(name) for name in list(tensors) if name.startswith(BRIDGE_PREFIX)}
    decoder = _causal_lm(decoder_config, tensors, path, attn_implementation)
    c3_config = dict(num_latents=int(config["latent_token_len"]), projector=extra.get("projector", "linear"),
                     latent_start_token=extra["latent_start_token"], latent_end_token=extra["latent_end_token"],
                     latent_pad_token=extra["latent_pad_token"], prompt_prefix=extra["prompt_prefix"],
                     prompt_suffix=extra["prompt_suffix"], stop_tokens=extra["stop_tokens"],
                     method=extra.get("method", "c3"))
    tokenizer_file = os.path.join(path, "tokenizer.json")
    module = CascadeModule(encoder, decoder, c3_config, tokenizer_file if os.path.exists(tokenizer_file) else None)
    expected = dict(module.model.named_parameters(prefix="model"))
    if sorted(bridge) != sorted(expected):
        raise FormatError(f"{path}: Q and projector tensors {sorted(bridge)} do not match a {c3_config['projector']} "
                          f"projector ({sorted(expected)})")
    with torch.no_grad():
        for name, value in bridge.items():
            if tuple(value.shape) != tuple(expected[name].shape):
                raise FormatError(f"{path}: {name} has shape {tuple(value.shape)}, expected "
                                  f"{tuple(expected[name].shape)}")
            expected[name].copy_(value.float())
    return module


def to_torch(cascade, attn_implementation: Optional[str] = None) -> CascadeModule:
    """A c3 Cascade (from Cascade.load, Cascade.new or Cascade.from_pretrained) as a CascadeModule in float32,
    holding the same numbers. It goes through the official layout that Cascade.save writes."""
    staging = tempfile.mkdtemp(prefix="c3-to-torch-")
    try:
        cascade.model.save(staging, "F32")
        module = load(staging, attn_implementation=attn_implementation)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    module.c3_config = dict(cascade.model.config, encoder=None, decoder=None)
    for key in ("encoder", "decoder"):
        module.c3_config.pop(key)
    module.tokenizer_file = getattr(cascade, "tokenizer_file", None)
    return module


def _config_for_file(model: nn.Module, dtype: torch.dtype) -> dict:
    config = model.config.to_dict()
    config["dtype"] = "bfloat16" if dtype == torch.bfloat16 else "float32"
    config.pop("torch_dtype", None)
    return config


def _state_for_file(model: nn.Module, dtype: torch.dtype) -> dict:
    """The tensors a checkpoint holds: no lm_head.weight when tied to the embeddings (transformers' convention)."""
    tied = model.get_output_embeddings() is not None and \
        model.get_output_embeddings().weight is model.get_input_embeddings().weight
    return {name: value.detach().to("cpu", dtype).contiguous().clone()
            for name, value in model.state_dict().items() if not (tied and name == "lm_head.weight")}


def _write_json(path: str, value: dict) -> None:
    with open(path, "w") as handle:
        json.dump(value, handle, indent=2, sort_keys=True)
        handle.write("\n")


def from_torch(module: CascadeModule, path: str, dtype: str = "float32") -> None:
    """Write the module in the official C3 layout (decoder directory with model.Q.weight and model.mm_projector.*,
    the encoder in llm1/, c3's "c3" key, the tokenizer.json it came with), in float32 or bf16.

    The directory appears whole or not at all: it is written into a staging folder beside the target, which then
    takes the old directory's place as a whole (c3's one directory writer, write_directory_atomically)."""
    from safetensors.torch import save_file

    names = {"float32": torch.float32, "F32": torch.float32, "bf16": torch.bfloat16, "BF16": torch.bfloat16,
             "bfloat16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"dtype must be 'float32' or 'bf16', got {dtype!r}")
    torch_dtype = names[dtype]
    module = getattr(module, "module", module)  # a DDP wrapper
    # No NaN is ever saved: c3 refuses non-finite weights at every save, and a cascade brought in from PyTorch is
    # no exception (checked in float32 and in the dtype written, where a large float overflows bf16).
    for name, value in module.named_parameters():
        value = value.detach()
        if not bool(torch.isfinite(value).all()) or not bool(torch.isfinite(value.to(torch_dtype)).all()):
            raise C3ValueError(f"from_torch: parameter '{name}' holds a non-finite value; nothing was written")

    def fill(staging: str) -> None:
        os.makedirs(os.path.join(staging, "llm1"))
        _write_json(os.path.join(staging, "llm1", "config.json"), _config_for_file(module.encoder, torch_dtype))
        save_file(_state_for_file(module.encoder, torch_dtype), os.path.join(staging, "llm1", "model.safetensors"),
                  metadata={"format": "pt"})
        config = _config_for_file(module.decoder, torch_dtype)
        c3_config = module.c3_config
        config.update(model_type="C3", architectures=["C3QwenForCausalLM"], latent_token_len=module.num_latents,
                      contexts_compression_llm_hidden_size=module.encoder.config.hidden_size)
        config["c3"] = {"projector": c3_config["projector"], "method": module.method,
                        "decoder_model_type": module.decoder.config.model_type,
                        **{key: c3_config[key] for key in ("latent_start_token", "latent_end_token", "latent_pad_token",
                                                           "prompt_prefix", "prompt_suffix", "stop_tokens")}}
        _write_json(os.path.join(staging, "config.json"), config)
        tensors = _state_for_file(module.decoder, torch_dtype)
        tensors.update({name: value.detach().to("cpu", torch_dtype).contiguous().clone()
                        for name, value in module.model.named_parameters(prefix="model")})
        save_file(tensors, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})
        if module.tokenizer_file and os.path.exists(module.tokenizer_file):
            shutil.copyfile(module.tokenizer_file, os.path.join(staging, "tokenizer.json"))

    _write_directory_atomically(os.fspath(path), fill)


def _write_directory_atomically(path: str, fill) -> None:
    """c3's one directory writer (files.hpp): fill(staging) writes the files, then the staging folder takes the
    old directory's place as a whole."""
    try:
        from ._core import write_directory_atomically
    except ImportError:  # pragma: no cover - machines without the compiled core
        write_directory_atomically = _swap_directory_in_python
    write_directory_atomically(path, fill)


def _swap_directory_in_python(path: str, fill) -> None:  # pragma: no cover - machines without the compiled core
    """The same swap without c3's core, in two renames: every folder it removes is one it made itself."""
    path = os.path.realpath(path)
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f"{name}.saving-", dir=parent)
    retired = tempfile.mkdtemp(prefix=f"{name}.replaced-", dir=parent)
    old = os.path.join(retired, name)
    try:
        fill(staging)
        if os.path.isdir(path):
            os.rename(path, old)
        try:
            os.rename(staging, path)
        except OSError:
            if os.path.isdir(old):
                os.rename(old, path)  # put the old one back
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


# ---- text, without c3's core ----------------------------------------------------------------------------------
class ByteCodec:
    """c3's byte-level tokenizer in Python: bytes 0-255, then <pad>, <bos>, <eos>, <img>, </img>, <imgpad>."""

    SPECIALS = ("<pad>", "<bos>", "<eos>", "<img>", "</img>", "<imgpad>")

    def encode(self, text: str) -> list:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        out, run = [], bytearray()
        for token in (int(i) for i in ids):
            if token < 256:
                run.append(token)
                continue
            out.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
            out.append(self.SPECIALS[token - 256] if token - 256 < len(self.SPECIALS) else "")
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)


class _TokenizersCodec:
    def __init__(self, path: str):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(path)

    def encode(self, text: str) -> list:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def codec_for(module: CascadeModule):
    """The module's tokenizer without c3's core: its tokenizer.json through the tokenizers package, else c3's
    byte-level tokenizer."""
    return _TokenizersCodec(module.tokenizer_file) if module.tokenizer_file else ByteCodec()
