"""Training on a chosen device: ``--device auto|cpu|cuda`` on every training command.

On the CPU the flag runs the same training as before; where PyTorch sees a CUDA GPU the
same short runs on "cuda" must match the CPU's within float tolerance (the CUDA tests are
skipped where there is none), and their checkpoints and bundles load on the CPU."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from emotalk3d_addon.backend.device import resolve_device
from emotalk3d_addon.backend.subject import load_subject, validate_subject
from emotalk3d_addon.backend.tools.cli import main

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")


def _history(out) -> list[dict]:
    with safe_open(str(out.with_name(out.name + ".checkpoints") / "s2g.safetensors"), framework="pt") as f:
        return json.loads(f.metadata()["history"])


def _train_s2g(tmp_path, tiny_dataset, tiny_hubert, name: str, *device: str, steps: int = 4) -> list[dict]:
    out = tmp_path / name
    args = ["train-s2g", "--data", str(tiny_dataset), "--encoder", str(tiny_hubert), "--out", str(out),
            "--steps", str(steps), "--batch", "2", "--crop-frames", "12", "--hidden", "8", "--checkpoint-every", "2"]
    assert main(args + list(device)) == 0
    assert validate_subject(out) == []
    return _history(out)


def test_auto_is_cuda_where_pytorch_sees_one_else_the_cpu():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_train_s2g_on_the_cpu_by_flag_is_the_run_auto_makes_here(tmp_path, tiny_dataset, tiny_hubert):
    on_cpu = _train_s2g(tmp_path, tiny_dataset, tiny_hubert, "cpu", "--device", "cpu")
    assert [h["step"] for h in on_cpu] == [1, 2, 3, 4] and all(np.isfinite(h["total"]) for h in on_cpu)
    if resolve_device("auto").type == "cpu":
        auto = _train_s2g(tmp_path, tiny_dataset, tiny_hubert, "auto")
        assert auto == on_cpu


@no_cuda
@pytest.mark.parametrize("command", ["train-s2g", "train", "train-canonical", "train-g2a"])
def test_device_cuda_without_a_gpu_is_a_clear_input_error(tmp_path, capsys, command):
    where = ["--out", str(tmp_path / "out")] if command in ("train-s2g", "train") else \
        ["--subject", str(tmp_path / "out")]
    assert main([command, "--data", str(tmp_path / "missing"), *where, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --device cuda was asked for, but no CUDA GPU is available to PyTorch"
    assert not (tmp_path / "out").exists()


def test_the_appearance_commands_take_the_device_flag(tmp_path, full_subject, tiny_multiview):
    bundle = tmp_path / "b"
    shutil.copytree(full_subject, bundle)
    before = load_subject(bundle).appearance.net.state_dict()
    assert main(["train-g2a", "--data", str(tiny_multiview), "--subject", str(bundle), "--steps", "2",
                 "--device", "cpu"]) == 0
    after = load_subject(bundle).appearance.net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert main(["train-canonical", "--data", str(tiny_multiview), "--subject", str(bundle), "--steps", "2",
                 "--completion-points", "50", "--sh-degree", "0", "--device", "cpu"]) == 0
    assert validate_subject(bundle) == []


# --------------------------------------------------------------------------- on a CUDA GPU


@pytest.fixture
def exact_cuda(monkeypatch):
    """No TF32 on the GPU, so CUDA and the CPU differ by float rounding only."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


@needs_cuda
def test_s2g_training_on_cuda_matches_the_cpu_and_resumes_on_the_cpu(tmp_path, tiny_dataset, tiny_hubert,
                                                                      exact_cuda):
    """Same seed, same batches: the S2GNet terms (vertex, velocity) agree to 1e-2 relative
    over 6 steps, the first step's to 1e-3 (same weights, same batch; the frozen encoder's
    features, computed on each device and kept as float16, may differ in their last bit). The
    emotion term is not compared: the extractor's dropout draws on each device's own random
    stream. A checkpoint written on the GPU resumes on the CPU."""
    on_cpu = _train_s2g(tmp_path, tiny_dataset, tiny_hubert, "cpu", "--device", "cpu", steps=6)
    on_gpu = _train_s2g(tmp_path, tiny_dataset, tiny_hubert, "gpu", "--device", "cuda", steps=6)
    for term in ("vertex", "velocity"):
        cpu, gpu = [h[term] for h in on_cpu], [h[term] for h in on_gpu]
        np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-3, err_msg=term)
        np.testing.assert_allclose(gpu, cpu, rtol=1e-2, err_msg=term)
    with safe_open(str(tmp_path / "gpu.checkpoints" / "s2g.safetensors"), framework="pt") as f:
        assert all(f.get_tensor(k).device.type == "cpu" for k in f.keys())
    resumed = _train_s2g(tmp_path, tiny_dataset, tiny_hubert, "gpu", "--device", "cpu", "--resume", steps=8)
    assert [h["step"] for h in resumed] == list(range(1, 9)) and resumed[:6] == on_gpu


@needs_cuda
def test_appearance_training_on_cuda_matches_the_cpu(full_subject, tiny_multiview, exact_cuda):
    """G2ANet from the same bundle on both devices: the GPU rasteriser against the CPU one,
    so the losses agree within 2 % (first step: same Gaussians, same view) and 5 % over the
    run, and the head comes back on the CPU. The canonical stage (with a densification round)
    runs on the GPU and returns a finite CPU head."""
    from emotalk3d_addon.backend.datasets.layout import load_dataset
    from emotalk3d_addon.backend.datasets.multiview import load_cameras
    from emotalk3d_addon.backend.train.appearance import AppearanceTrainConfig, train_canonical, train_g2a

    dataset, cameras = load_dataset(tiny_multiview), load_cameras(tiny_multiview)
    cfg = AppearanceTrainConfig(g2a_steps=4, sh_degree=1)
    losses, heads = {}, {}
    for device in ("cpu", "cuda"):
        heads[device] = load_subject(full_subject).appearance
        losses[device] = train_g2a(dataset, cameras, heads[device], cfg, log=lambda _: None, device=device)
    np.testing.assert_allclose(losses["cuda"][0], losses["cpu"][0], rtol=2e-2)
    np.testing.assert_allclose(np.mean(losses["cuda"]), np.mean(losses["cpu"]), rtol=5e-2)
    head = heads["cuda"]
    assert head.canonical.device.type == "cpu" and next(head.net.parameters()).device.type == "cpu"
    assert head.smoothing is None or head.smoothing.device.type == "cpu"

    cfg = AppearanceTrainConfig(canonical_steps=6, densify_every=3, num_otf=300, sh_degree=0, g2a_hidden=8)
    head = train_canonical(dataset, cameras, cfg, log=lambda _: None, device="cuda")
    assert head.canonical.device.type == "cpu"
    assert all(bool(torch.isfinite(t).all()) for t in head.canonical.tensors())
    assert head.canonical.num == head.binding.num + head.otf.num + head.rigid.num
