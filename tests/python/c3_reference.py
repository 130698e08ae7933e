"""A PyTorch reference for C3 (Context Cascade Compression) on top of transformers' causal LMs.

It follows the released model (the official C3 code and checkpoint layout), written independently of c3:
  encoder input  = context ids (left-padded) + <img> + N slots + </img>; the slot embeddings are Q [N, d_enc];
                   attention mask over the real tokens, position_ids = cumsum(mask) - 1 for the real tokens
  latents        = the encoder's last hidden_states (after the final norm) at the slots -> mm_projector
  decoder input  = prompt prefix + <img> + N slots + </img> + prompt suffix + answer (right-padded); the slot
                   embeddings are the latents
  loss           = next-token cross-entropy on the answer tokens only (mean over them)
  baselines      = the same decoder with another latent block (block_for): mean_pool (means of N contiguous windows
                   i*L//N .. (i+1)*L//N of the context's encoder embeddings -> mm_projector), truncate /
                   truncate_last (the decoder's embeddings of the first / last N context tokens), no_context (an
                   empty block), full_context (every context token, the padding masked)
  continuation   = sum of -log p(continuation token | block, earlier continuation tokens), in nats
  documents      = K chunks compressed alone; the decoder prompt holds their K blocks in order, each in its own
                   <img> ... </img>, then a task's suffix (left-padded, masked) in place of the prompt suffix
  greedy decode  = a loop of full forwards (no cache) with argmax, optionally through transformers'
                   NoRepeatNGramLogitsProcessor over the whole decoder input ids (prompt included, as
                   generate() sees them in the official model).
"""
from __future__ import annotations

import numpy as np
import torch
import transformers
from torch import nn


class Bridge(nn.Module):
    """Q and the projector, registered so that named_parameters() gives the official checkpoint names:
    model.Q.weight, model.mm_projector.weight/.bias (linear) or model.mm_projector.0/.2.* (MLP)."""

    def __init__(self, num_latents: int, encoder_hidden: int, decoder_hidden: int, projector: str = "linear"):
        super().__init__()
        self.model = nn.Module()
        self.model.Q = nn.Embedding(num_latents, encoder_hidden)
        if projector == "linear":
            self.model.mm_projector = nn.Linear(encoder_hidden, decoder_hidden)
        elif projector == "mlp":
            self.model.mm_projector = nn.Sequential(nn.Linear(encoder_hidden, decoder_hidden), nn.GELU(),
                                                    nn.Linear(decoder_hidden, decoder_hidden))
        else:
            raise ValueError(projector)


def positions_for(mask: torch.Tensor) -> torch.Tensor:
    """cumsum(mask) - 1 at the real tokens, 0 at padding."""
    return (torch.cumsum(mask, dim=1) - 1).clamp(min=0) * mask


