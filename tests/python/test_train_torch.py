"""examples/train_torch.py on the CPU: two ranks under torchrun (gloo, DDP) follow the single-process run step by
step; a stopped and resumed run ends bit for bit where an uninterrupted one does; the saved directory loads in c3
and agrees with the module."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import c3
import c3.torch as c3_torch
from c3.cascade import scratch_model_config
from test_torch import check_agreement

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "examples", "train_torch.py")
SHAPE = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)


def train(tmp_path, name, ranks=1, extra=()):
    """Runs the script; returns the JSON records it printed (rank 0)."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
                if ranks > 1 else [sys.executable])
    command = launcher + [SCRIPT, "--cascade", str(tmp_path / "start"), "--output", str(tmp_path / name),
                          "--steps", "5", "--batch", "4", "--micro-batch", "1", "--device", "cpu", "--threads", "1",
                          "--learning-rate", "1e-3", "--warmup-steps", "1", "--log-every", "1",
                          "--context-tokens", "12", *extra]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("train_torch")
    cascade = c3.Cascade.new(scratch_model_config(SHAPE, 12, 4), scratch_model_config(SHAPE, 12, 4), 4, seed=0)
    cascade.save(str(tmp_path / "start"))
    straight = train(tmp_path, "straight", extra=["--freeze", "queries"])
    stopped = train(tmp_path, "stopped", extra=["--freeze", "queries", "--checkpoint-dir", str(tmp_path / "state"),
                                                "--stop-at-step", "3"])
    resumed = train(tmp_path, "resumed", extra=["--freeze", "queries", "--checkpoint-dir", str(tmp_path / "state"),
                                                "--resume"])
    ranks = train(tmp_path, "ranks", ranks=2, extra=["--freeze", "queries"])
    return tmp_path, cascade, straight, stopped, resumed, ranks


def test_two_ranks_follow_the_single_process_run(runs):
    tmp_path, _, straight, _, _, ranks = runs
    assert ranks[-1]["summary"]["world_size"] == 2 and ranks[-1]["summary"]["steps"] == 5
    losses = [record["loss"] for record in straight if "loss" in record]
    assert len(losses) == 5
    np.testing.assert_allclose([record["loss"] for record in ranks if "loss" in record], losses, rtol=1e-4)
    assert losses[-1] < losses[0]


def test_resumed_run_ends_where_the_uninterrupted_one_does(runs):
    tmp_path, _, straight, stopped, resumed, _ = runs
    assert stopped[-1]["summary"]["steps"] == 3 and resumed[-1]["summary"]["steps"] == 5
    assert [r["step"] for r in resumed if "step" in r] == [4, 5]
    assert [r["loss"] for r in resumed if "loss" in r] == [r["loss"] for r in straight if "loss" in r][3:]
    one, two = c3.Cascade.load(str(tmp_path / "straight")), c3.Cascade.load(str(tmp_path / "resumed"))
    for part in ("encoder", "decoder"):
        for name, value in getattr(one.model, part).parameters().items():
            np.testing.assert_array_equal(getattr(two.model, part).parameters()[name], value, err_msg=name)
    assert one.identity() == two.identity()


def test_trained_cascade_loads_in_c3_and_agrees_with_the_module(runs):
    tmp_path, start, _, _, _, _ = runs
    trained = c3.Cascade.load(str(tmp_path / "ranks"))
    module = c3_torch.load(str(tmp_path / "ranks"))
    check_agreement(trained, module, ["Training moved these weights.", "short text"])
    # The decoder moved; Q was frozen and stayed bit for bit.
    before, after = start.model.decoder.parameters(), trained.model.decoder.parameters()
    assert any(not np.array_equal(before[name], after[name]) for name in before)
    np.testing.assert_array_equal(trained.model.bridge_parameters()["model.Q.weight"],
                                  start.model.bridge_parameters()["model.Q.weight"])
    # What c3 loads is what the module held at the end of training (the last checkpointed state).
    state = torch.load(str(tmp_path / "state" / "state.pt"))["module"]
    for name, value in c3_torch.load(str(tmp_path / "resumed")).state_dict().items():
        assert torch.equal(value, state[name]), name
