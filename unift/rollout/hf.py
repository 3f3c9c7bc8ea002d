"""The in-process PyTorch rollout engine (backend "hf"), built for a CPU.

One `generate` call, per chunk of at most `max_batch_size` samples:

1. prefill: each distinct prompt is encoded once into a prompt KV cache that its G sample rows
   share while decoding -- the prompt is never re-encoded or copied G times -- and the prefix
   all prompts share (system prompt, instructions) is encoded once for all of them;
2. decode: one token per step for every live row, the per-row KV cache preallocated and grown
   in chunks (`grow_chunk` columns) so attention is always over contiguous tensors;
3. sampling in fp32 with an explicit seeded `torch.Generator` (`sampling.sample`); EOS and stop
   strings (`sampling.StopStrings`, checked incrementally) finish a row;
4. finished rows are dropped from the batch (the cache compacted) once they are at least
   `compact_fraction` of it, and the loop stops when every row is done.

`impl="generate"` (automatic for architectures `decoder.Decoder` does not cover) uses
`transformers.generate` on a copy in the engine's dtype instead: same API, 3-4x slower here
(docs/LOG.md). The dtype: "auto" (default) is bf16 where bf16 products measured faster on this
CPU, else fp32 (`unift.precision`); both run on oneDNN-prepacked weights where available.

Devices: the generation copy lives on the training model's device (a GPU's: `device` in the
run config). Sampling itself (step 3) runs on the CPU there too, on a copy of the step's logits,
with the same CPU generator: a seed draws the same uniforms on any device, and the (B, V) copy
per step is small next to the step's forward pass. Tested on the CPU only (this project has
no GPU); on a GPU it is the same code with its tensors on the device.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from unift.rollout.decoder import Decoder, prompt_layout, unsupported_reason
from unift.rollout.engine import Rollouts, draw_seed, resolve_dtype
from unift.rollout.sampling import StopStrings, sample


def eos_token_ids(model, tokenizer) -> set[int]:
    """EOS ids from the tokenizer and the model's generation config."""
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list | tuple) else [gen_eos])
    return {int(i) for i in ids if i is not None}


