"""While compositing is set up, the head mesh draws nothing of its own in the scene's render.

The Gaussians are the head in the picture: the mesh under them (the face only, grey) must
not show beside them, cast a shadow or appear in reflections. Two ways, chosen per head:

* disabled in renders (``hide_render``), which every engine honours: the Gaussian engine
  then reads the head's shape-key mix, which is its shape exactly when no modifier changes
  it, and can render the next frame ahead (``render_ahead``). Used by default.
* every ray visibility off (``visible_camera`` ... ``visible_shadow``), which Cycles and
  EEVEE (4.2+) honour and which keeps the mesh in the render's depsgraph: used where the
  mesh is needed there, for a head whose modifiers change its shape (the engine reads the
  evaluated mesh) or when the scene's "Head Casts Shadow" is on (the shadow ray stays on).
  Other engines (Workbench among them) ignore ray visibility: there the head is always
  disabled in renders (modifiers then do not reach the Gaussians, and no shadow is cast).

The ray visibility is switched off in both cases. The settings found before are kept on
the head (the ``STORE`` custom property, hidden from the UI, saved with the file) and put
back exactly by ``restore``. ``apply`` runs at set-up and at the start of every render, so
a change of engine or of modifiers is followed.
"""
from __future__ import annotations

RAYS = ("visible_camera", "visible_diffuse", "visible_glossy", "visible_transmission",
        "visible_volume_scatter", "visible_shadow")
STORE = "_emotalk3d_visibility"
RAY_ENGINES = {"CYCLES", "BLENDER_EEVEE", "BLENDER_EEVEE_NEXT"}


def honours_rays(engine: str) -> bool:
    """True for the engines that skip an object whose ray visibility is off (Cycles, EEVEE)."""
    return engine in RAY_ENGINES


def _flags(ob) -> dict:
    out = {name: bool(getattr(ob, name)) for name in RAYS if hasattr(ob, name)}
    out["hide_render"] = bool(ob.hide_render)
    return out


def is_hidden(ob) -> bool:
    """True while ``ob`` carries the settings from before it was hidden."""
    return ob is not None and ob.get(STORE) is not None


def needs_mesh_in_render(ob, casts_shadow: bool = False) -> bool:
    """True when the render must keep the mesh: modifiers change its shape, or it casts the shadow."""
    return bool(casts_shadow) or any(m.show_render for m in ob.modifiers)


def hide(ob, engine: str, casts_shadow: bool = False) -> None:
    """Hide the mesh ``ob`` from the scene's render as ``engine`` needs (first call stores its settings)."""
    if ob.get(STORE) is None:
        ob[STORE] = _flags(ob)
    before = dict(ob[STORE])
    by_rays = honours_rays(engine) and needs_mesh_in_render(ob, casts_shadow)
    for name in RAYS:
        if hasattr(ob, name):
            setattr(ob, name, bool(casts_shadow) and by_rays if name == "visible_shadow" else False)
    ob.hide_render = bool(before.get("hide_render", False)) or not by_rays


def restore(ob) -> bool:
    """Put back the settings ``hide`` found; False when ``ob`` had not been hidden."""
    stored = ob.get(STORE) if ob is not None else None
    if stored is None:
        return False
    for name, value in dict(stored).items():
        if hasattr(ob, name):
            setattr(ob, name, bool(value))
    del ob[STORE]
    return True


def apply(scene) -> None:
    """Hide the scene's head from its render; any other object hidden before (an earlier head) is restored."""
    settings = scene.emotalk3d
    head = settings.head if settings.head is not None and settings.head.name in scene.objects else None
    for ob in scene.objects:
        if ob is not head and is_hidden(ob):
            restore(ob)
    if head is not None and head.type == 'MESH':
        hide(head, scene.render.engine, bool(settings.head_shadow))


def restore_scene(scene) -> None:
    """Restore every object of ``scene`` that ``apply`` hid."""
    for ob in scene.objects:
        restore(ob)


def refresh(scene) -> None:
    """Apply again after a setting changed, when the scene's compositing is set up."""
    settings = getattr(scene, "emotalk3d", None)
    if settings is not None and settings.gaussian_scene is not None:
        apply(scene)


__all__ = ["hide", "restore", "needs_mesh_in_render", "apply", "restore_scene", "refresh", "honours_rays",
           "is_hidden", "RAYS", "STORE"]
