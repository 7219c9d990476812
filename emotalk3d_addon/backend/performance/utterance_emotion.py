"""Emotion from speech, heard one utterance at a time.

The speech encoder's features of a stretch of speech depend on where it sits in the
encoder's window and on what else is in that window, and the emotion extractor, trained on
utterances encoded on their own, flips between neighbouring emotions with them. Cut at
pauses and encoded on its own, from a fixed lead-in, the same utterance gives the same
features and so the same emotion, alone or anywhere in a longer file.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable

import numpy as np
import torch

from ..emotions import NUM_EMOTIONS
from ..speech.emotion import EmotionExtractor, moving_average
from ..speech.framerate import features_to_frames


PAUSE_S = 0.25          # silence that separates two utterances
LEAD_S = 0.1            # audio kept before an utterance's first and after its last loud sample
SPEECH_DB = -35.0       # loud: within this of the file's peak (and above SILENCE_DBFS)
SILENCE_DBFS = -60.0
CHUNK_S = 10.0          # longest stretch of speech encoded at once for the emotion


def utterance_spans(samples: np.ndarray, sample_rate: int, pause_s: float = PAUSE_S) -> list[tuple[int, int]]:
    """[start, stop) sample ranges of the utterances in (N,) ``samples``: runs of loud
    samples (``SPEECH_DB`` below the peak) with no pause of ``pause_s`` inside. Decided
    sample by sample, so a copy of the same audio elsewhere gets the same spans, shifted."""
    level = np.abs(samples)
    peak = float(level.max()) if level.size else 0.0
    threshold = max(peak * 10 ** (SPEECH_DB / 20), 10 ** (SILENCE_DBFS / 20))
    loud = np.flatnonzero(level > threshold)
    if loud.size == 0:
        return []
    gaps = np.flatnonzero(np.diff(loud) > pause_s * sample_rate)
    starts = np.concatenate([loud[:1], loud[gaps + 1]])
    stops = np.concatenate([loud[gaps], loud[-1:]]) + 1
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def _padded(samples: np.ndarray, start: int, stop: int) -> np.ndarray:
    """samples[start:stop] with zeros where the range runs past either end."""
    out = np.zeros(stop - start, np.float32)
    lo, hi = max(start, 0), min(stop, samples.size)
    out[lo - start:hi - start] = samples[lo:hi]
    return out


def chunk_edges(start: int, stop: int, sample_rate: int, chunk_s: float = CHUNK_S) -> list[int]:
    """Sample positions that cut [start, stop) into the fewest equal pieces of at most
    ``chunk_s`` seconds (a one-piece utterance: [start, stop])."""
    pieces = max(1, int(np.ceil((stop - start) / (chunk_s * sample_rate) - 1e-9)))
    return [int(round(x)) for x in np.linspace(start, stop, pieces + 1)]


def _heard(extractor: EmotionExtractor, samples: np.ndarray, sample_rate: int, fps: Fraction, start: int,
           stop: int, lead: int, encode: Callable[[np.ndarray], torch.Tensor],
           centre_offset_s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(8,) weights and () intensity of the utterance [start, stop): each of its chunks
    (``chunk_edges``) with ``lead`` samples of the audio around it is encoded on its own and
    heard; the extractor's frames over the chunks' speech are averaged."""
    rate = float(fps)
    total_w, total_i, count = torch.zeros(NUM_EMOTIONS), torch.zeros(()), 0
    edges = chunk_edges(start, stop, sample_rate)
    for a, b in zip(edges, edges[1:]):
        piece = _padded(samples, a - lead, b + lead)
        local_frames = max(1, int(np.ceil(piece.size / sample_rate * rate)))
        features = features_to_frames(encode(piece), local_frames, fps, centre_offset_s=centre_offset_s)
        w, i = extractor.predict_frames(features)
        first = min(int(lead / sample_rate * rate), local_frames - 1)          # the speech's frames
        last = max(int(np.ceil((lead + b - a) / sample_rate * rate)), first + 1)
        total_w += w[first:last].sum(0)
        total_i += i[first:last].sum()
        count += w[first:last].shape[0]
    return total_w / count, total_i / count


def speech_emotion_by_utterance(extractor: EmotionExtractor, samples: np.ndarray, sample_rate: int,
                                fps: Fraction, num_frames: int, encode: Callable[[np.ndarray], torch.Tensor],
                                centre_offset_s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Emotion heard in (N,) ``samples``: weights (num_frames, 8) summing to 1 and intensity
    (num_frames,), at ``fps`` (the extractor's own rate).

    Each utterance (``utterance_spans``) with ``LEAD_S`` of audio either side is encoded on
    its own by ``encode`` ((n,) samples -> (T, D) features at 50 Hz, feature k centred at
    ``0.02 k + centre_offset_s`` s) and heard by the extractor on a frame grid that starts
    with it; an utterance longer than ``CHUNK_S`` is cut into equal chunks first, each
    encoded on its own, so no feature hears more than ``CHUNK_S`` of speech (the encoder's
    features, and the emotion heard, drift with how much audio its window holds). The
    utterance's emotion is the mean of the extractor's frames over its speech (the lead-in
    and -out left out): one emotion per utterance, as the training labels give it, so the
    frame-to-frame wander of the extractor inside a sentence (which follows the phones as
    much as the feeling) does not reach the face, and a sentence heard inside a longer run
    of speech gets the run's one emotion in every part. Every frame takes the
    utterance nearest to it (pauses are cut in the middle), and the track is smoothed over
    ``extractor.config.smooth`` frames, which blends neighbours across the cuts only.
    Without any loud sample the clip is heard whole. Units: samples at ``sample_rate``."""
    spans = utterance_spans(samples, sample_rate)
    lead = int(round(LEAD_S * sample_rate))
    if not spans:
        spans, lead = [(0, samples.size)], 0
    rate = float(fps)
    frame_time = torch.arange(num_frames, dtype=torch.float64) / rate
    weights = torch.empty(num_frames, NUM_EMOTIONS)
    intensity = torch.empty(num_frames)
    bounds = [0.0] + [(b + a) / 2 / sample_rate for (_, b), (a, _) in zip(spans, spans[1:])] + [float("inf")]
    for (start, stop), lo, hi in zip(spans, bounds, bounds[1:]):
        here = (frame_time >= lo) & (frame_time < hi)
        if not bool(here.any()):
            continue
        w, i = _heard(extractor, samples, sample_rate, fps, start, stop, lead, encode, centre_offset_s)
        weights[here] = w
        intensity[here] = i
    smoothed = moving_average(torch.cat([weights, intensity[:, None]], 1), extractor.config.smooth)
    weights = smoothed[:, :NUM_EMOTIONS]
    return weights / weights.sum(1, keepdim=True), smoothed[:, NUM_EMOTIONS]


__all__ = ["chunk_edges", "speech_emotion_by_utterance", "utterance_spans"]
