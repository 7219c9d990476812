"""Voice activity from the waveform, and the mouth gate it gives each animation frame.

Voice activity: the level (dB) of 30 ms windows every 10 ms, against the recording's own
noise floor (the 10th percentile of the levels, never more than 60 dB below its loudest
window), with hysteresis: a window above ``floor + on`` starts speech, and speech lasts until
a window falls below ``floor + off``. ``on`` is 6 dB or a quarter of the range between floor
and loudest window, whichever is more; ``off`` half of that. Speech shorter than 60 ms (a
click) is dropped; silence shorter than 300 ms (a pause inside a phrase) counts as speech. A
recording whose loudest window stands less than 20 dB above its floor (speech about 10 dB or
less above its noise) has no silence that can be told from its speech safely: all of it is
speech, and the mouth is never closed (closing it on speech is the worse mistake).

The gate (per frame, 1 free, 0 closed) is 0 through every silence, 1 through speech, and
between them rises over the ``LEAD_S`` (100 ms) before each onset and falls over the
``RELEASE_S`` (150 ms) after each end (smoothstep ramps); silence before the first and after
the last speech is closed whatever its length. Frame ``f`` is taken at ``f / fps``.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

HOP_S = 0.01                 # one level every 10 ms ...
WINDOW_HOPS = 3              # ... over 30 ms windows
FLOOR_PERCENTILE = 10.0
MAX_RANGE_DB = 60.0          # the floor is never put further below the loudest window than this
MIN_RANGE_DB = 20.0          # the loudest window less than this above the floor: no silence is told apart
ON_DB, ON_SHARE = 6.0, 0.25  # speech starts at floor + max(ON_DB, ON_SHARE * range)
OFF_SHARE = 0.5              # ... and ends below floor + OFF_SHARE * that margin
MIN_SPEECH_S = 0.06
MIN_SILENCE_S = 0.3
LEAD_S = 0.1                 # the mouth may begin to move this long before speech starts
RELEASE_S = 0.15             # and takes this long to settle after it ends
_BLOCK_SAMPLES = 1 << 20     # levels are summed in blocks: hours of audio need no float64 copy


@dataclass(frozen=True)
class VoiceActivity:
    """Speech and silence of a recording, in ``HOP_S`` steps (hop ``i`` centred at ``i * HOP_S`` s)."""

    active: np.ndarray       # (N,) bool, True where speech is heard
    floor_db: float          # the noise floor, dB re full scale
    on_db: float             # the level that starts speech
    off_db: float            # the level it must fall below to end

    def segments(self) -> list[tuple[float, float]]:
        """Speech as (start s, end s) intervals, in order."""
        a = np.concatenate([[False], self.active, [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(a))
        return [(float(s * HOP_S), float(e * HOP_S)) for s, e in zip(edges[::2], edges[1::2])]


def hop_levels(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(N,) level in dB re full scale of the ``WINDOW_HOPS`` x ``HOP_S`` window centred at each hop."""
    x = np.asarray(samples)
    hop = max(1, int(round(HOP_S * sample_rate)))
    count = -(-x.size // hop)
    energy = np.zeros(count, np.float64)
    for start in range(0, count * hop, _BLOCK_SAMPLES - _BLOCK_SAMPLES % hop):
        block = np.asarray(x[start:start + _BLOCK_SAMPLES - _BLOCK_SAMPLES % hop], np.float64)
        padded = np.zeros(-(-block.size // hop) * hop)
        padded[:block.size] = block
        first = start // hop
        energy[first:first + padded.size // hop] = (padded.reshape(-1, hop) ** 2).sum(1)
    half = WINDOW_HOPS // 2
    summed = np.convolve(np.pad(energy, half, mode="edge"), np.ones(WINDOW_HOPS), "valid")
    return 10.0 * np.log10(np.maximum(summed / (WINDOW_HOPS * hop), 1e-12))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    a = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(a))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def voice_activity(samples: np.ndarray, sample_rate: int) -> VoiceActivity:
    """Speech and silence of (N,) mono ``samples`` at ``sample_rate`` Hz (see the module)."""
    level = hop_levels(samples, sample_rate)
    if level.size == 0:
        return VoiceActivity(np.zeros(0, bool), -120.0, -120.0, -120.0)
    loud = float(level.max())
    floor = max(float(np.percentile(level, FLOOR_PERCENTILE)), loud - MAX_RANGE_DB)
    span = loud - floor
    margin = max(ON_DB, ON_SHARE * span)
    on, off = floor + margin, floor + OFF_SHARE * margin
    if span < MIN_RANGE_DB:
        return VoiceActivity(np.ones(level.size, bool), floor, on, off)
    active = np.zeros(level.size, bool)
    speaking = False
    for i, db in enumerate(level.tolist()):      # hysteresis: a plain loop (100 steps a second)
        speaking = db >= off if speaking else db >= on
        active[i] = speaking
    for s, e in _runs(active):
        if (e - s) * HOP_S < MIN_SPEECH_S:
            active[s:e] = False
    for s, e in _runs(~active):
        if 0 < s and e < active.size and (e - s) * HOP_S < MIN_SILENCE_S:
            active[s:e] = True
    return VoiceActivity(active, floor, on, off)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def mouth_gate(activity: VoiceActivity, num_frames: int, fps: Fraction | float) -> np.ndarray:
    """(num_frames,) float32 in [0, 1]: how free the mouth is at each frame (1 speech, 0 silence).

    A silence of at least ``MIN_SILENCE_S`` (or one that starts or ends the clip) is 0; the
    gate rises over the ``LEAD_S`` before the next speech and falls over the ``RELEASE_S``
    after the last. Frame ``f`` is at ``f / fps`` seconds."""
    times = np.arange(num_frames, dtype=np.float64) / float(fps)
    gate = np.ones(num_frames, np.float64)
    speech = activity.segments()
    if not speech:
        return np.zeros(num_frames, np.float32) if activity.active.size else gate.astype(np.float32)
    # the silences: before the first segment, between segments, after the last
    bounds = [(None, speech[0][0])] + [(a[1], b[0]) for a, b in zip(speech, speech[1:])] + [(speech[-1][1], None)]
    for end, onset in bounds:
        if end is not None and onset is not None and onset - end < MIN_SILENCE_S:
            continue
        released = np.zeros(num_frames) if end is None else 1.0 - _smoothstep((times - end) / RELEASE_S)
        rising = np.zeros(num_frames) if onset is None else _smoothstep((times - (onset - LEAD_S)) / LEAD_S)
        gate = np.minimum(gate, np.maximum(released, rising))
    return gate.astype(np.float32)
