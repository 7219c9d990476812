"""One-click compositing: the head's Gaussians layered over the main scene's render.

``setup(scene)`` makes (or updates) a second scene, "<scene> Gaussians", rendered by the
EmoTalk3D engine with the main scene's camera, head object, frame range and output size,
and adds to the main scene's compositor a Render Layers node for it, layered over what
the compositor output showed before (the main scene's own Render Layers when nothing):

* ``ALPHA_OVER``: Alpha Over with straight alpha (the engine's Combined is straight);
* ``Z_COMBINE``: the Gaussians premultiplied, then Z Combine with both Depth passes
  (the main view layer's Z pass is switched on for it).

Blender 4.2–4.5 keep the compositor in ``scene.node_tree`` (``use_nodes``, a Composite
node); 5.0 in ``scene.compositing_node_group`` (a node group with a Group Output).
The head mesh stops drawing in the main scene's render (``head_visibility``: the
Gaussians are the head there). Running it again changes nothing new; ``remove(scene)``
takes out exactly what it added, puts the original link back and the mesh's visibility.
"""
from __future__ import annotations

import bpy

from . import head_visibility

NODE_PREFIX = "EmoTalk3D "
GAUSSIANS_NODE = NODE_PREFIX + "Gaussians"
MAIN_NODE = NODE_PREFIX + "Scene"
OVER_NODE = NODE_PREFIX + "Over"
PREMUL_NODE = NODE_PREFIX + "Premultiply"
ZCOMBINE_NODE = NODE_PREFIX + "Z Combine"
OUTPUT_NODE = NODE_PREFIX + "Output"
MODES = ('ALPHA_OVER', 'Z_COMBINE')


def is_group_compositor() -> bool:
    """Blender 5.0+: the compositor is a node group on the scene."""
    return "compositing_node_group" in bpy.types.Scene.bl_rna.properties


def compositor_tree(scene, create: bool = False):
    """The scene's compositor node tree (None when it has none and ``create`` is False)."""
    if is_group_compositor():
        tree = scene.compositing_node_group
        if tree is None and create:
            tree = bpy.data.node_groups.new(f"{scene.name} Compositing", "CompositorNodeTree")
            scene.compositing_node_group = tree
        return tree
    if create and not scene.use_nodes:
        scene.use_nodes = True
    return scene.node_tree if scene.use_nodes else None


def _socket(node, sockets, names):
    """The first of ``names`` among ``sockets`` (socket names differ between versions)."""
    for name in names:
        sock = sockets.get(name)
        if sock is not None:
            return sock
    raise KeyError(f"{node.bl_idname} has none of the sockets {names}")


def _input(node, *names):
    return _socket(node, node.inputs, names)


def _output(node, *names):
    return _socket(node, node.outputs, names)


def output_socket(tree, create: bool):
    """The socket whose image the compositor writes: Composite's (4.x) or the group output's (5.0)."""
    if is_group_compositor():
        if not any(item.item_type == 'SOCKET' and item.in_out == 'OUTPUT' for item in tree.interface.items_tree):
            if not create:
                return None
            tree.interface.new_socket("Image", in_out='OUTPUT', socket_type='NodeSocketColor')
        node = next((n for n in tree.nodes if n.bl_idname == "NodeGroupOutput" and n.is_active_output), None)
        node = node or next((n for n in tree.nodes if n.bl_idname == "NodeGroupOutput"), None)
        if node is None:
            if not create:
                return None
            node = tree.nodes.new("NodeGroupOutput")
            node.name = node.label = OUTPUT_NODE
            node.location = (600, 0)
        return node.inputs[0]
    node = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite"), None)
    if node is None:
        if not create:
            return None
        node = tree.nodes.new("CompositorNodeComposite")
        node.name = node.label = OUTPUT_NODE
        node.location = (600, 0)
    return _input(node, "Image")


def _node(tree, name: str, kind: str, location):
    node = tree.nodes.get(name)
    if node is not None and node.bl_idname != kind:
        tree.nodes.remove(node)
        node = None
    if node is None:
        node = tree.nodes.new(kind)
        node.name = node.label = name
        node.location = location
    return node


