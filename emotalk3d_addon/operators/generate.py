"""``emotalk3d.generate``: audio + emotion keys -> shape-key Action on the subject's head.

Interactive (invoke): the backend runs in the worker, followed by a background thread;
a window timer polls it, progress shows in the status bar and the panel, Esc (or the
panel's Cancel) kills the worker and nothing is written. Headless (execute): the same
job runs synchronously. Either way the scene is written only at the end, in this one
operator step, so a single undo removes a finished generation: its head, Action, sound
strip, the previous dialogue strip it replaced and the frame range it widened. Blender
pushes that undo step itself when ``modal`` returns FINISHED, as it does for ``execute``
(an ``ed.undo_push`` of our own would add a second step holding the same state).
"""

import bpy
from bpy.props import BoolProperty, FloatProperty

from ..bridge import apply, auto, jobs

LAST_REPORT: dict[str, str] = {"level": "", "message": ""}


def _remember(level: str, message: str) -> None:
    LAST_REPORT["level"], LAST_REPORT["message"] = level, message


class GenerateSession:
    """One generation from start to finish; the modal operator only forwards events to it."""

    def __init__(self, request: jobs.GenerateRequest):
        self.request = request
        self.job = jobs.GenerateJob(request)
        self.applied: apply.Applied | None = None

    @classmethod
    def from_context(cls, context, reuse_action: bool = False, **extra) -> "GenerateSession":
        from ..preferences import current_settings

        if jobs.active_job() is not None and not jobs.active_job().finished:
            raise jobs.UserError("A generation is already running (Esc cancels it)")
        return cls(jobs.build_request(context.scene, current_settings(context), reuse_action=reuse_action, **extra))

    def start(self) -> "GenerateSession":
        self.job.start()
        return self

    def run(self) -> "GenerateSession":
        self.job.run()
        return self

    def cancel(self) -> None:
        self.job.cancel()

    @property
    def finished(self) -> bool:
        return self.job.finished

    def status_text(self) -> str:
        return f"EmoTalk3D: {self.job.message} ({int(100 * self.job.fraction)}%)  -  Esc to cancel"

    def finish(self, context) -> tuple[set[str], str, str]:
        """Write the result (only when the job succeeded): ({'FINISHED'|'CANCELLED'}, level, message)."""
        job = self.job
        if job.state == "cancelled":
            return {'CANCELLED'}, 'WARNING', "EmoTalk3D: generation cancelled; nothing was changed"
        if job.state != "done":
            return {'CANCELLED'}, 'ERROR', f"EmoTalk3D: {job.error}"
        scene = bpy.data.scenes.get(self.request.scene)
        if scene is None:
            return {'CANCELLED'}, 'ERROR', (f"EmoTalk3D: scene {self.request.scene!r} was removed or renamed during "
                                            "generation; nothing was changed")
        try:
            self.applied = apply.apply_generation(context, scene, self.request, job.result)
        except jobs.UserError as exc:
            return {'CANCELLED'}, 'ERROR', f"EmoTalk3D: {exc}"
        except Exception as exc:  # noqa: BLE001 - rolled back; report, never raise into the UI
            return {'CANCELLED'}, 'ERROR', f"EmoTalk3D: could not write the performance: {type(exc).__name__}: {exc}"
        auto.reset(scene)
        level, message = self._summary()
        notes = _scene_notes(self.applied)
        if self.applied.kept_strip:
            level = 'WARNING'
        return {'FINISHED'}, level, message + notes

    def _summary(self) -> tuple[str, str]:
        a, info = self.applied, self.job.result.info
        if self.request.audio_is_file and not a.strip_name:
            return 'WARNING', (f"EmoTalk3D: {a.num_frames} frames from frame {a.frame_start:g} -> action "
                               f"'{a.action.name}' on '{a.head.name}'; this Blender has no audio support, "
                               "so no sound strip was added (the performance starts at the start frame)")
        if a.action.emotalk3d.target:
            unmatched = (f"; the target has no shape key for {len(a.unmatched)} ARKit shape(s) the performance "
                         f"moves: {', '.join(a.unmatched[:6])}{' ...' if len(a.unmatched) > 6 else ''}"
                         if a.unmatched else "")
            return 'WARNING' if a.unmatched else 'INFO', (
                f"EmoTalk3D: {a.num_frames} frames from frame {a.frame_start:g} -> action '{a.action.name}' on "
                f"'{a.head.name}'s shape keys (ARKit fit {info.get('arkit_rms_mm') or 0:.2f} mm RMS){unmatched}")
        return 'INFO', (f"EmoTalk3D: {a.num_frames} frames from frame {a.frame_start:g} -> action "
                        f"'{a.action.name}' on '{a.head.name}' (basis error "
                        f"{info.get('basis_max_mm', 0):.3f} mm max)")


