"""Audio from any file FFmpeg reads (through PyAV): an audio file, or the sound of a video.

WAV, FLAC, MP3, Ogg (Vorbis, Opus), M4A/AAC, AIFF, CAF, MP4, MOV, MKV, WebM, AVI, ... :
:class:`AudioSource` picks one audio track and streams its decoded samples as blocks of
(frames, channels) in the codec's own sample type (int or float), frame by frame, so a
long file never sits in memory whole. :func:`list_audio_streams` lists a file's audio
tracks for a chooser. ``audio.load_audio`` turns the blocks into the 16 kHz waveform.

Safety: the file is opened by Python as a regular file (never a folder, FIFO or device,
never an FFmpeg URL such as ``concat:`` or ``http:``), and FFmpeg may open nothing else:
playlists and stream descriptions (HLS, ffconcat, SDP, RTSP) that point at other files or
network addresses are refused, both by demuxer name and by refusing every nested open.
Every failure is an :class:`~..errors.AudioError` that names the file.
"""
from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import AudioError

SUPPORTED_FORMATS = "WAV, FLAC, MP3, OGG, Opus, M4A/AAC, AIFF, or the sound of a video: MP4, MOV, MKV, WebM"
"""The formats named in messages (FFmpeg reads many more)."""

_IO_BUFFER_BYTES = 1 << 16

_NEVER_DEMUX = frozenset({
    "sdp", "rtsp", "rtp", "rtp_mpegts", "sap",  # open network sockets themselves (an SDP file waits on UDP)
    "hls", "dash", "concat", "imf", "webm_dash_manifest",  # playlists of other files or addresses
    "lavfi", "alsa", "oss", "fbdev", "kmsgrab", "x11grab", "video4linux2", "v4l2",  # devices, filter graphs
})
"""FFmpeg demuxers a file may never select by its content."""


@functools.cache
def _allowed_demuxers() -> str:
    """Every demuxer of this FFmpeg except ``_NEVER_DEMUX``, as a ``format_whitelist``."""
    names: set[str] = set()
    for entry in av.formats_available:
        try:
            parts = av.format.ContainerFormat(entry, "r").name.split(",")
        except Exception:  # a muxer only
            continue
        if not _NEVER_DEMUX.intersection(parts):
            names.update(parts)
    return ",".join(sorted(names))


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio track of a file, as its container declares it.

    ``index``: position among the file's audio tracks (what ``load_audio(stream=...)``
    takes); ``codec``: FFmpeg's decoder name ("aac", "opus", "pcm_s16le", ...);
    ``sample_rate`` in Hz (0 when undeclared); ``duration`` in seconds (None when the file
    does not say); ``language`` (e.g. "eng") and ``title`` from the track's tags, or None.
    """

    index: int
    codec: str
    channels: int
    sample_rate: int
    duration: float | None
    language: str | None
    title: str | None


class _NestedOpen(Exception):
    """FFmpeg asked to open another file or address on behalf of the file being read."""


def _refuse_nested_open(url: str, flags: int, options: dict) -> None:
    raise _NestedOpen(url)


def _open_regular_file(path: str | os.PathLike) -> tuple[object, str]:
    """(binary file object, message subject) of an existing, non-empty regular file."""
    raw = os.fsdecode(os.fspath(path))
    name = f"'{raw}'"
    try:
        p = Path(raw)
        if not p.exists():
            raise AudioError(f"Audio file {name} does not exist.")
        if p.is_dir():
            raise AudioError(f"Audio path {name} is a folder, not an audio file.")
        # O_NONBLOCK: should the path become a FIFO after the check, open() must not wait
        fd = os.open(raw, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise AudioError(f"Audio file {name} cannot be opened ({e.strerror or e}).") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AudioError(f"Audio path {name} is not a regular file (a pipe, socket or device); "
                             f"choose an audio or video file.")
        if st.st_size == 0:
            raise AudioError(f"Audio file {name} is empty (0 bytes).")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), f"Audio file {name}"
    except BaseException:
        os.close(fd)
        raise


class _Opened:
    """An open container with its file; closes both."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.file, self.name = _open_regular_file(path)
        try:
            self.container = av.open(self.file, "r", io_open=_refuse_nested_open, metadata_errors="replace",
                                     buffer_size=_IO_BUFFER_BYTES,
                                     container_options={"format_whitelist": _allowed_demuxers()})
        except _NestedOpen as e:
            self.file.close()
            raise AudioError(f"{self.name} is a playlist or stream description that points at other "
                             f"files or network addresses, not audio; open the media itself.") from e
        except Exception as e:  # av.FFmpegError, ValueError, OSError, MemoryError...
            self.file.close()
            raise AudioError(f"{self.name} could not be opened: it is damaged or not a supported audio "
                             f"or video format ({SUPPORTED_FORMATS}) [{reason(e)}].") from e

    def close(self) -> None:
        try:
            self.container.close()
        finally:
            self.file.close()


