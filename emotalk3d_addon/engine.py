"""The "EmoTalk3D Gaussians" render engine (``EMOTALK3D_GAUSSIANS``) and its passes.

Each frame: the scene camera (``bridge.camera``), the evaluated head mesh, its world
matrix and emotion state (``bridge.gaussian_frame``) go to the worker, which renders the
subject's Gaussians (gsplat on CUDA, else the CPU rasteriser) and returns the passes:

* Combined  RGBA, straight alpha over a transparent background, linear light;
* Depth     camera z in metres, like Blender's Z (1e10 where nothing is drawn);
* FaceMatte the face region's coverage (the Gaussians driven by the mesh).

Nothing is kept from one frame to the next except the worker's loaded models, so a frame
rendered alone equals the same frame of an animation render. In an animation render the
worker renders the next frame while Blender composites and writes this one
(``bridge.render_ahead``); that frame is used only when the next frame's inputs, read
from Blender as always, are identical to the predicted ones. Errors (no camera, no head,
missing subject, a broken bundle) end the frame with a message in the render report and
an empty transparent result; Blender itself is never taken down.

The rendered viewport draws the Gaussians too: at a quarter of the resolution while the
view moves, at full resolution once it has been still for a moment.
"""
from __future__ import annotations

import sys
import time
import weakref

import bpy
import numpy as np

from .backend.protocol import BACKGROUND_DEPTH
from .bridge import render_ahead

ENGINE_ID = "EMOTALK3D_GAUSSIANS"
PASSES = (("Combined", 4, "RGBA", 'COLOR'), ("Depth", 1, "Z", 'VALUE'), ("FaceMatte", 1, "X", 'VALUE'))
PREVIEW_SCALE = 0.25          # viewport resolution while navigating
STILL_AFTER = 0.3             # seconds without a view change before drawing at full resolution

LAST_RENDER: dict = {}        # what the last final render did (timings, device, warnings); for tools and tests
ERRORS: list[str] = []        # every render error since the list was last cleared (batch renders check it)


def _settings(context=None):
    from . import preferences

    return preferences.current_settings(context)


def _client(settings):
    from .bridge import worker_client

    return worker_client.get_client(settings.python_path())


def _fill(layer, name: str, array: np.ndarray) -> None:
    render_pass = layer.passes.get(name) if hasattr(layer.passes, "get") else None
    if render_pass is None:
        render_pass = next((p for p in layer.passes if p.name == name), None)
    if render_pass is None:
        return
    render_pass.rect.foreach_set(np.ascontiguousarray(array, np.float32).ravel())


