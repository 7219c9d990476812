"""Where a head the extension has just created lands: at the 3D cursor, in the clear, facing the camera.

Only for a new head (never one the artist has placed, never the artist's camera):

* it turns about +Z to face the scene camera, when there is one;
* it stays at the 3D cursor unless its box (mesh and Gaussians: hair, neck, shoulders)
  meets another visible object's box there;
* then it moves, by the shortest distance, to the camera's right or left (level with the
  cursor) or up, to where its box is ``CLEARANCE`` head sizes clear of every other box,
  wholly inside the camera's frame and seen (no other box between it and the camera);
  without a camera, along +X, -X or up; failing all that, clear above everything.

Objects whose box holds the camera (a room, a sky dome) are not obstacles: the head could
not leave them and still be seen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import camera as camera_mod
from . import head_extent

CLEARANCE = 0.5          # head sizes between a moved head's box and any other
STEP = 0.05              # head sizes per search step
MAX_STEPS = 4000
GEOMETRY = {'MESH', 'CURVE', 'CURVES', 'SURFACE', 'META', 'FONT', 'VOLUME', 'POINTCLOUD', 'GPENCIL', 'GREASEPENCIL'}


@dataclass(frozen=True)
class Placement:
    """Location (3,) metres, rotation about +Z (radians), and what was in the way (names, empty when nothing)."""

    location: tuple[float, float, float]
    yaw: float
    moved_from: tuple[str, ...]


def _world_box(ob) -> tuple[np.ndarray, np.ndarray]:
    M = np.array(ob.matrix_world, np.float64)
    corners = np.array([tuple(c) for c in ob.bound_box], np.float64) @ M[:3, :3].T + M[:3, 3]
    return corners.min(axis=0), corners.max(axis=0)


def _corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def _yaw_to(camera_location: np.ndarray | None, at: np.ndarray) -> float | None:
    """The turn about +Z that points a -Y-facing head at the camera (None: no camera, or right above)."""
    if camera_location is None:
        return None
    d = camera_location[:2] - at[:2]
    return math.atan2(d[0], -d[1]) if np.hypot(*d) > 1e-6 else None


def _hits(boxes_lo: np.ndarray, boxes_hi: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float) -> np.ndarray:
    """(B,) bool: which boxes come within ``margin`` of the box lo..hi."""
    if not len(boxes_lo):
        return np.zeros(0, bool)
    return ((boxes_lo - margin < hi) & (lo < boxes_hi + margin)).all(axis=1)


def _blocked(eye: np.ndarray, targets: np.ndarray, boxes_lo: np.ndarray, boxes_hi: np.ndarray) -> bool:
    """True when a segment from ``eye`` to any of the (T, 3) ``targets`` crosses one of the boxes."""
    if not len(boxes_lo):
        return False
    d = targets - eye                                               # (T, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1 = (boxes_lo[None] - eye) * inv[:, None]                  # (T, B, 3)
        t2 = (boxes_hi[None] - eye) * inv[:, None]
    near = np.minimum(t1, t2).max(axis=2)
    far = np.maximum(t1, t2).min(axis=2)
    return bool(((near <= far) & (far > 0.0) & (near < 0.999)).any())


class _Scene:
    """The obstacles and the camera, read once."""

    def __init__(self, head, scene):
        cam = scene.camera if scene.camera is not None and scene.camera.type == 'CAMERA' else None
        self.eye = np.array(cam.matrix_world.translation, np.float64) if cam is not None else None
        self.pinhole = None
        if cam is not None:
            try:
                self.pinhole = camera_mod.from_blender_camera(cam, scene)
            except ValueError:                                      # orthographic: no frame test
                self.pinhole = None
        names, lo, hi = [], [], []
        for ob in scene.objects:
            if ob is head or ob.type not in GEOMETRY or not ob.visible_get():
                continue
            blo, bhi = _world_box(ob)
            if self.eye is not None and (blo <= self.eye).all() and (self.eye <= bhi).all():
                continue                                            # a room or a dome around the camera
            names.append(ob.name)
            lo.append(blo)
            hi.append(bhi)
        self.names = names
        self.lo = np.array(lo, np.float64).reshape(-1, 3)
        self.hi = np.array(hi, np.float64).reshape(-1, 3)
        self.camera = cam

    def seen(self, lo: np.ndarray, hi: np.ndarray) -> bool:
        """The box lies inside the camera's frame, in front of it, with nothing in between."""
        if self.camera is None:
            return True
        corners = _corners(lo, hi)
        if self.pinhole is not None:
            P = self.pinhole
            depth = corners @ P.world_to_camera[2, :3] + P.world_to_camera[2, 3]
            if (depth <= P.near).any() or (depth >= P.far).any():
                return False
            uv = P.project(corners)
            if (uv < 0).any() or (uv[:, 0] > P.width).any() or (uv[:, 1] > P.height).any():
                return False
        return not _blocked(self.eye, np.vstack([corners, (lo + hi) / 2]), self.lo, self.hi)


