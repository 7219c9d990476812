"""Training checkpoints in safetensors (never pickle): modules, optimizer state, step.

Written from the CPU, so they do not name a device: a run trained on a GPU resumes on the
CPU or on another GPU (each tensor is copied onto its parameter's device when loaded).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def save_checkpoint(path: str | Path, modules: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer, step: int, history: list[dict]) -> Path:
    """Write ``modules`` weights, Adam-style optimizer state and the step, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"model/{name}/{key}"] = value.detach().cpu().contiguous()
    state = optimizer.state_dict()
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            tensors[f"optim/{index}/{slot}"] = torch.as_tensor(value).detach().cpu().contiguous()
    metadata = {"step": str(step), "param_groups": json.dumps(state["param_groups"]),
                "history": json.dumps(history)}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, modules: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    """Restore what ``save_checkpoint`` wrote into ``modules`` and ``optimizer`` on whatever
    device they are; returns (step, history)."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for name, module in modules.items():
        prefix = f"model/{name}/"
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, slot = key.split("/", 2)
            slots.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": slots, "param_groups": json.loads(metadata["param_groups"])})
    return int(metadata["step"]), json.loads(metadata["history"])
