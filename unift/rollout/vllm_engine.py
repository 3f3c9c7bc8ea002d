"""The vLLM rollout backend (`rollout.backend: vllm`), for GPU machines.

`vllm` is imported only when this backend is built; without it `make_engine("vllm", ...)` raises
an ImportError saying so (the default backend "hf" needs no GPU).

Layout: vLLM runs inside the trainer's process on the same GPU ("colocate", like TRL's
`vllm_mode="colocate"`), started from the policy's model directory with `gpu_memory_utilization`
bounding its share of memory; `VLLM_ENABLE_V1_MULTIPROCESSING=0` keeps its engine core in this
process so the weights can be reached directly.

Weight sync: `sync(model)` builds the training weights in Hugging Face names, LoRA merged
(W + scale * B @ A per adapted layer, `merged_state_dict`; the PEFT model itself is not modified),
and hands them to the vLLM model's own `load_weights`, which maps HF names onto its fused layers.
No disk round trip, no restart. The prefix cache is then reset: cached prompt states belong to
the old weights.

Log-probs: vLLM is started with `logprobs_mode="processed_logprobs"`, i.e. log-probs of the
distribution it samples from after temperature *and* top-k/top-p; with top_p = 1 (the RL default)
that is log softmax(logits / T), the same quantity as the "hf" backend returns. With top_p < 1
vLLM's are renormalised over the nucleus, unlike the "hf" backend's (see `Rollouts.logprobs`).

Not testable on the CPU machine this was written on: only the missing-vllm error is tested.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from torch import Tensor

from unift.rollout.decoder import effective_bias, effective_weight
from unift.rollout.engine import Rollouts, draw_seed


def merged_state_dict(model) -> dict[str, Tensor]:
    """Weights of `model` under the plain transformers names, LoRA adapters merged in."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    out: dict[str, Tensor] = {}
    for name, module in base.named_modules():
        if hasattr(module, "base_layer") and hasattr(module, "lora_A"):
            out[f"{name}.weight"] = effective_weight(module).detach()
            if effective_bias(module) is not None:
                out[f"{name}.bias"] = effective_bias(module).detach()
    for name, param in base.named_parameters():
        if ".lora_" in name or "original_module" in name:
            continue
        name = name.replace(".base_layer", "").replace(".modules_to_save.default", "")
        out.setdefault(name, param.detach())
    return out


class VLLMEngine:
    """Rollouts with vLLM in this process. See the module docstring."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        dtype="bfloat16",
        max_batch_size: int = 64,
        model_path: str | None = None,
        gpu_memory_utilization: float = 0.3,
        max_model_len: int = 4096,
        **llm_kwargs,
    ):
        """model_path: directory vLLM starts from (default: the model's `name_or_path`); its
        weights are overwritten by `sync(model)` right away."""
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            import vllm
        except ImportError as error:
            raise ImportError(
                "rollout.backend 'vllm' needs the vllm package (GPU machines): `pip install vllm`. "
                "The default backend 'hf' runs on a CPU without it."
            ) from error
        self._vllm = vllm
        self.tokenizer = tokenizer
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        path = model_path or base.config.name_or_path
        if not path or not os.path.isdir(path):
            raise ValueError("the vllm backend needs model_path= (a Hugging Face model directory)")
        self.llm = vllm.LLM(
            model=path,
            dtype=dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch."),
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_seqs=max_batch_size,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
            logprobs_mode="processed_logprobs",
            **llm_kwargs,
        )
        self.sync(model)

    def sync(self, model) -> None:
        weights = list(merged_state_dict(model).items())
        engine = getattr(self.llm, "llm_engine", None)
        try:  # in-process engine core: the model object itself
            worker = engine.model_executor.driver_worker
            runner = getattr(worker, "model_runner", None) or worker.worker.model_runner
            runner.model.load_weights(weights)
        except AttributeError:  # newer / multiprocess layouts: run it on the workers
            self.llm.apply_model(lambda vllm_model: vllm_model.load_weights(weights))
        self.llm.reset_prefix_cache()

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
        start = time.perf_counter()
        params = self._vllm.SamplingParams(
            n=num_samples,
            temperature=max(temperature, 0.0),
            top_p=top_p,
            max_tokens=max_new_tokens,
            stop=list(stop_strings) or None,
            include_stop_str_in_output=True,
            logprobs=0,  # only the sampled token's
            seed=draw_seed(seed),
            ignore_eos=ignore_eos,
            skip_special_tokens=True,
        )
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        rollouts = Rollouts([], [], [], [], [], 0, 0.0)
        for prompt, output in zip(prompts, outputs, strict=True):
            for sample in output.outputs:  # the G samples of this prompt: groups stay contiguous
                ids = list(sample.token_ids)
                rollouts.prompt_ids.append(list(prompt))
                rollouts.completion_ids.append(ids)
                rollouts.logprobs.append(
                    [step[t].logprob for step, t in zip(sample.logprobs, ids, strict=True)]
                )
                rollouts.texts.append(sample.text)
                rollouts.finished.append(sample.finish_reason == "stop")
                rollouts.num_generated_tokens += len(ids)
        rollouts.seconds = time.perf_counter() - start
        return rollouts
