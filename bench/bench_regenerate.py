"""Re-generate 60 s after an emotion-key edit, speech features cached (goal <= 0.3 s).

Measures SubjectRuntime.perform on a HuBERT-base-sized encoder and a FLAME-size S2GNet:
the first call encodes; the timed calls after a key edit hit the feature cache.
"""
from fractions import Fraction

from common import best_of, hubert_base_encoder, speech, subject

from emotalk3d_addon.backend.performance.emotion_track import EmotionKey, track_from_keys
from emotalk3d_addon.backend.performance.runtime import SubjectRuntime
from emotalk3d_addon.backend.timebase import frame_count

fps = Fraction(30)
wave = speech(60.0)
runtime = SubjectRuntime(subject(), encoder=hubert_base_encoder())
frames = frame_count(wave.samples.size, 16000, fps)
first = best_of(lambda: runtime.perform(wave, fps, track_from_keys([EmotionKey(0, "happy", 1.0)], frames)), 1)
edits = iter([[EmotionKey(0, "happy", 1.0), EmotionKey(900, e, 0.5)] for e in ("sad", "angry", "fear", "sad")])
t = best_of(lambda: runtime.perform(wave, fps, track_from_keys(next(edits), frames)), 3)
print(f"first generation (encodes 60 s): {first:.2f} s; after a key edit (features cached): {t:.3f} s; "
      f"cache hits {runtime.cache.hits}, misses {runtime.cache.misses}")
