"""The demo's speech-only rebuild: new speech sections go into the bundle, its appearance,
ARKit shapes and demo clip stay byte for byte."""
from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from emotalk3d_addon.backend.subject import load_subject, resolve_subject
from emotalk3d_addon.backend.tools.demo_build import replace_speech_sections


def _speech_only(source, out, scale: float = 1.5):
    """A speech-only bundle on the demo's face with other S2GNet weights and a scaled basis."""
    s = load_subject(source)
    state = {k: v * scale for k, v in s.s2g_state.items()}
    basis = replace(s.basis, components=s.basis.components * np.float32(scale))
    manifest = s.manifest | {"description": "speech retrained", "training": {"s2g": {"steps": 7}}}
    replace(s, manifest=manifest, s2g_state=state, basis=basis, appearance=None, arkit=None).save(out)
    return out


def test_new_speech_sections_replace_the_old_and_the_rest_stays(tmp_path):
    demo = tmp_path / "demo"
    shutil.copytree(resolve_subject("demo"), demo)
    kept = {name: (demo / name).read_bytes() for name in
            ("canonical.ply", "appearance.safetensors", "arkit.safetensors", "demo_clip.wav", "geometry.safetensors")}
    speech = _speech_only(demo, tmp_path / "speech")
    replace_speech_sections(speech, demo, log=lambda _: None)
    merged, new = load_subject(demo), load_subject(speech)
    for name, data in kept.items():
        assert (demo / name).read_bytes() == data, name
    for k, v in new.s2g_state.items():
        assert np.array_equal(merged.s2g_state[k].numpy(), v.numpy())
    np.testing.assert_array_equal(merged.basis.components, new.basis.components)
    assert merged.appearance is not None and merged.arkit is not None
    assert merged.manifest["description"] == "speech retrained"
    assert merged.manifest["training"]["s2g"] == {"steps": 7} and "appearance" in merged.manifest["training"]


def test_speech_sections_of_another_face_are_refused(tmp_path):
    demo = tmp_path / "demo"
    shutil.copytree(resolve_subject("demo"), demo)
    s = load_subject(demo)
    other = replace(s, geometry=replace(s.geometry, template=s.geometry.template + np.float32(0.001)),
                    appearance=None, arkit=None)
    other.save(tmp_path / "other")
    before = (demo / "s2g.safetensors").read_bytes()
    with pytest.raises(ValueError, match="another face"):
        replace_speech_sections(tmp_path / "other", demo, log=lambda _: None)
    assert (demo / "s2g.safetensors").read_bytes() == before