# --------------------------------------------------------------------------- listing


def list_audio_streams(path: str | os.PathLike) -> list[AudioStreamInfo]:
    """The audio tracks of ``path`` in file order (empty for a file without sound, e.g. a
    silent video). AudioError when the file cannot be opened."""
    opened = _Opened(path)
    try:
        tracks = list(opened.container.streams.audio)
        return [_info(i, s, opened.container) for i, s in enumerate(tracks)]
    finally:
        opened.close()


def _info(index: int, s: av.audio.stream.AudioStream, container: av.container.InputContainer) -> AudioStreamInfo:
    cc = s.codec_context
    tags = {str(k).lower(): str(v) for k, v in (s.metadata or {}).items()}
    language = tags.get("language")
    return AudioStreamInfo(
        index=index,
        codec=(cc.name if cc is not None else "") or "unknown",
        channels=int(getattr(cc, "channels", 0) or 0),
        sample_rate=int(getattr(cc, "sample_rate", 0) or 0),
        duration=_declared_seconds(s, tags, container),
        language=None if language in (None, "", "und") else language,
        title=tags.get("title") or None,
    )


def _declared_seconds(s: av.stream.Stream, tags: dict[str, str], container: av.container.InputContainer) -> float | None:
    """Stream duration, else the Matroska DURATION tag, else the container's; None if none."""
    if s.duration is not None and s.time_base:
        return float(s.duration * s.time_base)
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", tags.get("duration", "").strip())
    if m:
        return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    if container.duration is not None:
        return container.duration / av.time_base
    return None


# --------------------------------------------------------------------------- decoding


class AudioSource:
    """One audio track of an open file, decoded on demand. Use as a context manager.

    ``name``: the subject of messages ("Audio file '<path>'"); ``sample_rate`` in Hz and
    ``channels`` of the first decoded frame (a codec may differ from its container, e.g.
    HE-AAC); ``expected_frames``: the declared length in frames (0 when unknown; a hint
    only, never trusted).
    """

    def __init__(self, path: str | os.PathLike, stream: int | None = None) -> None:
        self._opened = _Opened(path)
        self.name = self._opened.name
        try:
            self._stream = _pick_stream(self._opened.container, stream, self.name)
            self._frames = self._decode()
            self._damage: tuple[float, BaseException] | None = None
            first = next(self._frames, None)
            if first is None and self._damage is not None:
                raise AudioError(f"{self.name} could not be decoded: it seems damaged "
                                 f"[{reason(self._damage[1])}].") from self._damage[1]
            if first is None:
                raise AudioError(f"{self.name} contains no audio samples.")
        except BaseException:
            self._opened.close()
            raise
        self._first: av.AudioFrame | None = first
        self.sample_rate = int(first.sample_rate)
        self.channels = int(first.layout.nb_channels)
        seconds = _declared_seconds(self._stream, {}, self._opened.container) or 0.0
        self.expected_frames = int(max(0.0, min(seconds, 1e7)) * max(self.sample_rate, 0))
        self.decoded_frames = 0

    def __enter__(self) -> AudioSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._opened.close()

    def blocks(self, max_frames: int) -> Iterator[np.ndarray]:
        """(n, C) blocks, n <= ``max_frames``, in the codec's sample type (int or float;
        int: full scale of the type). AudioError if the sample rate changes midway or the
        stream is damaged before its end."""
        step = max(1, int(max_frames))
        frames = self._frames if self._first is None else _chain(self._first, self._frames)
        self._first = None
        interleave = _Interleaver()
        for frame in frames:
            if frame.sample_rate != self.sample_rate:
                raise AudioError(f"{self.name} changes its sample rate midway ({self.sample_rate} Hz, then "
                                 f"{frame.sample_rate} Hz); re-export it at one rate.")
            x = _frame_array(frame, self.name, interleave)
            self.decoded_frames += x.shape[0]
            for i in range(0, x.shape[0], step):
                yield x[i: i + step]

    def _decode(self) -> Iterator[av.AudioFrame]:
        """Frames of the chosen track. A damaged or cut ending (decoding fails and nothing
        after it decodes) ends the audio there; damage followed by more audio is refused,
        since dropping it would shift everything after it."""
        decoded_s = 0.0
        packets = self._opened.container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except Exception as e:  # the container breaks off (cut file): end of audio
                self._damage = self._damage or (decoded_s, e)
                return
            try:
                frames = packet.decode()
            except Exception as e:
                self._damage = self._damage or (decoded_s, e)
                continue
            for frame in frames:
                if frame.samples <= 0:
                    continue
                if self._damage is not None:
                    at, err = self._damage
                    raise AudioError(f"{self.name} could not be decoded after {at:.2f} s: it seems "
                                     f"damaged [{reason(err)}].") from err
                decoded_s += frame.samples / max(frame.sample_rate, 1)
                yield frame