def _scene_notes(a: apply.Applied) -> str:
    """What else Generate changed in the scene (or left for the artist), for the report."""
    notes = ""
    if a.replaced_how == "removed":
        notes += f"; the previous dialogue strip '{a.replaced_strip}' was removed"
    elif a.replaced_how == "muted":
        notes += f"; the previous dialogue strip '{a.replaced_strip}' was muted (it has your edits)"
    if a.kept_strip:
        notes += (f"; your sound strip '{a.kept_strip}' that the previous performance followed still plays: "
                  "mute it if it should not")
    if a.frame_range is not None:
        notes += f"; the scene's frame range is now {a.frame_range[0]}-{a.frame_range[1]}"
    return notes


class EMOTALK3D_OT_generate(bpy.types.Operator):
    """Generate the facial performance for the audio with the keyed emotions (Esc cancels)"""

    bl_idname = "emotalk3d.generate"
    bl_label = "Generate"
    bl_options = {'REGISTER', 'UNDO'}

    reuse_action: BoolProperty(name="Rewrite Last Action", default=False, options={'HIDDEN', 'SKIP_SAVE'},
                               description="Rewrite the last generated action in place (auto-update)")
    debug_delay: FloatProperty(default=0.0, options={'HIDDEN', 'SKIP_SAVE'},
                               description="Testing aid: the worker waits this long mid-request")

    _session = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "emotalk3d")

    def _begin(self, context) -> GenerateSession | None:
        try:
            return GenerateSession.from_context(context, self.reuse_action, debug_delay=self.debug_delay)
        except jobs.UserError as exc:
            self.report({'ERROR'}, f"EmoTalk3D: {exc}")
            _remember('ERROR', str(exc))
            return None

    def _end(self, context, session: GenerateSession):
        result, level, message = session.finish(context)
        self.report({level}, message)
        _remember(level, message)
        return result

    def execute(self, context):
        session = self._begin(context)
        if session is None:
            return {'CANCELLED'}
        return self._end(context, session.run())

    def invoke(self, context, event):
        if context.window is None:
            return self.execute(context)
        session = self._begin(context)
        if session is None:
            return {'CANCELLED'}
        self._session = session.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        self._status(context, session.status_text())
        return {'RUNNING_MODAL'}

    def modal(self, context, event):
        session = self._session
        if session is None:
            return {'CANCELLED'}
        if event.type == 'ESC' and event.value == 'PRESS' and not session.finished:
            session.cancel()
        if event.type == 'TIMER' or session.finished:
            if session.finished:
                self._cleanup(context)
                return self._end(context, session)
            self._status(context, session.status_text())
            _redraw(context)
        return {'PASS_THROUGH'}

    def cancel(self, context):  # Blender closing the window / file while running
        if self._session is not None:
            self._session.cancel()
        self._cleanup(context)

    def _cleanup(self, context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        self._status(context, None)
        _redraw(context)

    @staticmethod
    def _status(context, text) -> None:
        workspace = getattr(context, "workspace", None)
        if workspace is not None:
            workspace.status_text_set(text)


def _redraw(context) -> None:
    screen = getattr(context, "screen", None)
    if screen is None:
        return
    for area in screen.areas:
        if area.type in {'VIEW_3D', 'SEQUENCE_EDITOR', 'PREFERENCES'}:
            area.tag_redraw()


class EMOTALK3D_OT_cancel(bpy.types.Operator):
    """Cancel the running generation (the backend worker is stopped; nothing is written)"""

    bl_idname = "emotalk3d.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        job = jobs.active_job()
        return job is not None and not job.finished

    def execute(self, context):
        job = jobs.active_job()
        if job is not None:
            job.cancel()
        return {'FINISHED'}


CLASSES = (EMOTALK3D_OT_generate, EMOTALK3D_OT_cancel)