def _set_straight_alpha(over) -> None:
    if "Straight Alpha" in over.inputs:                # 5.0
        over.inputs["Straight Alpha"].default_value = True
    else:                                              # 4.x: "Convert Premultiplied"
        over.use_premultiply = True


def _set_premultiply(node) -> None:
    if hasattr(node, "mapping"):                       # 4.x
        node.mapping = 'STRAIGHT_TO_PREMUL'
    else:                                              # 5.0: a menu socket
        sock = node.inputs.get("Type")
        items = [e.identifier for e in sock.bl_rna.properties["default_value"].enum_items] if sock else []
        choice = next((i for i in items if "PREMUL" in i.upper() and "STRAIGHT" in i.upper()), None) \
            or next((i for i in items if i.upper().endswith("PREMULTIPLIED") or "TO_PREMUL" in i.upper()), None)
        if choice is not None:
            sock.default_value = choice


def _use_alpha(zcombine) -> None:
    if "Use Alpha" in zcombine.inputs:
        zcombine.inputs["Use Alpha"].default_value = True
    elif hasattr(zcombine, "use_alpha"):
        zcombine.use_alpha = True


def _ours(node) -> bool:
    return node is not None and node.name.startswith(NODE_PREFIX)


# --------------------------------------------------------------------------- the Gaussian scene


def sync(scene, gscene) -> None:
    """Make ``gscene`` render what ``scene`` shows: camera, head, frames, output size; and hide
    the head mesh from ``scene``'s own render (``head_visibility``)."""
    from ..engine import ENGINE_ID

    settings = scene.emotalk3d
    for ob in (scene.camera, settings.head):
        if ob is not None and ob.name not in gscene.objects:
            gscene.collection.objects.link(ob)
    if scene.camera is not None:
        gscene.camera = scene.camera
    if settings.head is not None:
        gscene.emotalk3d.head = settings.head
    gscene.emotalk3d.subject = settings.subject
    gscene.render.engine = ENGINE_ID
    gscene.render.film_transparent = True
    for attr in ("frame_start", "frame_end", "frame_step"):
        setattr(gscene, attr, getattr(scene, attr))
    r, g = scene.render, gscene.render
    for attr in ("fps", "fps_base", "resolution_x", "resolution_y", "resolution_percentage",
                 "pixel_aspect_x", "pixel_aspect_y"):
        setattr(g, attr, getattr(r, attr))
    for layer in gscene.view_layers:
        layer.use_pass_z = True
    head_visibility.apply(scene)


def _gaussian_scene(scene):
    settings = scene.emotalk3d
    gscene = settings.gaussian_scene
    if gscene is None or gscene.name not in bpy.data.scenes:
        gscene = bpy.data.scenes.new(f"{scene.name} Gaussians")
        gscene.emotalk3d.source_scene = scene
        settings.gaussian_scene = gscene
    return gscene


# --------------------------------------------------------------------------- set-up and removal


