"""Audio in and out as numpy PCM: formats, clocks, resampling, sources, sinks, playout, devices.

PCM is a 1-D ``numpy.int16`` array of mono samples at a stated rate (see
:mod:`livetalk.audio.format`). Nothing here imports aiortc; sounddevice is imported lazily by
:mod:`livetalk.audio.devices` only when a device is used.
"""

from __future__ import annotations

from livetalk.audio.clock import Clock, ManualClock, MediaClock
from livetalk.audio.devices import (
    DeviceInfo,
    MicrophoneSource,
    MicrophoneStatistics,
    SpeakerSink,
    SpeakerStatistics,
    list_devices,
)
from livetalk.audio.format import (
    API_RATE,
    CHUNK_MS,
    FRAME_MS,
    PCM,
    RTC_RATE,
    Chunker,
    check_pcm,
    ms_to_samples,
    rms_dbfs,
    samples_to_ms,
    to_float32,
    to_int16_mono,
)
from livetalk.audio.playout import PlayoutBuffer, PlayoutStatistics
from livetalk.audio.resample import Resampler, resample
from livetalk.audio.sinks import (
    AudioSink,
    BufferSink,
    ChunkQueueSink,
    NullSink,
    Sink,
    TeeSink,
    WavSink,
)
from livetalk.audio.sources import (
    ArraySource,
    AudioSource,
    FileSource,
    SilenceSource,
    Source,
    concat,
)

__all__ = [
    "API_RATE",
    "CHUNK_MS",
    "FRAME_MS",
    "PCM",
    "RTC_RATE",
    "ArraySource",
    "AudioSink",
    "AudioSource",
    "BufferSink",
    "ChunkQueueSink",
    "Chunker",
    "Clock",
    "DeviceInfo",
    "FileSource",
    "ManualClock",
    "MediaClock",
    "MicrophoneSource",
    "MicrophoneStatistics",
    "NullSink",
    "PlayoutBuffer",
    "PlayoutStatistics",
    "Resampler",
    "SilenceSource",
    "Sink",
    "Source",
    "SpeakerSink",
    "SpeakerStatistics",
    "TeeSink",
    "WavSink",
    "check_pcm",
    "concat",
    "list_devices",
    "ms_to_samples",
    "rms_dbfs",
    "resample",
    "samples_to_ms",
    "to_float32",
    "to_int16_mono",
]
