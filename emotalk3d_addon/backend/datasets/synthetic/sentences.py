"""Built-in sentences, espeak-ng voices and per-emotion speech prosody.

The sentences are short, written for this project, and together cover English
phonemes: bilabials (p b m), labiodentals (f v), dentals (th), rounded vowels (oo, o, w),
spread vowels (ee), open vowels (a, ah), sibilants and affricates (s sh ch j).
"""
from __future__ import annotations

SENTENCES: tuple[str, ...] = (
    "Peter bought a map of the moon.",
    "Bob baked a big blueberry pie.",
    "Maybe my mom meant the blue boat.",
    "Five violins filled the vast valley.",
    "Very few fish live in the river.",
    "The thin thief thanked his father.",
    "We wove a warm wool sweater.",
    "Who knew the blue moon would shoot through?",
    "Old Joe goes home alone in the snow.",
    "She sees three green leaves on the tree.",
    "Keep the cheese in the deep freezer.",
    "Father parked the car by the farm.",
    "A large dog barked at the dark arch.",
    "Judy chose cheap shoes at the shop.",
    "The chef showed us a fresh sushi dish.",
    "Sam sells six silver spoons.",
    "Lucy looked at the yellow lemon.",
    "Ten red hens ran around the pen.",
    "Gary got a good grade in geography.",
    "Kate came back with a cup of coffee.",
    "Rain fell on the wet pavement all day.",
    "Thomas threw the ball over the fence.",
    "I might fly to Paris on Monday.",
    "Oil boils in the noisy copper pot.",
    "How about a quiet walk outside?",
    "Open the window and feel the breeze.",
    "Please bring me a bowl of warm soup.",
    "Mike likes to ride his white bike.",
    "The baby woke up when the phone rang.",
    "Five fat frogs fell off the bridge.",
    "My brother plays the piano at night.",
    "Put the purple box beside the bed.",
    "Vera moved the vase to the velvet sofa.",
    "Wendy waved while walking away.",
    "The old map was found in a wooden chest.",
    "Bright lamps lit the empty museum.",
    "We watched the birds fly over the water.",
    "Each morning Beth jogs through the park.",
    "Mother made a huge plum pudding.",
    "Quick brown foxes jump over lazy dogs.",
    "Ruth mopped the floor before lunch.",
    "Pam and Bill both play baseball.",
)

# Sentences never used for training sequences (the test split uses these first).
TEST_SENTENCES: tuple[str, ...] = (
    "Bring both paper plates to the museum.",
    "Few people were awake at five.",
    "Would you choose the smooth blue shoes?",
    "Father opened a jar of sweet peaches.",
    "Mary moved her boat past the bay.",
)

# espeak-ng voices (language + variant). The test voice is never used for training.
TRAIN_VOICES: tuple[str, ...] = (
    "en-us+m3", "en+f2", "en-us+f4", "en-gb-x-rp+m1", "en-gb-scotland+m4", "en-us+f1",
)
TEST_VOICE = "en-029+f3"

# espeak-ng prosody per emotion at full intensity (rate words/min, pitch 0..100,
# range 0..100, amplitude 0..200, word gap in units of 10 ms). Intensity interpolates
# linearly from the neutral values.
PROSODY: dict[str, dict[str, float]] = {
    "neutral":   dict(rate=160, pitch=50, range=50, amplitude=100, wordgap=0),
    "angry":     dict(rate=178, pitch=44, range=72, amplitude=165, wordgap=1),
    "contempt":  dict(rate=140, pitch=40, range=35, amplitude=90, wordgap=2),
    "disgusted": dict(rate=135, pitch=38, range=45, amplitude=100, wordgap=3),
    "fear":      dict(rate=188, pitch=68, range=82, amplitude=110, wordgap=0),
    "happy":     dict(rate=176, pitch=62, range=85, amplitude=125, wordgap=0),
    "sad":       dict(rate=118, pitch=34, range=18, amplitude=72, wordgap=4),
    "surprised": dict(rate=165, pitch=72, range=95, amplitude=135, wordgap=1),
}


def prosody(emotion: str, intensity: float) -> dict[str, int]:
    """espeak-ng parameters for an emotion at an intensity in [0, 1]."""
    base, target = PROSODY["neutral"], PROSODY[emotion]
    return {k: int(round(base[k] + intensity * (target[k] - base[k]))) for k in base}