def setup(scene, mode: str = 'ALPHA_OVER'):
    """Create or update the Gaussian scene and the compositor nodes; returns the Gaussian scene."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    settings = scene.emotalk3d
    if settings.gaussian_scene is None:
        settings.comp_made_tree = compositor_tree(scene) is None
        settings.comp_prev_pass_z = any(layer.use_pass_z for layer in scene.view_layers)
    gscene = _gaussian_scene(scene)
    sync(scene, gscene)
    tree = compositor_tree(scene, create=True)
    scene.render.use_compositing = True
    out = output_socket(tree, create=True)

    # the background: whatever fed the output before (kept for removal), else the scene's own layers
    background = None
    for link in list(tree.links):
        if link.to_socket == out and not _ours(link.from_node):
            background = link.from_socket
            settings.comp_bg_node, settings.comp_bg_socket = link.from_node.name, link.from_socket.identifier
    if background is None and settings.comp_bg_node:
        prev = tree.nodes.get(settings.comp_bg_node)
        background = next((s for s in prev.outputs if s.identifier == settings.comp_bg_socket), None) if prev else None
    main = None
    if background is None or mode == 'Z_COMBINE':
        main = _node(tree, MAIN_NODE, "CompositorNodeRLayers", (-400, 200))
        main.scene = scene
        if background is None:
            background = _output(main, "Image")
    gauss = _node(tree, GAUSSIANS_NODE, "CompositorNodeRLayers", (-400, -200))
    gauss.scene = gscene

    for name in (OVER_NODE, PREMUL_NODE, ZCOMBINE_NODE):      # rebuilt each time: no duplicates
        if tree.nodes.get(name) is not None:
            tree.nodes.remove(tree.nodes[name])
    if mode == 'ALPHA_OVER':
        over = _node(tree, OVER_NODE, "CompositorNodeAlphaOver", (100, 0))
        _set_straight_alpha(over)
        tree.links.new(background, _input(over, "Background", "Image"))
        tree.links.new(_output(gauss, "Image"), _input_second_image(over))
        result = _output(over, "Image")
    else:
        for layer in scene.view_layers:
            layer.use_pass_z = True
        premul = _node(tree, PREMUL_NODE, "CompositorNodePremulKey", (-100, -200))
        _set_premultiply(premul)
        tree.links.new(_output(gauss, "Image"), _input(premul, "Image"))
        z = _node(tree, ZCOMBINE_NODE, "CompositorNodeZcombine", (150, 0))
        _use_alpha(z)
        # inputs in order on every version: image A, depth A, image B, depth B
        tree.links.new(background, z.inputs[0])
        tree.links.new(_output(main, "Depth"), z.inputs[1])
        tree.links.new(_output(premul, "Image"), z.inputs[2])
        tree.links.new(_output(gauss, "Depth"), z.inputs[3])
        result = _output(z, "Result", "Image")
    for link in list(tree.links):
        if link.to_socket == out:
            tree.links.remove(link)
    tree.links.new(result, out)
    settings.composite_mode = mode
    return gscene


def _input_second_image(over):
    if "Foreground" in over.inputs:
        return over.inputs["Foreground"]
    images = [s for s in over.inputs if s.type == 'RGBA']
    return images[1]


def remove(scene) -> bool:
    """Take out what ``setup`` added (nodes, the Gaussian scene) and restore the output's link."""
    settings = scene.emotalk3d
    gscene = settings.gaussian_scene
    tree = compositor_tree(scene)
    changed = False
    if tree is not None:
        out = output_socket(tree, create=False)
        for node in [n for n in tree.nodes if _ours(n)]:
            tree.nodes.remove(node)
            changed = True
        prev = tree.nodes.get(settings.comp_bg_node) if settings.comp_bg_node else None
        sock = next((s for s in prev.outputs if s.identifier == settings.comp_bg_socket), None) if prev else None
        if out is not None and sock is not None and not out.is_linked:
            tree.links.new(sock, out)
        if settings.comp_made_tree:
            if is_group_compositor():
                scene.compositing_node_group = None
                if tree.users == 0:
                    bpy.data.node_groups.remove(tree)
            else:
                scene.use_nodes = False
    head_visibility.restore_scene(scene)
    if settings.composite_mode == 'Z_COMBINE' and not settings.comp_prev_pass_z:
        for layer in scene.view_layers:
            layer.use_pass_z = False
    if gscene is not None:
        settings.gaussian_scene = None
        if gscene.name in bpy.data.scenes:
            bpy.data.scenes.remove(gscene)
        changed = True
    settings.comp_bg_node = settings.comp_bg_socket = ""
    settings.comp_made_tree = False
    return changed


def sync_all() -> None:
    """Bring every Gaussian scene in line with its main scene (before a render starts)."""
    for scene in bpy.data.scenes:
        settings = getattr(scene, "emotalk3d", None)
        gscene = settings.gaussian_scene if settings is not None else None
        if gscene is not None and gscene.name in bpy.data.scenes:
            sync(scene, gscene)


@bpy.app.handlers.persistent
def on_render_init(*_args) -> None:
    try:
        sync_all()
    except Exception as exc:  # noqa: BLE001 - never stop a render for this
        import sys

        print(f"EmoTalk3D: could not sync the Gaussian scenes: {exc}", file=sys.stderr)


def register() -> None:
    if on_render_init not in bpy.app.handlers.render_init:
        bpy.app.handlers.render_init.append(on_render_init)


def unregister() -> None:
    if on_render_init in bpy.app.handlers.render_init:
        bpy.app.handlers.render_init.remove(on_render_init)


__all__ = ["setup", "remove", "sync", "sync_all", "compositor_tree", "output_socket", "MODES"]