def plan(head, scene, bundle=None) -> Placement:
    """Where the new ``head`` (at the 3D cursor, not turned yet) should stand; nothing is changed."""
    local_lo, local_hi = head_extent.local_box(head, bundle)
    scale = np.array(tuple(head.scale), np.float64)
    local = _corners(local_lo, local_hi) * scale
    size = float((local.max(axis=0) - local.min(axis=0)).max()) or 0.1
    world = _Scene(head, scene)
    start = np.array(tuple(head.location), np.float64)
    keep_yaw = float(head.rotation_euler.z)

    def box(at: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        yaw = _yaw_to(world.eye, at)
        yaw = keep_yaw if yaw is None else yaw
        c, s = math.cos(yaw), math.sin(yaw)
        pts = local @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T + at
        return pts.min(axis=0), pts.max(axis=0), yaw

    lo, hi, yaw = box(start)
    in_way = _hits(world.lo, world.hi, lo, hi, 1e-3)
    if not in_way.any():
        return Placement(tuple(start), yaw, ())
    blockers = tuple(n for n, hit in zip(world.names, in_way) if hit)
    margin = CLEARANCE * size
    if world.camera is not None:
        right = np.array(world.camera.matrix_world.col[0][:3], np.float64)
        right[2] = 0.0
        right = right / np.linalg.norm(right) if np.linalg.norm(right) > 1e-6 else np.array([1.0, 0.0, 0.0])
    else:
        right = np.array([1.0, 0.0, 0.0])
    up = np.array([0.0, 0.0, 1.0])
    step = max(0.005, STEP * size)
    union_lo = np.minimum(world.lo.min(axis=0), lo)
    union_hi = np.maximum(world.hi.max(axis=0), hi)
    steps = min(MAX_STEPS, int(np.linalg.norm(union_hi - union_lo) / step) + int(2 * (size + margin) / step) + 2)

    def search(directions, need_seen: bool):
        for k in range(1, steps + 1):
            for direction in directions:
                at = start + direction * (k * step)
                blo, bhi, byaw = box(at)
                if not _hits(world.lo, world.hi, blo, bhi, margin).any() and (not need_seen or world.seen(blo, bhi)):
                    return Placement(tuple(at), byaw, blockers)
        return None

    found = (search((right, -right), True) or search((up,), True) or search((right, -right, up), False))
    if found is None:                                               # clear above everything
        at = start.copy()
        at[2] += (world.hi[:, 2].max() + margin) - lo[2]
        _, _, byaw = box(at)
        found = Placement(tuple(at), byaw, blockers)
    return found


def place_new_head(head, scene, bundle=None) -> Placement:
    """Move and turn a head the extension has just created (see the module's rules); returns the placement.
    ``bundle``: the subject's folder or zip (for the Gaussians' reach), else found from the head or scene."""
    if bundle is None:
        bundle = head_extent.subject_bundle(head, scene)
    found = plan(head, scene, bundle)
    head.location = found.location
    head.rotation_euler.z = found.yaw
    return found


def describe(head, found: Placement) -> str:
    """A sentence for the artist: where the head went and why."""
    where = ", ".join(f"{v:.2f}" for v in found.location)
    if found.moved_from:
        return f"{head.name!r} placed at ({where}) m, clear of {', '.join(repr(n) for n in found.moved_from[:3])}"
    return f"{head.name!r} placed at the 3D cursor"


__all__ = ["Placement", "plan", "place_new_head", "describe", "CLEARANCE"]