class HFEngine:
    """Rollouts with a generation copy of the policy, in this process. See module docstring."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        dtype="auto",
        max_batch_size: int = 64,
        impl: str = "auto",
        grow_chunk: int = 128,
        compact_fraction: float = 0.25,
        prefill_tokens: int = 2048,
        threads: int | None = None,
        prepack: bool | None = None,
        share_prefix: bool = True,
    ):
        """impl: "decoder" (lean Llama/Qwen decoder), "generate" (transformers), "auto" (decoder
        when supported). grow_chunk: KV-cache columns added at a time. compact_fraction: drop
        finished rows once they are this share of the batch. prefill_tokens: query tokens per
        prefill forward (bounds its memory). threads: torch threads while generating (restored
        afterwards; None: unchanged). On a shared, busy 2-core machine 1 thread was far faster
        than 2 for decoding (its many small ops wait on descheduled OpenMP threads).
        prepack: decoder weights in oneDNN's blocked layout (None: where available).
        share_prefix: encode the prefix all prompts of a call share once (False: per prompt)."""
        self.tokenizer = tokenizer
        self.dtype = resolve_dtype(dtype, model)
        self.max_batch_size = max_batch_size
        self.grow_chunk = grow_chunk
        self.compact_fraction = compact_fraction
        self.prefill_tokens = prefill_tokens
        self.threads = threads
        self.prepack = prepack
        self.share_prefix = share_prefix
        reason = unsupported_reason(model.config)
        if impl == "auto":
            impl = "decoder" if reason is None else "generate"
        if impl == "decoder" and reason is not None:
            raise ValueError(f"impl='decoder' does not support this model: {reason}")
        if impl not in ("decoder", "generate"):
            raise ValueError(f"unknown impl {impl!r}: expected 'auto', 'decoder' or 'generate'")
        self.impl = impl
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        )
        self.decoder: Decoder | None = None
        self.hf_model = None
        self.stats: dict[str, float] = {}
        """Timings of the last generate call: prefill_s, decode_s, steps, compactions."""
        self.sync(model)

    # -- weights ------------------------------------------------------------------------------

    @torch.no_grad()
    def sync(self, model) -> None:
        """Copy the training weights in (LoRA merged), converting to the engine dtype."""
        if self.impl == "decoder":
            if self.decoder is None:
                self.decoder = Decoder(model, self.dtype, pack=self.prepack)
            else:
                self.decoder.sync(model)
            return
        generation_copy = copy.deepcopy(model)
        if hasattr(generation_copy, "merge_and_unload"):
            generation_copy = generation_copy.merge_and_unload()
        self.hf_model = generation_copy.to(self.dtype).eval().requires_grad_(False)

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        prompts: list[list[int]],
        num_samples: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop_strings: Sequence[str] = (),
        seed: int | None = None,
        *,
        ignore_eos: bool = False,
    ) -> Rollouts:
        """See `engine.Engine.generate`. ignore_eos: never stop at EOS (benchmarks: equal work)."""
        threads = torch.get_num_threads()
        if self.threads and self.threads != threads:
            torch.set_num_threads(self.threads)
        try:
            return self._generate(
                prompts,
                num_samples,
                max_new_tokens,
                temperature,
                top_p,
                stop_strings,
                seed,
                ignore_eos,
            )
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    def _generate(
        self,
        prompts,
        num_samples,
        max_new_tokens,
        temperature,
        top_p,
        stop_strings,
        seed,
        ignore_eos,
    ) -> Rollouts:
        start = time.perf_counter()
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        if num_samples < 1 or max_new_tokens < 0:
            raise ValueError("num_samples must be >= 1 and max_new_tokens >= 0")
        generator = torch.Generator().manual_seed(draw_seed(seed))
        stops = StopStrings(self.tokenizer, stop_strings)
        rows = [p for p in range(len(prompts)) for _ in range(num_samples)]  # prompt-major
        completions: list[list[int]] = []
        logprobs: list[list[float]] = []
        finished: list[bool] = []
        self.stats = dict(prefill_s=0.0, decode_s=0.0, steps=0, compactions=0)
        for lo in range(0, len(rows), self.max_batch_size):
            chunk = rows[lo : lo + self.max_batch_size]
            if max_new_tokens == 0:
                out = ([[] for _ in chunk], [[] for _ in chunk], [False for _ in chunk])
            elif self.impl == "decoder":
                out = self._decode(
                    prompts, chunk, max_new_tokens, temperature, top_p, stops, generator, ignore_eos
                )
            else:
                out = self._hf_generate(
                    prompts, chunk, max_new_tokens, temperature, top_p, stops, generator, ignore_eos
                )
            completions += out[0]
            logprobs += out[1]
            finished += out[2]
        texts = []
        for ids in self.tokenizer.batch_decode(completions, skip_special_tokens=True):
            texts.append(stops.cut(ids)[0] if stops else ids)
        return Rollouts(
            prompt_ids=[list(prompts[p]) for p in rows],
            completion_ids=completions,
            logprobs=logprobs,
            texts=texts,
            finished=finished,
            num_generated_tokens=sum(len(c) for c in completions),
            seconds=time.perf_counter() - start,
        )

    # -- the lean decoder path ----------------------------------------------------------------

    @torch.inference_mode()
    def _decode(self, prompts, chunk, max_new, temperature, top_p, stops, generator, ignore_eos):
        dec = self.decoder
        t0 = time.perf_counter()
        distinct = sorted(set(chunk))
        device = dec.device
        ids, valid, shared = prompt_layout([prompts[p] for p in distinct], self.pad_id, self.share_prefix)
        ids, valid = ids.to(device), valid.to(device)
        Lp = ids.shape[1]
        prompt_cache, hidden = dec.prefill(ids, valid, self.prefill_tokens, shared)
        row_prompt = [distinct.index(p) for p in chunk]  # chunk row -> prefilled prompt
        src = torch.tensor(row_prompt, device=device)
        # temperature is applied to the hidden state (B x D) rather than to the logits (B x V)
        scale = 1.0 if temperature <= 0 else 1.0 / temperature
        B, V = len(chunk), dec.lm_head.shape[0]
        # reused buffers: fresh multi-MB tensors page-fault at ~1 ms/MB on this VM
        # sampling on the CPU (see the module docstring): `work` stays there
        logits_buf, work = torch.empty(B, V, dtype=dec.dtype, device=device), torch.empty(B, V)
        logits = dec.logits(hidden * scale if scale != 1.0 else hidden).index_select(0, src)
        positions = valid.sum(1).index_select(0, src)  # (B,) next rotary position of each row
        rows = dec.new_rows(prompt_cache, row_prompt, min(max_new - 1, self.grow_chunk))
        self.stats["prefill_s"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        active = list(range(B))  # chunk row held by each cache row
        tokens: list[list[int]] = [[] for _ in range(B)]
        logps: list[list[float]] = [[] for _ in range(B)]
        done = [False] * B
        finished = [False] * B
        sample_temperature = 0.0 if temperature <= 0 else 1.0  # already scaled
        for t in range(max_new):
            tok, lp = sample(logits.cpu(), sample_temperature, top_p, generator, work)  # (b,), (b,)
            tok_list, lp_list = tok.tolist(), lp.tolist()
            tok = tok.to(device)
            live = []  # cache rows still generating
            for i, r in enumerate(active):
                if done[r]:
                    continue
                tokens[r].append(tok_list[i])
                logps[r].append(lp_list[i])
                if not ignore_eos and tok_list[i] in self.eos_ids:
                    done[r] = finished[r] = True
                else:
                    live.append(i)
            if stops and live:
                hits = stops.hits([tokens[active[i]] for i in live])
                for i, hit in zip(list(live), hits, strict=True):
                    if hit:
                        done[active[i]] = finished[active[i]] = True
                        live.remove(i)
            self.stats["steps"] += 1
            if not live or t == max_new - 1:
                break
            must_grow = rows.length == rows.capacity
            dead = len(active) - len(live)
            if dead and (must_grow or dead >= self.compact_fraction * len(active)):
                rows.select(live)
                keep = torch.tensor(live, device=device)
                tok, positions = tok.index_select(0, keep), positions.index_select(0, keep)
                active = [active[i] for i in live]
                self.stats["compactions"] += 1
            if must_grow:
                rows.grow(min(max_new - 1, rows.capacity + self.grow_chunk))
            rows.mask[..., Lp + rows.length] = 0.0  # open the new column: the token sees itself
            hidden = dec.decode(tok, positions, rows)
            positions = positions + 1
            logits = dec.logits(hidden * scale if scale != 1.0 else hidden, out=logits_buf)
        self.stats["decode_s"] += time.perf_counter() - t0
        return tokens, logps, finished

    # -- the transformers.generate fallback ---------------------------------------------------

    @torch.inference_mode()
    def _hf_generate(
        self, prompts, chunk, max_new, temperature, top_p, stops, generator, ignore_eos
    ):
        model = self.hf_model
        t0 = time.perf_counter()
        Lp = max(len(prompts[p]) for p in chunk)
        ids = torch.full((len(chunk), Lp), self.pad_id, dtype=torch.long)
        attention = torch.zeros(len(chunk), Lp, dtype=torch.long)
        for i, p in enumerate(chunk):
            ids[i, Lp - len(prompts[p]) :] = torch.tensor(prompts[p])
            attention[i, Lp - len(prompts[p]) :] = 1
        ids, attention = ids.to(model.device), attention.to(model.device)
        greedy = temperature <= 0
        kwargs = (
            dict(do_sample=False)
            if greedy
            else dict(do_sample=True, temperature=temperature, top_p=top_p)
        )
        if ignore_eos:
            kwargs["min_new_tokens"] = max_new
        if stops:
            kwargs.update(stop_strings=list(stops.stops), tokenizer=self.tokenizer)
        seed = int(torch.randint(2**62, (1,), generator=generator).item())
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            out = model.generate(
                input_ids=ids,
                attention_mask=attention,
                max_new_tokens=max_new,
                top_k=0,
                pad_token_id=self.pad_id,
                eos_token_id=sorted(self.eos_ids),
                output_logits=True,
                return_dict_in_generate=True,
                **kwargs,
            )
        new = out.sequences[:, Lp:]  # (B, steps)
        scale = 1.0 if greedy else 1.0 / temperature
        steps = torch.stack(out.logits, dim=1).float() * scale  # (B, steps, V) raw logits / T
        lp = F.log_softmax(steps, dim=-1).gather(-1, new[..., None])[..., 0]
        tokens, logps, finished = [], [], []
        for i in range(len(chunk)):
            seq, n, fin = new[i].tolist(), new.shape[1], False
            for j, token in enumerate(seq):  # cut where our own rules finish the row
                if (not ignore_eos and token in self.eos_ids) or (
                    stops and stops.hits([seq[: j + 1]])[0]
                ):
                    n, fin = j + 1, True
                    break
            tokens.append(seq[:n])
            logps.append(lp[i, :n].tolist())
            finished.append(fin)
        self.stats["decode_s"] += time.perf_counter() - t0
        return tokens, logps, finished
