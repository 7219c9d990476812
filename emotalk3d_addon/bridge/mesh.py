"""The subject's head: mesh, UVs and the motion basis as shape keys, built in bulk.

Subject space is Blender's: metres, +Z up, the face looking toward -Y. The mesh is the
template; each basis component k becomes a relative shape key ``basis_kk`` whose shape is
``template + components[k]``, so the evaluated mesh is ``template + sum_k value_k *
components[k]`` — exactly the backend's reconstruction from coefficients.
"""
from __future__ import annotations

import bpy
import numpy as np

KEY_PREFIX = "basis_"
SLIDER_LIMIT = 10.0      # Blender's hard limit for shape key slider ranges


def key_names(num_components: int) -> list[str]:
    return [f"{KEY_PREFIX}{k:02d}" for k in range(num_components)]


def build_mesh(name: str, template: np.ndarray, triangles: np.ndarray, uvs: np.ndarray) -> bpy.types.Mesh:
    """A mesh from (V,3) vertices, (T,3) triangles and per-vertex (V,2) UVs."""
    template = np.ascontiguousarray(template, np.float32)
    tris = np.ascontiguousarray(triangles, np.int32)
    num_v, num_t = template.shape[0], tris.shape[0]
    me = bpy.data.meshes.new(name)
    me.vertices.add(num_v)
    me.vertices.foreach_set("co", template.ravel())
    me.loops.add(num_t * 3)
    me.loops.foreach_set("vertex_index", tris.ravel())
    me.polygons.add(num_t)
    me.polygons.foreach_set("loop_start", np.arange(0, num_t * 3, 3, dtype=np.int32))
    me.update(calc_edges=True)
    me.validate(verbose=False, clean_customdata=False)
    loop_vertices = np.empty(len(me.loops), np.int32)
    me.loops.foreach_get("vertex_index", loop_vertices)
    uv_layer = me.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", np.ascontiguousarray(uvs, np.float32)[loop_vertices].ravel())
    if len(me.polygons) and hasattr(me.polygons[0], "use_smooth"):
        me.polygons.foreach_set("use_smooth", np.ones(len(me.polygons), bool))
    me.update()
    return me


def add_basis_shape_keys(ob: bpy.types.Object, template: np.ndarray, components: np.ndarray) -> list[str]:
    """Basis + one relative key per component (``template + components[k]``)."""
    template = np.ascontiguousarray(template, np.float32)
    names = key_names(components.shape[0])
    ob.shape_key_add(name="Basis", from_mix=False)
    for k, name in enumerate(names):
        kb = ob.shape_key_add(name=name, from_mix=False)
        kb.points.foreach_set("co", (template + components[k]).astype(np.float32).ravel())   # bulk path
        kb.slider_min, kb.slider_max = -1.0, 1.0
        kb.value = 0.0
    ob.data.shape_keys.use_relative = True
    ob.data.shape_keys.name = f"{ob.name} basis"
    return names


def widen_sliders(key: bpy.types.Key, names: list[str], coefficients: np.ndarray) -> None:
    """Make every slider range cover the coefficients it will be animated with (values are clamped to it)."""
    if coefficients.size == 0:
        return
    lo, hi = coefficients.min(axis=0), coefficients.max(axis=0)
    for k, name in enumerate(names):
        kb = key.key_blocks.get(name)
        if kb is None:
            continue
        want_min = max(-SLIDER_LIMIT, min(-1.0, float(np.floor(lo[k]))))
        want_max = min(SLIDER_LIMIT, max(1.0, float(np.ceil(hi[k]))))
        if kb.slider_min > want_min:
            kb.slider_min = want_min
        if kb.slider_max < want_max:
            kb.slider_max = want_max


def build_head(name: str, collection, location, template, triangles, uvs, components) -> bpy.types.Object:
    """The head object: mesh + UVs + basis shape keys, linked into ``collection`` at ``location``."""
    me = build_mesh(name, template, triangles, uvs)
    ob = bpy.data.objects.new(name, me)
    collection.objects.link(ob)
    ob.location = location
    add_basis_shape_keys(ob, template, components)
    return ob


def head_matches(ob, num_vertices: int, num_components: int) -> bool:
    """True when ``ob`` is a mesh with this many vertices and basis shape keys."""
    if ob is None or ob.type != 'MESH' or len(ob.data.vertices) != num_vertices:
        return False
    key = ob.data.shape_keys
    if key is None:
        return False
    return all(key.key_blocks.get(n) is not None for n in key_names(num_components))


def evaluated_vertices(ob, depsgraph) -> np.ndarray:
    """(V, 3) float32 evaluated vertex positions (local space) of ``ob``."""
    ob_eval = ob.evaluated_get(depsgraph)
    me = ob_eval.to_mesh()
    try:
        out = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", out)
    finally:
        ob_eval.to_mesh_clear()
    return out.reshape(-1, 3)


def place_clear(head, scene) -> None:
    """Place a head the extension has just created: at the cursor unless something is in the
    way, facing the camera (``bridge.placement``)."""
    from . import placement

    placement.place_new_head(head, scene)
