"""Devices through accelerate (`device` in the run config, `unift.train.distributed.init`): here,
a machine without a GPU, `device: auto` is the CPU, the policy and the batches land on the
Accelerator's device, a device the machine lacks or a name no run knows is refused before the
model loads, and the GPU's precision choice follows what the GPU supports. The GPU paths
themselves cannot run here (no GPU): what is tested is that the same code runs on the CPU and
that every tensor a step reads is moved (on the meta device, which holds no data)."""

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from tests.train.helpers import ROOT, source, tiny_run
from unift import models, precision
from unift.config import ConfigError, RolloutSpec, load_config
from unift.rollout.task_source import Row, TaskRollout
from unift.train import losses
from unift.train.distributed import init, resolve
from unift.train.run import build_policy, build_sources, rollout_args, train
from unift.train.step import Source, SourceBatch, autocast, draw, to_device, train_step

NO_GPU = not torch.cuda.is_available() and not torch.backends.mps.is_available()


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_auto_is_the_cpu_here_and_the_policy_and_batches_land_on_the_accelerator_device(tmp_path):
    assert resolve("auto") == "cpu"
    dist = init("auto")
    device = dist.accelerator.device
    assert (dist.rank, dist.world, dist.device, device.type) == (0, 1, device, "cpu")
    config = tiny_run(tmp_path, [source("demonstration", "sft", "demonstrations.jsonl", batch_size=2)],
                      precision="fp32")
    policy, tokenizer, _ = build_policy(config, dist.device)
    assert {p.device for p in policy.parameters()} == {device}
    sources = build_sources(config, Path("."), policy, tokenizer)
    micro = [draw(sources, tokenizer, config.max_length, dist)]
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    metrics = train_step(policy, models.ReferencePolicy(policy), micro, optimizer, scheduler, precision="fp32",
                         dist=dist)
    batch = micro[0][0].batch
    assert {batch.input_ids.device, batch.loss_mask.device} == {device}
    assert metrics["tokens"] == batch.num_tokens  # one process: the step's tokens are this batch's


def test_to_device_moves_every_tensor_a_step_reads_in_place():
    """A rollout mini-batch moves as it is (same objects): PPO's later epochs are copies of it
    that must see pi_old set at its first use. The meta device stands in for a GPU."""
    _, tokenizer = models.load("tiny")
    rollout = TaskRollout(None, tokenizer, None, seed=0, **rollout_args(RolloutSpec(max_new_tokens=8)))
    rows = [Row([1, 2, 3], [4], [5, 6], 1.0, True, 0, kind="expert"), Row([1, 2, 3], [], [7], 0.0, False, 0)]
    rb = rollout.collate(rows, torch.tensor([1.0, -1.0]), [1, 0])
    rb.old_logps = rb.ref_logps = torch.zeros(rb.completion_mask.shape)
    src = Source("task", "task", losses.get("grpo", "task"), None, rollout=rollout)
    sb = SourceBatch(src, rb.batch, rollout=rb, ref_logps=rb.ref_logps, targets=torch.ones(2))
    meta = torch.device("meta")
    assert to_device(sb, meta) is sb and sb.rollout is rb and sb.batch is rb.batch
    moved = [sb.targets, sb.ref_logps, rb.batch.input_ids, rb.batch.attention_mask, rb.batch.loss_mask,
             rb.advantages, rb.rewards, rb.completion_mask, rb.hint_mask, rb.hint_k, rb.full_hint, rb.expert_mask,
             rb.old_logps, rb.ref_logps]
    assert all(t.device == meta for t in moved)
    later_epoch = dataclasses.replace(rb, stats={})  # as TaskRollout.next serves epoch 2
    assert later_epoch.old_logps.device == meta


def test_an_unknown_device_fails_at_config_load(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"device": "tpu", "sources": []}))
    with pytest.raises(ConfigError, match=r"run\.yaml: device: expected one of auto, cpu, cuda, mps, got 'tpu'"):
        load_config(path)
    with pytest.raises(ConfigError, match="device: expected one of"):
        load_config(None, ["device=gpu"])
    assert load_config(None, ["device=cpu"]).device == "cpu" and load_config(None).device == "auto"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_device_this_machine_lacks_stops_the_run_before_the_model_loads(tmp_path):
    config = tiny_run(tmp_path, [source("demonstration", "sft", "demonstrations.jsonl")], device="cuda")
    with pytest.raises(ConfigError, match="device: cuda is not available on this machine"):
        train(config)
    assert not Path(config.output_dir).exists()


@pytest.mark.parametrize("flag", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_sharded_accelerate_configs_are_refused(monkeypatch, flag):
    """unift all-reduces whole gradients itself and reads whole weights: an FSDP or DeepSpeed
    launch would shard them under it."""
    monkeypatch.setenv(flag, "true")
    with pytest.raises(ConfigError, match="is not supported"):
        init("cpu")


def test_precision_on_a_gpu_follows_what_it_supports(monkeypatch):
    """No measurement off the CPU (it would time the CPU): bf16 where CUDA supports it, else fp32;
    MPS fp32 under auto; an explicit bf16 on a GPU without bf16 is an error naming the key."""
    def no_measuring(*_):
        raise AssertionError("measured the CPU for a GPU run")

    def choice(*args, **kw):
        c = precision.choose(*args, **kw)
        return c.train, c.rollout

    monkeypatch.setattr(precision, "rates", no_measuring)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choice("auto", 64, 96, device="cuda") == ("bf16", "bfloat16")
    assert choice("fp32", 64, 96, device="cuda") == ("fp32", "float32")
    assert choice("bf16-master", 64, 96, device="cuda") == ("bf16-master", "bfloat16")
    assert choice("auto", 64, 96, device="mps") == ("fp32", "float32")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choice("auto", 64, 96, device=torch.device("cuda", 1)) == ("fp32", "float32")
    with pytest.raises(ValueError, match="precision: bf16 needs bf16"):
        precision.choose("bf16", 64, 96, device="cuda")


def test_autocast_follows_the_device():
    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with pytest.warns(UserWarning, match="CUDA is not available"):  # (it would run on a GPU)
        ctx = autocast("bf16", "cuda")
    assert (ctx.device, ctx.fast_dtype) == ("cuda", torch.bfloat16)
    with autocast("fp32", "cuda"):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_accelerate_configs_load_and_leave_precision_to_unift(path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    config = ClusterConfig.from_yaml_file(path)
    assert config.mixed_precision == "no"  # unift's `precision` sets the autocast
    assert config.distributed_type in (DistributedType.NO, DistributedType.MULTI_GPU)  # data parallel only
    assert config.num_processes >= 1
