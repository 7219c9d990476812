"""The panels and the preferences draw without errors in every state.

Headless Blender has no UI to draw into, so ``draw`` gets a recording layout (the one stub
here): every ``prop``/``prop_search`` must name a real RNA property and every ``operator``
a registered operator, which is what goes wrong in drawing code."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from .conftest import bpy, setup_scene


class RecordingLayout:
    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):            # use_property_split, enabled, scale_y, ...
        return None

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.log)

    row = column = box = split = grid_flow = _child

    def prop(self, data, prop, **kwargs):
        assert prop in data.bl_rna.properties, f"{type(data).__name__} has no property {prop!r}"
        self.log.append(("prop", prop))

    def prop_search(self, data, prop, search_data, search_prop, **kwargs):
        assert prop in data.bl_rna.properties and search_prop in search_data.bl_rna.properties, search_prop
        self.log.append(("prop_search", prop))

    def operator(self, idname, **kwargs):
        module, name = idname.split(".")
        assert name in dir(getattr(bpy.ops, module)), f"no operator {idname}"
        self.log.append(("operator", idname))
        self.log.append(("operator_text", (idname, kwargs.get("text"))))
        return SimpleNamespace()

    def label(self, text="", **kwargs):
        self.log.append(("label", text))

    def progress(self, factor=0.0, type='BAR', text=""):
        self.log.append(("progress", text))

    def separator(self, **kwargs):
        pass

    def template_icon(self, **kwargs):
        self.log.append(("icon", kwargs.get("icon_value")))


def _draw(panel, context):
    log = []
    panel.draw(SimpleNamespace(layout=RecordingLayout(log)), context)
    return log


def test_panels_draw_in_every_state(scene, trained_subject, speech):
    from emotalk3d_addon.bridge import jobs, sequencer
    from emotalk3d_addon.panels import EMOTALK3D_PT_sequencer, EMOTALK3D_PT_view3d

    ctx = bpy.context
    log = _draw(EMOTALK3D_PT_view3d, ctx)                          # nothing chosen yet
    assert ("operator", "emotalk3d.generate") in log
    setup_scene(scene, trained_subject, speech)
    log = _draw(EMOTALK3D_PT_view3d, ctx)
    labels = " ".join(t for k, t in log if k == "label")
    assert "tiny" in labels and "Neutral" in labels and "Surprised" in labels   # the subject's emotions
    assert ("prop", "audio_file") in log and ("operator", "emotalk3d.key_emotion") in log
    assert bpy.ops.emotalk3d.generate() == {'FINISHED'}
    strip = sequencer.find_strip(scene, scene.emotalk3d.strip)
    assert strip is not None
    log = _draw(EMOTALK3D_PT_view3d, ctx)                          # strip source, last action
    assert ("prop_search", "strip") in log
    assert any(k == "label" and t.startswith("Last: ") for k, t in log)
    compact = _draw(EMOTALK3D_PT_sequencer, ctx)
    assert ("operator", "emotalk3d.generate") in compact and len(compact) < len(log)

    class Running(jobs.Job):
        kind = "generate"

    running = Running("python")
    running.state, running.fraction, running.message = "running", 0.4, "S2GNet"
    jobs._ACTIVE = running
    try:
        log = _draw(EMOTALK3D_PT_view3d, ctx)
        assert ("progress", "S2GNet") in log and ("operator", "emotalk3d.cancel") in log
        assert ("operator", "emotalk3d.generate") not in log
    finally:
        jobs._ACTIVE = None


def test_frame_head_is_a_labelled_button_and_offered_where_the_scene_has_no_camera(scene):
    import numpy as np

    from emotalk3d_addon.bridge import mesh
    from emotalk3d_addon.panels import EMOTALK3D_PT_view3d

    verts = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0, 0.1]], np.float32)
    head = mesh.build_head("Head", scene.collection, (0, 0, 0), verts, np.array([[0, 1, 2]]),
                           np.zeros((3, 2), np.float32), np.zeros((1, 3, 3), np.float32))
    head.emotalk3d_head.fingerprint = "test"
    scene.emotalk3d.head = head
    log = _draw(EMOTALK3D_PT_view3d, bpy.context)
    texts = [v[1] for k, v in log if k == "operator_text" and v[0] == "emotalk3d.frame_head"]
    assert texts and all(t != "" for t in texts)            # labelled (None: its own label, "Frame Head")
    assert len(texts) == 2                                   # beside Generate, and where the camera is missing
    labels = [t for k, t in log if k == "label"]
    assert any("No active camera" in t and "Frame Head" in t for t in labels)
    assert ("prop", "head_shadow") in log
    assert bpy.ops.emotalk3d.frame_head() == {'FINISHED'}
    log = _draw(EMOTALK3D_PT_view3d, bpy.context)
    assert [v for k, v in log if k == "operator_text" and v[0] == "emotalk3d.frame_head"] == \
        [("emotalk3d.frame_head", None)]                      # with a camera: only the one by Generate


def test_preferences_draw(scene, tmp_path):
    prefs = bpy.context.preferences.addons["emotalk3d_addon"].preferences
    prefs.libraries.add().path = str(tmp_path)

    class Proxy:
        def __init__(self, log):
            self.layout = RecordingLayout(log)

        def __getattr__(self, name):
            return getattr(prefs, name)

    log = []
    type(prefs).draw(Proxy(log), bpy.context)
    ops = {t for k, t in log if k == "operator"}
    assert {"emotalk3d.install_backend", "emotalk3d.check_backend", "emotalk3d.library_add"} <= ops
    assert {"python", "encoder", "device", "cache_mb", "path"} <= {t for k, t in log if k == "prop"}
    assert any("bundled demo" in t for k, t in log if k == "label")
    prefs.libraries.clear()


@pytest.mark.parametrize("name", ["EMOTALK3D_PT_view3d", "EMOTALK3D_PT_sequencer"])
def test_panels_live_in_the_sidebar(addon, name):
    panel = getattr(bpy.types, name)
    assert panel.bl_region_type == 'UI' and panel.bl_category == "EmoTalk3D"
