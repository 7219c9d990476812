"""Device selection: which device each kind of work picks under "auto", what a named device
needs, and the fallback to the CPU. Pure selection logic: the GPUs PyTorch sees are set by
monkeypatching ``torch.cuda.is_available`` / ``torch.backends.mps.is_available``; nothing
runs on them."""
import pytest
import torch

from emotalk3d_addon.backend import device as device_mod
from emotalk3d_addon.backend.device import compute_device, render_device, resolve_device, run_with_fallback
from emotalk3d_addon.backend.errors import InputError
from emotalk3d_addon.backend.train.distributed import rank_device

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.fixture
def machine(monkeypatch):
    """``machine(cuda=..., mps=...)``: what PyTorch will report as present."""
    def set_(cuda: bool = False, mps: bool = False, gpus: int = 1):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus if cuda else 0)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    return set_


@pytest.mark.parametrize("cuda, mps, training, speech, rendering", [
    (False, False, CPU, CPU, CPU),
    (True, False, CUDA, CUDA, CUDA),
    (False, True, CPU, MPS, CPU),          # Apple Silicon: the speech models on the GPU, frames on the CPU
    (True, True, CUDA, CUDA, CUDA),        # CUDA first
])
def test_auto_picks_per_kind_of_work(machine, cuda, mps, training, speech, rendering):
    machine(cuda=cuda, mps=mps)
    assert resolve_device("auto") == resolve_device() == training
    assert compute_device("auto") == compute_device() == speech
    assert render_device("auto") == render_device() == rendering


def test_named_devices_are_taken_when_present_and_refused_clearly_when_not(machine):
    machine(cuda=False, mps=False)
    for resolve in (resolve_device, compute_device, render_device):
        assert resolve("cpu") == CPU
        with pytest.raises(InputError, match="no CUDA GPU is available"):
            resolve("cuda")
        with pytest.raises(InputError, match="no Apple Silicon GPU"):
            resolve("mps")
        with pytest.raises(InputError, match="must be one of auto, cpu, cuda, mps"):
            resolve("gpu")
    machine(cuda=True, mps=True, gpus=2)
    assert resolve_device("cuda") == compute_device("cuda") == render_device("cuda") == CUDA
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(InputError, match="sees 2 CUDA GPU"):
        resolve_device("cuda:2")
    assert resolve_device("mps") == compute_device("mps") == MPS
    assert render_device("mps") == CPU            # the rasteriser has no Metal backend


def test_render_device_maps_a_resolved_device_without_checking_it_again(machine):
    machine(cuda=False, mps=False)
    assert render_device(MPS) == CPU
    assert render_device(CUDA) == CUDA            # resolved by its caller (a fallback test fakes one)
    assert render_device(CPU) == CPU


def test_the_frame_renderer_never_draws_on_mps():
    from emotalk3d_addon.backend.render.frame import FrameRenderer
    from emotalk3d_addon.backend.subject import load_subject, resolve_subject

    renderer = FrameRenderer(load_subject(resolve_subject("demo")), "mps")
    assert renderer.device == CPU and renderer.head.canonical.device == CPU


def test_the_speech_service_resolves_with_the_compute_rule(machine, monkeypatch):
    """Under "auto" on a Mac the performance runs on MPS; here the runtime is stopped before
    any model loads, at the device it was handed."""
    from emotalk3d_addon.backend.performance import service as service_mod

    machine(cuda=False, mps=True)
    seen = []

    class Stop(Exception):
        pass

    def runtime(self, loaded, device, encoder=""):
        seen.append(device)
        raise Stop

    monkeypatch.setattr(service_mod.Performance, "runtime", runtime)
    with pytest.raises(Stop):
        service_mod.Performance().perform_waveform(None, _silence(), 25, None, "auto")
    assert seen == [MPS]


def _silence():
    import numpy as np

    from emotalk3d_addon.backend.io.audio import Waveform

    return Waveform(np.zeros(16000, np.float32), 16000)


def test_an_mps_failure_falls_back_to_the_cpu_with_a_warning(machine):
    machine(cuda=False, mps=False)                # nothing real to empty
    calls = []

    def run(device):
        calls.append(device.type)
        if device.type == "mps":
            raise NotImplementedError("The operator 'aten::_pack_padded_sequence' is not currently "
                                      "implemented for the MPS device.")
        return "done"

    warnings: list[str] = []
    result, used = run_with_fallback(run, MPS, warnings, "speech-to-geometry")
    assert (result, used, calls) == ("done", CPU, ["mps", "cpu"])
    assert len(warnings) == 1 and "Apple GPU" in warnings[0] and "CPU" in warnings[0]
    oom = RuntimeError("MPS backend out of memory (MPS allocated: 9.00 GB)")
    assert device_mod.is_mps_failure(oom) and not device_mod.is_mps_failure(ValueError("MPS"))

    def bug(device):
        raise ValueError("a real bug")

    with pytest.raises(ValueError):
        run_with_fallback(bug, MPS, [])
    with pytest.raises(NotImplementedError):       # an MPS-looking error on the CPU is not swallowed
        run_with_fallback(lambda d: run(MPS), CPU, [])


def test_each_torchrun_rank_trains_on_its_own_gpu(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_device(CUDA, world=4) == torch.device("cuda", 3)
    assert rank_device(CUDA, world=1) == CUDA
    assert rank_device(CPU, world=4) == CPU
    assert rank_device(None, world=1) == CPU


def test_predict_takes_mps_and_says_clearly_when_there_is_none(machine, capsys, tmp_path):
    from emotalk3d_addon.backend.subject import resolve_subject
    from emotalk3d_addon.backend.tools.cli import main

    machine(cuda=False, mps=False)
    audio = resolve_subject("demo") / "demo_clip.wav"
    assert main(["predict", "--subject", "demo", "--audio", str(audio), "--out", str(tmp_path / "t.npz"),
                 "--device", "mps"]) == 2
    assert "no Apple Silicon GPU (MPS) is available" in capsys.readouterr().err
    assert not (tmp_path / "t.npz").exists()