class ReferenceCascade(nn.Module):
    def __init__(self, encoder, decoder, num_latents, projector="linear", latent_start=0, latent_end=0,
                 latent_pad=0, prompt_prefix=(), prompt_suffix=()):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.num_latents = int(num_latents)
        self.bridge = Bridge(self.num_latents, encoder.config.hidden_size, decoder.config.hidden_size, projector)
        self.latent_start, self.latent_end, self.latent_pad = int(latent_start), int(latent_end), int(latent_pad)
        self.prompt_prefix = [int(i) for i in prompt_prefix]
        self.prompt_suffix = [int(i) for i in prompt_suffix]

    @classmethod
    def from_c3(cls, model, encoder, decoder):
        """The reference for a c3 CascadeModel whose encoder/decoder hold the same weights as the given
        transformers models; Q and the projector are copied from c3."""
        config = model.config
        reference = cls(encoder, decoder, config["num_latents"], config["projector"], config["latent_start_token"],
                        config["latent_end_token"], config["latent_pad_token"], config["prompt_prefix"],
                        config["prompt_suffix"])
        reference.load_bridge(model.bridge_parameters())
        return reference

    def load_bridge(self, arrays: dict):
        parameters = dict(self.bridge.named_parameters())
        assert sorted(parameters) == sorted(arrays), (sorted(parameters), sorted(arrays))
        with torch.no_grad():
            for name, value in arrays.items():
                parameters[name].copy_(torch.from_numpy(np.array(value, dtype=np.float32)))

    # ---- the layout -------------------------------------------------------------------------------------------
    def prompt_ids(self, width=None) -> list:
        width = self.num_latents if width is None else width
        return (self.prompt_prefix + [self.latent_start] + [self.latent_pad] * width + [self.latent_end]
                + self.prompt_suffix)

    @property
    def slot_start(self) -> int:
        return len(self.prompt_prefix) + 1

    @staticmethod
    def _replace_rows(embeddings, start, values):
        """embeddings [B, L, d] with rows start..start+N replaced by values [B, N, d] (autograd-friendly)."""
        end = start + values.shape[1]
        return torch.cat([embeddings[:, :start], values, embeddings[:, end:]], dim=1)

    # ---- encoder side -----------------------------------------------------------------------------------------
    def compress(self, contexts, context_mask):
        contexts, context_mask = torch.as_tensor(np.asarray(contexts), dtype=torch.long), \
            torch.as_tensor(np.asarray(context_mask), dtype=torch.long)
        batch, length = contexts.shape
        N = self.num_latents
        block = torch.tensor([self.latent_start] + [self.latent_pad] * N + [self.latent_end]).expand(batch, -1)
        ids = torch.cat([contexts * context_mask, block], dim=1)
        mask = torch.cat([context_mask, torch.ones(batch, N + 2, dtype=torch.long)], dim=1)
        embeddings = self.encoder.get_input_embeddings()(ids)
        queries = self.bridge.model.Q.weight.unsqueeze(0).expand(batch, -1, -1)
        embeddings = self._replace_rows(embeddings, length + 1, queries)
        out = self.encoder(inputs_embeds=embeddings, attention_mask=mask, position_ids=positions_for(mask),
                           output_hidden_states=True)
        slots = out.hidden_states[-1][:, length + 1:length + 1 + N]
        return self.bridge.model.mm_projector(slots)

    # ---- decoder side -----------------------------------------------------------------------------------------
    def decoder_logits(self, latents, answers=None, answer_mask=None, latent_mask=None):
        """Logits [B, P + La, V] for the prompt with latents [B, W, d] (rows masked out by latent_mask [B, W])
        followed by the (right-padded) answers."""
        latents = torch.as_tensor(latents) if not isinstance(latents, torch.Tensor) else latents
        batch, width = latents.shape[0], latents.shape[1]
        prompt = torch.tensor(self.prompt_ids(width)).expand(batch, -1)
        prompt_mask = torch.ones_like(prompt)
        if latent_mask is not None:
            prompt_mask = prompt_mask.clone()
            prompt_mask[:, self.slot_start:self.slot_start + width] = torch.as_tensor(np.asarray(latent_mask),
                                                                                      dtype=torch.long)
        if answers is None:
            answers = torch.zeros(batch, 0, dtype=torch.long)
            answer_mask = answers
        answers = torch.as_tensor(np.asarray(answers), dtype=torch.long)
        answer_mask = (torch.ones_like(answers) if answer_mask is None
                       else torch.as_tensor(np.asarray(answer_mask), dtype=torch.long))
        ids = torch.cat([prompt, answers * answer_mask], dim=1)
        mask = torch.cat([prompt_mask, answer_mask], dim=1)
        embeddings = self._replace_rows(self.decoder.get_input_embeddings()(ids), self.slot_start, latents)
        return self.decoder(inputs_embeds=embeddings, attention_mask=mask, position_ids=positions_for(mask)).logits

    def answer_log_softmax(self, latents, answers, answer_mask):
        """log_softmax [B, La, V] of the prediction for each answer position (teacher forcing)."""
        logits = self.decoder_logits(latents, answers, answer_mask)
        P = len(self.prompt_ids())
        La = np.asarray(answers).shape[1]
        return torch.log_softmax(logits[:, P - 1:P - 1 + La].double(), dim=-1)

    def block_for(self, method, contexts, context_mask):
        """(latents [B, W, d_dec], latent mask [B, W] or None) of a method (see the module docstring)."""
        contexts = torch.as_tensor(np.asarray(contexts), dtype=torch.long)
        context_mask = torch.as_tensor(np.asarray(context_mask), dtype=torch.long)
        batch, length = contexts.shape
        N = self.num_latents
        if method == "c3":
            return self.compress(contexts, context_mask), None
        if method == "no_context":
            return torch.zeros(batch, 0, self.decoder.config.hidden_size), None
        if method == "full_context":
            return self.decoder.get_input_embeddings()(contexts * context_mask), context_mask
        rows = []
        for b in range(batch):
            real = contexts[b][context_mask[b] == 1]
            if method == "mean_pool":
                embeddings = self.encoder.get_input_embeddings()(real)
                L = len(real)
                rows.append(torch.stack([embeddings[i * L // N:(i + 1) * L // N].mean(dim=0) for i in range(N)]))
            elif method == "truncate":
                rows.append(self.decoder.get_input_embeddings()(real[:N]))
            elif method == "truncate_last":
                rows.append(self.decoder.get_input_embeddings()(real[len(real) - N:]))
            else:
                raise ValueError(method)
        block = torch.stack(rows)
        return (self.bridge.model.mm_projector(block) if method == "mean_pool" else block), None

    def method_answer_logits(self, method, contexts, context_mask, answers, answer_mask):
        """(logits [B, La, V] predicting each answer token with the method's block, answers, answer_mask) as
        tensors."""
        latents, latent_mask = self.block_for(method, contexts, context_mask)
        logits = self.decoder_logits(latents, answers, answer_mask, latent_mask)
        P = len(self.prompt_ids(latents.shape[1]))
        answers = torch.as_tensor(np.asarray(answers), dtype=torch.long)
        answer_mask = torch.as_tensor(np.asarray(answer_mask), dtype=torch.long)
        return logits[:, P - 1:P - 1 + answers.shape[1]], answers, answer_mask

    def continuation_nats(self, method, contexts, context_mask, continuations, continuation_mask):
        """Per-row sum of -log p(continuation token | the method's block, earlier tokens), float64 [B]."""
        logits, continuations, mask = self.method_answer_logits(method, contexts, context_mask, continuations,
                                                                continuation_mask)
        picked = torch.log_softmax(logits.double(), dim=-1).gather(-1, continuations[..., None])[..., 0]
        return (-(picked * mask)).sum(dim=1).detach().numpy()

    def method_loss(self, method, contexts, context_mask, answers, answer_mask):
        """Mean answer-token cross-entropy with the method's block (autograd through every part it uses)."""
        predictions, answers, answer_mask = self.method_answer_logits(method, contexts, context_mask, answers,
                                                                      answer_mask)
        targets = torch.where(answer_mask == 1, answers, torch.full_like(answers, -100))
        return nn.functional.cross_entropy(predictions.reshape(-1, predictions.shape[-1]), targets.reshape(-1),
                                           ignore_index=-100)

    def loss(self, contexts, context_mask, answers, answer_mask):
        latents = self.compress(contexts, context_mask)
        logits = self.decoder_logits(latents, answers, answer_mask)
        P = len(self.prompt_ids())
        answers = torch.as_tensor(np.asarray(answers), dtype=torch.long)
        answer_mask = torch.as_tensor(np.asarray(answer_mask), dtype=torch.long)
        predictions = logits[:, P - 1:P - 1 + answers.shape[1]]
        targets = torch.where(answer_mask == 1, answers, torch.full_like(answers, -100))
        return nn.functional.cross_entropy(predictions.reshape(-1, predictions.shape[-1]), targets.reshape(-1),
                                           ignore_index=-100)

    # ---- documents: K blocks and a task's suffix -----------------------------------------------------------------
    def document_logits(self, blocks, answers, answer_mask=None, task=None, task_mask=None):
        """Logits [B, P + La, V]. blocks: a list of K latent tensors [B, W, d], one per chunk; task [B, S]
        (left-padded by task_mask) replaces the prompt suffix (None: the prompt suffix)."""
        batch, width = blocks[0].shape[0], blocks[0].shape[1]
        if task is None:
            task = torch.tensor([self.prompt_suffix], dtype=torch.long).expand(batch, -1)
        task = torch.as_tensor(np.asarray(task), dtype=torch.long)
        task_mask = (torch.ones_like(task) if task_mask is None
                     else torch.as_tensor(np.asarray(task_mask), dtype=torch.long))
        answers = torch.as_tensor(np.asarray(answers), dtype=torch.long)
        answer_mask = (torch.ones_like(answers) if answer_mask is None
                       else torch.as_tensor(np.asarray(answer_mask), dtype=torch.long))
        embed = self.decoder.get_input_embeddings()

        def tokens(ids, mask=None):
            ids = torch.as_tensor(ids, dtype=torch.long).expand(batch, -1) if not torch.is_tensor(ids) else ids
            mask = torch.ones_like(ids) if mask is None else mask
            return embed(ids * mask), mask

        parts = [tokens([self.prompt_prefix])] if self.prompt_prefix else []
        for block in blocks:
            parts.append(tokens([[self.latent_start]]))
            parts.append((block, torch.ones(batch, width, dtype=torch.long)))
            parts.append(tokens([[self.latent_end]]))
        parts += [tokens(task, task_mask), tokens(answers, answer_mask)]
        embeddings = torch.cat([part[0] for part in parts], dim=1)
        mask = torch.cat([part[1] for part in parts], dim=1)
        return self.decoder(inputs_embeds=embeddings, attention_mask=mask, position_ids=positions_for(mask)).logits

    def document_answer_logits(self, blocks, answers, answer_mask=None, task=None, task_mask=None):
        """Logits [B, La, V] predicting each answer token (teacher forcing)."""
        La = np.asarray(answers).shape[1]
        logits = self.document_logits(blocks, answers, answer_mask, task, task_mask)
        P = logits.shape[1] - La
        return logits[:, P - 1:P - 1 + La]

    def document_loss(self, chunks, chunk_mask, answers, answer_mask, task=None, task_mask=None):
        """Mean answer-token cross-entropy when each answer reads K = len(chunks) // len(answers) consecutive
        chunks [B * K, Lc], each compressed alone (autograd through every part)."""
        answers = torch.as_tensor(np.asarray(answers), dtype=torch.long)
        answer_mask = torch.as_tensor(np.asarray(answer_mask), dtype=torch.long)
        batch = answers.shape[0]
        K = np.asarray(chunks).shape[0] // batch
        latents = self.compress(chunks, chunk_mask)  # [B * K, N, d]
        blocks = [latents[k::K] for k in range(K)]
        predictions = self.document_answer_logits(blocks, answers, answer_mask, task, task_mask)
        targets = torch.where(answer_mask == 1, answers, torch.full_like(answers, -100))
        return nn.functional.cross_entropy(predictions.reshape(-1, predictions.shape[-1]), targets.reshape(-1),
                                           ignore_index=-100)

    @torch.no_grad()
    def document_greedy(self, blocks, max_new_tokens, task=None, task_mask=None, stop_tokens=()):
        """(tokens [B, steps], lengths [B]) by full forwards with argmax over a document's blocks."""
        batch = blocks[0].shape[0]
        generated = torch.zeros(batch, 0, dtype=torch.long)
        done, rows, lengths = [False] * batch, [[] for _ in range(batch)], [0] * batch
        for _ in range(max_new_tokens):
            choice = self.document_logits(blocks, generated, None, task, task_mask)[:, -1].argmax(dim=-1)
            for b in range(batch):
                rows[b].append(0 if done[b] else int(choice[b]))
                lengths[b] += not done[b]
                done[b] = done[b] or int(choice[b]) in stop_tokens
            generated = torch.cat([generated, choice[:, None]], dim=1)
            if all(done):
                break
        return np.array(rows, dtype=np.int64), np.array(lengths, dtype=np.int64)

    @torch.no_grad()
    def greedy(self, latents, max_new_tokens, stop_tokens=(), no_repeat_ngram_size=0, pad_token=0):
        """(tokens [B, steps], lengths [B]) by a loop of full forwards with argmax; a row ends after a stop token
        (kept) and is filled with pad_token after."""
        latents = torch.as_tensor(latents)
        batch = latents.shape[0]
        processor = (transformers.NoRepeatNGramLogitsProcessor(no_repeat_ngram_size) if no_repeat_ngram_size
                     else None)
        prompt = torch.tensor(self.prompt_ids()).expand(batch, -1)
        generated = torch.zeros(batch, 0, dtype=torch.long)
        done = [False] * batch
        rows = [[] for _ in range(batch)]
        lengths = [0] * batch
        for _ in range(max_new_tokens):
            scores = self.decoder_logits(latents, generated)[:, -1].float()
            if processor is not None:
                scores = processor(torch.cat([prompt, generated], dim=1), scores)
            choice = scores.argmax(dim=-1)
            for b in range(batch):
                if done[b]:
                    rows[b].append(pad_token)
                    continue
                rows[b].append(int(choice[b]))
                lengths[b] += 1
                done[b] = int(choice[b]) in stop_tokens
            generated = torch.cat([generated, choice[:, None]], dim=1)
            if all(done):
                break
        return np.array(rows, dtype=np.int64), np.array(lengths, dtype=np.int64)


def make_cascade_pair(tmp_path, encoder_model, decoder_model, config: dict, seed: int = 0):
    """(c3 CascadeModel, ReferenceCascade) over the same weights: the transformers models are saved, loaded by c3,
    joined by CascadeModel.from_models (Q and projector seeded), and Q/projector copied back into the reference."""
    import c3

    encoder_dir, decoder_dir = tmp_path / "encoder", tmp_path / "decoder"
    encoder_model.save_pretrained(encoder_dir)
    decoder_model.save_pretrained(decoder_dir)
    model = c3.CascadeModel.from_models(c3.load_model(str(encoder_dir)), c3.load_model(str(decoder_dir)), config,
                                        seed=seed)
    return model, ReferenceCascade.from_c3(model, encoder_model, decoder_model)


def named_gradients(module: nn.Module) -> dict:
    """name -> gradient as NumPy (zeros where autograd left None)."""
    return {name: (p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape), np.float32))
            for name, p in module.named_parameters()}
