"""Child process: synthesise one utterance with libespeak-ng and report phoneme events.

Run as ``python -I _espeak_child.py`` with a JSON request on stdin:
{"text", "voice", "rate", "pitch", "range", "amplitude", "wordgap", "raw": path}.
Writes the int16 mono samples to ``raw`` and prints one JSON object on stdout:
{"sample_rate": int, "samples": int, "phonemes": [[start_sample, ipa], ...],
 "words": [[start_sample, text_position], ...]}.

A fresh process per utterance keeps the output exactly reproducible: libespeak-ng
carries state from one synthesis to the next inside a process. Only the standard
library is used, so the child starts in a few milliseconds.
"""
import array
import ctypes
import ctypes.util
import json
import sys

AUDIO_OUTPUT_SYNCHRONOUS = 2
INIT_PHONEME_EVENTS, INIT_PHONEME_IPA, INIT_DONT_EXIT = 0x0001, 0x0002, 0x8000
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_PHONEME = 0, 1, 7
POS_CHARACTER, CHARS_UTF8 = 1, 1
PARAMS = {"rate": 1, "amplitude": 2, "pitch": 3, "range": 4, "wordgap": 7}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


def _load():
    names = ["libespeak-ng.so.1", "libespeak-ng.so", ctypes.util.find_library("espeak-ng"),
             "libespeak-ng.1.dylib", "libespeak-ng.dylib", "libespeak-ng.dll"]
    for name in names:
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise OSError("libespeak-ng not found (Debian/Ubuntu: apt-get install espeak-ng)")


def main() -> int:
    req = json.loads(sys.stdin.read())
    try:
        lib = _load()
    except OSError as exc:
        print(json.dumps({"error": str(exc)}))
        return 3
    lib.espeak_Initialize.restype = ctypes.c_int
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                 INIT_PHONEME_EVENTS | INIT_PHONEME_IPA | INIT_DONT_EXIT)
    if rate <= 0:
        print(json.dumps({"error": f"espeak_Initialize failed ({rate})"}))
        return 3
    samples = array.array("h")
    phonemes, words = [], []

    def on_synth(wav, n, events):
        if n > 0:
            samples.frombytes(ctypes.string_at(wav, 2 * n))
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == EVENT_PHONEME:
                raw = bytes(ev.id.string).split(b"\0", 1)[0]
                phonemes.append([int(ev.sample), raw.decode("utf-8", "ignore")])
            elif ev.type == EVENT_WORD:
                words.append([int(ev.sample), int(ev.text_position)])
            i += 1
        return 0

    callback = _CALLBACK(on_synth)
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(req["voice"].encode()) != 0:
        print(json.dumps({"error": f"espeak-ng has no voice {req['voice']!r}"}))
        return 3
    for key, param in PARAMS.items():
        if key in req:
            lib.espeak_SetParameter(param, int(req[key]), 0)
    text = req["text"].encode("utf-8")
    err = lib.espeak_Synth(text, len(text) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    if err != 0 or not samples:
        print(json.dumps({"error": f"espeak_Synth failed ({err})"}))
        return 3
    with open(req["raw"], "wb") as f:
        samples.tofile(f)
    print(json.dumps({"sample_rate": rate, "samples": len(samples), "phonemes": phonemes,
                      "words": words}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
