"""Sentences for the speech corpus: the built-in phoneme-rich sentences plus thousands
drawn from templates over a small lexicon (seeded, so a corpus is reproducible).

The lexicon is written for this project and leans on the sounds lips show: bilabials,
labiodentals, rounded and open vowels, sibilants.
"""
from __future__ import annotations

import numpy as np

from ..synthetic.sentences import SENTENCES, TEST_SENTENCES

NAMES = ("Peter", "Mary", "Bob", "Vera", "Martha", "Paul", "Fiona", "Owen", "Judy", "Ben", "Molly",
         "Victor", "Maya", "Sam", "Lucy", "Tom", "Wendy", "Hugo", "Rosa", "Jim", "Beth", "Philip",
         "Nora", "Max", "Ava", "Liam", "Zoe", "Abe", "Ruth", "Gus")
NOUNS = ("map", "boat", "moon", "pie", "book", "box", "bottle", "piano", "mirror", "window", "van",
         "violin", "phone", "shoe", "spoon", "bowl", "bridge", "chair", "garden", "pocket", "ball",
         "bag", "wolf", "bear", "bird", "fish", "horse", "sheep", "cheese", "bread", "coffee", "paper",
         "letter", "photo", "movie", "museum", "market", "beach", "forest", "mountain", "river",
         "village", "tower", "ship", "rope", "wheel", "basket", "lamp", "mop", "velvet robe",
         "blue balloon", "warm soup", "purple plum", "huge umbrella", "old wooden chest", "map of Paris")
VERBS_PAST = ("bought", "found", "moved", "opened", "painted", "borrowed", "fixed", "washed", "dropped",
              "brought", "hid", "packed", "wrapped", "pushed", "pulled", "showed", "loved", "missed",
              "sold", "kept", "played with", "waved at", "looked at", "forgot", "remembered", "carried")
ADJECTIVES = ("big", "small", "blue", "brown", "purple", "warm", "smooth", "heavy", "empty", "famous",
              "funny", "broken", "shiny", "quiet", "massive", "fluffy", "lovely", "awful", "beautiful",
              "soft", "very old", "bright", "deep", "muddy", "perfect", "pale")
PLACES = ("by the bay", "at the office", "in the morning", "before lunch", "after supper",
          "on Monday", "at midnight", "near the pool", "under the bridge", "behind the barn",
          "in the museum", "at the park", "on the boat", "beside the fire", "over the fence",
          "through the woods", "in the pouring rain", "by the window", "on the way home")
FEELINGS = ("I can't believe it", "Oh my", "Wow", "Please", "Look", "Well", "Honestly", "Maybe",
            "Of course", "Oh no", "Wait", "Listen", "Beautiful", "Perfect", "Seriously", "Fine",
            "Why", "Be careful", "Move", "Oh boy")
TEMPLATES = (
    "{name} {verb} the {adj} {noun} {place}.",
    "{feeling}, {name} {verb} my {noun}!",
    "Why would {name} keep a {adj} {noun} {place}?",
    "{name} and {name2} {verb} a {noun} {place}.",
    "My {noun} is {adj}, but your {noun2} is {adj2}.",
    "{feeling}. The {noun} was {adj} {place}.",
    "Did you see the {adj} {noun} {place}?",
    "We {verb} the {noun} and the {noun2} {place}.",
    "{name}, please bring the {adj} {noun} to me.",
    "Maybe the {noun} will move by itself {place}.",
    "{feeling}! Who {verb} the {adj} {noun}?",
    "Five {adj} {noun}s fell {place}.",
)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def generated_sentence(rng: np.random.Generator) -> str:
    """One sentence from a random template."""
    template = _pick(rng, TEMPLATES)
    name = _pick(rng, NAMES)
    return template.format(
        name=name, name2=_pick(rng, tuple(n for n in NAMES if n != name)), verb=_pick(rng, VERBS_PAST),
        adj=_pick(rng, ADJECTIVES), adj2=_pick(rng, ADJECTIVES), noun=_pick(rng, NOUNS),
        noun2=_pick(rng, NOUNS), place=_pick(rng, PLACES), feeling=_pick(rng, FEELINGS))


def corpus_sentences(count: int, seed: int) -> list[str]:
    """``count`` distinct sentences: the built-in training sentences first, then generated
    ones. The multi-view dataset's held-out test sentences are never used."""
    rng = np.random.default_rng([seed, 7])
    held_out = set(TEST_SENTENCES)
    out: list[str] = [s for s in SENTENCES if s not in held_out][:count]
    seen = set(out)
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise ValueError(f"cannot draw {count} distinct sentences from the templates")
        s = generated_sentence(rng)
        if s not in seen and s not in held_out:
            seen.add(s)
            out.append(s)
    return out
