"""The same training command under torchrun with 2 CPU processes (gloo) follows the
single-process loss curve: each rank takes half of the same global batch and DDP
averages the gradients."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open


def history(ckpt: Path) -> list[dict]:
    with safe_open(str(ckpt), framework="pt") as f:
        return json.loads(f.metadata()["history"])


def test_two_process_ddp_matches_one_process(tmp_path, tiny_dataset, tiny_hubert):
    args = ["train-s2g", "--data", str(tiny_dataset), "--encoder", str(tiny_hubert), "--steps", "8",
            "--batch", "4", "--crop-frames", "12", "--hidden", "16", "--checkpoint-every", "100"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "emotalk3d_addon.backend.tools.cli", *args, "--out",
                             str(tmp_path / "one")], capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr
    torchrun = Path(sys.executable).with_name("torchrun")
    multi = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m",
                            "emotalk3d_addon.backend.tools.cli", *args, "--out", str(tmp_path / "two")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    one = history(tmp_path / "one.checkpoints" / "s2g.safetensors")
    two = history(tmp_path / "two.checkpoints" / "s2g.safetensors")
    assert len(one) == len(two) == 8
    np.testing.assert_allclose([h["total"] for h in two], [h["total"] for h in one], rtol=1e-3)
    assert (tmp_path / "two" / "subject.json").is_file()
