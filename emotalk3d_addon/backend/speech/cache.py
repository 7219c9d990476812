"""Speech-feature cache keyed by (audio content hash, encoder id).

A re-generation after an emotion edit reuses the features instead of re-running
HuBERT. Entries live in memory (LRU within a byte budget) and, when a folder is
given, as safetensors files there so later processes reuse them too.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class FeatureCache:
    """LRU cache of (T, D) float32 feature tensors."""

    def __init__(self, max_bytes: int = 512 << 20, directory: str | Path | None = None):
        self.max_bytes = int(max_bytes)
        self.directory = Path(directory) if directory else None
        self._entries: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(audio_hash: str, encoder_id: str) -> str:
        return hashlib.sha256(f"{audio_hash}\0{encoder_id}".encode()).hexdigest()

    def _path(self, key: str) -> Path | None:
        return self.directory / f"{key}.safetensors" if self.directory else None

    def get(self, audio_hash: str, encoder_id: str) -> torch.Tensor | None:
        key = self.key(audio_hash, encoder_id)
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        path = self._path(key)
        if path is not None and path.is_file():
            try:
                tensor = load_file(str(path))["features"]
            except (SafetensorError, KeyError, OSError):
                path.unlink(missing_ok=True)   # a damaged cache file is just a miss
            else:
                self.hits += 1
                self._remember(key, tensor)
                return tensor
        self.misses += 1
        return None

    def put(self, audio_hash: str, encoder_id: str, features: torch.Tensor) -> None:
        key = self.key(audio_hash, encoder_id)
        features = features.detach().to("cpu", torch.float32).contiguous()
        self._remember(key, features)
        path = self._path(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file({"features": features}, str(tmp), metadata={"encoder_id": encoder_id})
            tmp.replace(path)

    def _remember(self, key: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if key in self._entries:
            old = self._entries.pop(key)
            self._bytes -= old.numel() * old.element_size()
        if size > self.max_bytes:
            return
        self._entries[key] = tensor
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()

    def __len__(self) -> int:
        return len(self._entries)