class EMOTALK3D_RenderEngine(bpy.types.RenderEngine):
    """Renders a subject's 4D Gaussians from the scene camera into compositor passes."""

    bl_idname = ENGINE_ID
    bl_label = "EmoTalk3D Gaussians"
    bl_use_preview = False
    bl_use_postprocess = True
    bl_use_shading_nodes_custom = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._view_key = None
        self._view_changed_at = 0.0
        self._drawn = None            # (key, scale, texture, width, height)
        self._draw_error = ""

    # -- passes ------------------------------------------------------------------------

    def update_render_passes(self, scene=None, renderlayer=None):
        for name, channels, chan_id, kind in PASSES:
            self.register_pass(scene, renderlayer, name, channels, chan_id, kind)

    # -- final render --------------------------------------------------------------------

    def render(self, depsgraph):
        from .bridge import camera as camera_mod
        from .bridge import gaussian_frame
        from .bridge.errors import UserError
        from .bridge.worker_client import WorkerError

        scene = depsgraph.scene
        width, height = int(self.resolution_x), int(self.resolution_y)
        started = time.perf_counter()
        LAST_RENDER.clear()
        LAST_RENDER.update(scene=scene.name, frame=scene.frame_current, ok=False)
        animation = render_ahead.follows(scene) or bool(self.is_animation)
        try:
            self.update_stats("", "EmoTalk3D: preparing the head")
            if scene.camera is None:
                raise UserError(f"Scene {scene.name!r} has no active camera: add a camera and make it active")
            try:
                cam = camera_mod.from_blender_camera(scene.camera.evaluated_get(depsgraph), scene)
            except ValueError as exc:
                raise UserError(str(exc)) from None
            if (cam.width, cam.height) != (width, height):
                cam = camera_mod.PinholeCamera(cam.K, cam.world_to_camera, width, height, cam.near, cam.far)
            settings = _settings()
            dirs = settings.library_dirs()
            head = gaussian_frame.find_head(scene)
            frame = gaussian_frame.head_frame(depsgraph, head, dirs, bpy.path.abspath,
                                              evaluated_mesh=not gaussian_frame.hidden_from_render(head))
            gathered = time.perf_counter()
            self.update_progress(0.1)
            self.update_stats("", f"EmoTalk3D: rendering {head.name}")
            try:
                client = _client(settings)
            except WorkerError as exc:
                raise UserError(str(exc)) from None
            device = str(settings.device or "auto")
            passes, ahead = self._passes(client, scene.frame_current, frame, cam, dirs, device)
            rendered = time.perf_counter()
            sent_ahead = (passes is not None and animation and settings.render_ahead
                          and self._send_ahead(client, scene, head, frame, cam, dirs, device))
        except (UserError, WorkerError) as exc:
            render_ahead.discard()
            self._fail(width, height, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not take Blender down
            render_ahead.discard()
            self._fail(width, height, f"EmoTalk3D render failed: {type(exc).__name__}: {exc}")
            return
        if passes is None:                         # cancelled
            render_ahead.discard()
            self._empty(width, height)
            LAST_RENDER.update(cancelled=True)
            return
        try:
            result = self.begin_result(0, 0, width, height)
            began = time.perf_counter()
            layer = result.layers[0]
            _fill(layer, "Combined", passes.combined)
            _fill(layer, "Depth", passes.depth)
            _fill(layer, "FaceMatte", passes.face_matte)
        finally:
            passes.release()
        filled = time.perf_counter()
        self.end_result(result)
        self.update_progress(1.0)
        for text in passes.warnings:
            self.report({'WARNING'}, f"EmoTalk3D: {text}")
        done = time.perf_counter()
        LAST_RENDER.update(ok=True, device=passes.device, warnings=list(passes.warnings), worker=passes.timings,
                           gather_s=gathered - started, worker_call_s=rendered - gathered,
                           write_s=done - rendered, begin_s=began - rendered, fill_s=filled - began,
                           end_s=done - filled, total_s=done - started, head=frame.head_name,
                           rendered_ahead=ahead, sent_ahead=sent_ahead)

    def _passes(self, client, frame_number, frame, cam, dirs, device):
        """(passes or None when cancelled, whether they were rendered ahead) of this frame."""
        from .bridge import gaussian_frame
        from .bridge.worker_client import WorkerError

        call = render_ahead.take(frame_number, frame, cam, dirs, device)
        if call is not None:
            try:
                return call.wait(should_stop=self.test_break), True
            except WorkerError:                    # the worker lost it (restarted): render it now
                pass
        return gaussian_frame.submit_head(client, frame, cam, dirs, device).wait(should_stop=self.test_break), False

    def _send_ahead(self, client, scene, head, frame, cam, dirs, device) -> bool:
        """Send the next frame of an animation render to the worker now (``bridge.render_ahead``)."""
        from .bridge.worker_client import WorkerError

        try:
            return render_ahead.start(client, scene, head, frame, cam, dirs, device)
        except WorkerError as exc:                 # this frame is fine; the next one renders as usual
            render_ahead.STATS.stopped = f"sending ahead failed: {exc}"
            return False

    def _empty(self, width: int, height: int) -> None:
        result = self.begin_result(0, 0, width, height)
        layer = result.layers[0]
        _fill(layer, "Combined", np.zeros((height, width, 4), np.float32))
        _fill(layer, "Depth", np.full((height, width), BACKGROUND_DEPTH, np.float32))
        _fill(layer, "FaceMatte", np.zeros((height, width), np.float32))
        self.end_result(result)

    def _fail(self, width: int, height: int, message: str) -> None:
        LAST_RENDER.update(ok=False, error=message)
        ERRORS.append(message)
        print(f"EmoTalk3D render error: {message}", file=sys.stderr)
        self._empty(width, height)
        self.report({'ERROR'}, message)
        if hasattr(self, "error_set"):
            self.error_set(message)

    # -- rendered viewport ---------------------------------------------------------------

    def view_update(self, context, depsgraph):
        self._drawn = None                        # the scene changed: draw again

    def view_draw(self, context, depsgraph):
        from .bridge import camera as camera_mod
        from .bridge import gaussian_frame

        region, rv3d = context.region, context.region_data
        if region is None or rv3d is None:
            return
        key = (tuple(v for row in rv3d.view_matrix for v in row), tuple(v for row in rv3d.window_matrix for v in row),
               region.width, region.height, depsgraph.scene.frame_current)
        now = time.monotonic()
        if key != self._view_key:
            self._view_key, self._view_changed_at = key, now
        moving = now - self._view_changed_at < STILL_AFTER
        scale = PREVIEW_SCALE if moving else 1.0
        drawn = self._drawn
        if drawn is None or drawn[0] != key or drawn[1] > scale or (drawn[1] < scale and not moving):
            try:
                width, height = max(1, int(region.width * scale)), max(1, int(region.height * scale))
                cam = camera_mod.from_view_matrices(rv3d.view_matrix, rv3d.window_matrix, width, height)
                settings = _settings(context)
                dirs = settings.library_dirs()
                scene = depsgraph.scene
                head = gaussian_frame.find_head(scene)
                frame = gaussian_frame.head_frame(depsgraph, head, dirs, bpy.path.abspath,
                                                  evaluated_mesh=head.visible_get())
                passes = gaussian_frame.render_head(_client(settings), frame, cam, dirs, str(settings.device or "auto"),
                                                    linear=False)
                try:
                    texture = _texture(passes.combined)
                finally:
                    passes.release()
                self._drawn = drawn = (key, scale, texture, width, height)
                self._draw_error = ""
            except Exception as exc:  # noqa: BLE001 - the viewport shows the message instead
                self._drawn = None
                if str(exc) != self._draw_error:
                    self._draw_error = str(exc)
                    print(f"EmoTalk3D viewport: {exc}", file=sys.stderr)
                return
        if drawn is not None and drawn[2] is not None:
            _draw_texture(drawn[2], region.width, region.height)
        if moving:
            _redraw_later(self, STILL_AFTER)


def _texture(rgba: np.ndarray):
    """A GPU texture of a (H, W, 4) straight RGBA image (rows bottom-up); None without a GPU context."""
    try:
        import gpu
    except ImportError:
        return None
    height, width = rgba.shape[:2]
    buffer = gpu.types.Buffer('FLOAT', width * height * 4, np.ascontiguousarray(rgba, np.float32).ravel())
    return gpu.types.GPUTexture((width, height), format='RGBA16F', data=buffer)


def _draw_texture(texture, width: int, height: int) -> None:
    import gpu
    from gpu_extras.presets import draw_texture_2d

    gpu.state.blend_set('ALPHA')
    draw_texture_2d(texture, (0, 0), width, height)
    gpu.state.blend_set('NONE')


def _redraw_later(engine, delay: float) -> None:
    ref = weakref.ref(engine)

    def tick():
        target = ref()
        if target is not None:
            try:
                target.tag_redraw()
            except ReferenceError:
                pass
        return None

    bpy.app.timers.register(tick, first_interval=delay)


def compatible_panels() -> list:
    """Blender's own panels that make sense under this engine (camera, output, dimensions)."""
    keep = ("RENDER_PT_format", "RENDER_PT_frame_range", "RENDER_PT_output", "RENDER_PT_encoding",
            "RENDER_PT_post_processing", "RENDER_PT_stamp", "DATA_PT_lens", "DATA_PT_camera",
            "DATA_PT_camera_display", "DATA_PT_context_camera", "VIEWLAYER_PT_layer", "RENDER_PT_color_management")
    return [getattr(bpy.types, name) for name in keep if hasattr(bpy.types, name)]


@bpy.app.handlers.persistent
def _render_starts(*_args) -> None:
    render_ahead.reset()


@bpy.app.handlers.persistent
def _render_ends(*_args) -> None:
    render_ahead.discard()


RENDER_HANDLERS = (("render_init", _render_starts), ("render_complete", _render_ends),
                   ("render_cancel", _render_ends))


def register() -> None:
    bpy.utils.register_class(EMOTALK3D_RenderEngine)
    for name, handler in RENDER_HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if handler not in handlers:
            handlers.append(handler)
    for panel in compatible_panels():
        if hasattr(panel, "COMPAT_ENGINES"):
            panel.COMPAT_ENGINES.add(ENGINE_ID)


def unregister() -> None:
    for name, handler in RENDER_HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if handler in handlers:
            handlers.remove(handler)
    render_ahead.discard()
    for panel in compatible_panels():
        if hasattr(panel, "COMPAT_ENGINES"):
            panel.COMPAT_ENGINES.discard(ENGINE_ID)
    bpy.utils.unregister_class(EMOTALK3D_RenderEngine)


__all__ = ["EMOTALK3D_RenderEngine", "ENGINE_ID", "LAST_RENDER", "ERRORS", "register", "unregister"]