def _chain(first: av.AudioFrame, rest: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    yield first
    yield from rest


def _pick_stream(container: av.container.InputContainer, stream: int | None, name: str) -> av.audio.stream.AudioStream:
    tracks = list(container.streams.audio)
    if not tracks:
        what = " (it holds only pictures or video)" if container.streams.video else ""
        raise AudioError(f"{name} has no audio track{what}; choose a file with sound.")
    if stream is None:
        return tracks[0]
    if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)):
        raise AudioError(f"{name}: the audio track must be given by its number (0, 1, ...), got {stream!r}.")
    if not 0 <= int(stream) < len(tracks):
        count = f"{len(tracks)} audio track" + ("s" if len(tracks) > 1 else "")
        raise AudioError(f"{name} has {count} (numbered from 0); track {int(stream)} does not exist.")
    return tracks[int(stream)]


_PLANE_POINTERS = 8
"""AVFrame.data holds 8 plane pointers; PyAV finds a frame's planes by scanning for a null
pointer, which reads past them for 8 or more planar channels (and crashed on an 8-channel
Vorbis file). Such frames are interleaved by FFmpeg first (an exact copy)."""


class _Interleaver:
    """Planar frames with many channels -> packed frames of the same sample type and rate."""

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[str, str, int] | None = None

    def __call__(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key:
            self._resampler = av.AudioResampler(format=frame.format.packed.name, layout=frame.layout,
                                                rate=frame.sample_rate)
            self._key = key
        return self._resampler.resample(frame)


def _frame_array(frame: av.AudioFrame, name: str, interleave: _Interleaver) -> np.ndarray:
    """(samples, channels) array of a decoded frame, packed or planar."""
    channels = int(frame.layout.nb_channels)
    if channels <= 0:
        raise AudioError(f"{name} reports {channels} audio channels.")
    if frame.format.is_planar and channels >= _PLANE_POINTERS:
        try:
            packed = interleave(frame)
        except Exception as e:  # e.g. more channels than FFmpeg's converter takes (64)
            raise AudioError(f"{name} has {channels} channels in a layout that cannot be read "
                             f"[{reason(e)}]; export it with fewer channels.") from e
        parts = [f.to_ndarray().reshape(-1, channels) for f in packed]
        return np.concatenate(parts) if len(parts) != 1 else parts[0]
    a = frame.to_ndarray()
    if frame.format.is_planar:
        return a.T
    return a.reshape(-1, channels)


def reason(e: BaseException) -> str:
    """A short human reason from an FFmpeg/PyAV (or OS) exception, without the path."""
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split()).rstrip(".")

