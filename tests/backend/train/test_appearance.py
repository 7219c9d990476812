"""Appearance training rules that hold whatever the data: the opaque-surface floor."""
import math

import numpy as np
import pytest
import torch

from emotalk3d_addon.backend.appearance.completion import CompletionConfig
from emotalk3d_addon.backend.appearance.dynamic import AnimatedHead
from emotalk3d_addon.backend.appearance.g2anet import G2AConfig
from emotalk3d_addon.backend.appearance.rigid import RigidPart
from emotalk3d_addon.backend.train.appearance import hold_surface_opacity

from ..appearance.meshes import face_grid


def _head() -> AnimatedHead:
    template, tri, uvs, mask = face_grid(7)
    lo, hi = template.min(0), template.max(0)
    plate = np.array([[lo[0], lo[1] + 0.01, lo[2]], [hi[0], lo[1] + 0.01, lo[2]], [lo[0], lo[1] + 0.01, hi[2]]],
                     np.float32)
    part = RigidPart("plate", plate, np.array([[0, 1, 2]]), np.zeros(0, np.int64))
    head = AnimatedHead.initial(template, tri, uvs, mask, g2a=G2AConfig(sh_degree=0, hidden=8),
                                completion=CompletionConfig(num_points=100), rigid_parts=[part], rigid_per_cm2=2.0)
    rng = torch.Generator().manual_seed(0)
    head.canonical.opacity_logits = torch.randn(head.canonical.num, generator=rng) * 3.0
    return head


def test_the_floor_raises_face_and_rigid_opacities_and_leaves_the_rest():
    head = _head()
    before = head.canonical.opacity_logits.clone()
    hold_surface_opacity(head, 0.9)
    after = torch.sigmoid(head.canonical.opacity_logits)
    surfaces = torch.zeros(head.canonical.num, dtype=torch.bool)
    surfaces[: head.binding.num] = True
    surfaces[head.rigid_slice] = True
    assert head.rigid.num > 0 and bool((after[surfaces] >= 0.9 - 1e-6).all())
    # opacities above the floor, and every completion Gaussian, are untouched
    kept = ~surfaces | (torch.sigmoid(before) >= 0.9)
    assert torch.equal(head.canonical.opacity_logits[kept], before[kept])
    raised = surfaces & (torch.sigmoid(before) < 0.9)
    assert raised.any()
    assert torch.allclose(head.canonical.opacity_logits[raised], torch.full((int(raised.sum()),), math.log(9.0)))


def test_a_zero_floor_changes_nothing_and_a_floor_of_one_is_refused():
    head = _head()
    before = head.canonical.opacity_logits.clone()
    hold_surface_opacity(head, 0.0)
    assert torch.equal(head.canonical.opacity_logits, before)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        hold_surface_opacity(head, 1.0)
