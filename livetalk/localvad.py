"""Client-side turn detection: the local-VAD and batch fallback paths.

When server VAD is not wanted (or not available), livetalk detects turns itself with
webrtcvad (:class:`~livetalk.audio.vad.TurnDetector`: a windowed end rule that holds at 10 dB
SNR where a consecutive-silence rule fails, and an energy gate over a noise floor that keeps
webrtcvad's adaptation from starting false turns):

* **local** (``livetalk.connect(vad=LocalVAD())``): the session runs with
  ``turn_detection: null``; :class:`LocalTurnDetection` runs the detector on exactly the audio
  the call sends and says when to commit each turn with ``input_audio_buffer.commit`` (the
  call then asks for a response unless ``respond=False``). Over WebRTC the commit waits for
  :data:`COMMIT_DELAY_MS` more media: the server decodes RTP behind a jitter buffer, and the
  turn's last frames must be in its buffer when the commit (on the data channel) arrives.
* **batch** (:func:`batch_turns`): no realtime session at all; each detected turn is posted
  to ``POST /v1/audio/transcriptions`` and yielded as a user
  :class:`~livetalk.protocol.conversation.Turn`.
"""

from __future__ import annotations

import io
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import httpx
import numpy as np

from livetalk.audio.format import API_RATE, PCM, ms_to_samples
from livetalk.audio.resample import Resampler
from livetalk.audio.sources import Source
from livetalk.audio.vad import SpeechStarted, SpeechStopped, TurnDetector
from livetalk.errors import ConfigError, SignalingError
from livetalk.protocol.conversation import Role, Turn, TurnStatus
from livetalk.protocol.session import DEFAULT_TRANSCRIPTION_MODEL
from livetalk.transport.signaling import (
    _post,
    _status_error,
    resolve_api_key,
    resolve_base_url,
)

__all__ = ["COMMIT_DELAY_MS", "CommitTurn", "LocalTurnDetection", "LocalVAD", "batch_turns",
           "wav_bytes"]

COMMIT_DELAY_MS: Final = 250
"""Media sent after a locally detected turn ends before it is committed (WebRTC only)."""


@dataclass(frozen=True, slots=True)
class LocalVAD:
    """Settings of client-side turn detection.

    Attributes:
        aggressiveness: webrtcvad mode 0-3 (2 or 3 in noise; 0-1 call noise speech).
        prefix_padding_ms: audio kept before the detected onset.
        silence_ms: the hangover window: a turn ends when at most ``end_ratio`` of the
            frames of the last ``silence_ms`` are voiced (600-800 ms measured best).
        ignore_first_ms: no turn may start in this much time from the first non-zero sample
            (speech that began in it keeps its onset). 0: the detector's energy gate already
            keeps webrtcvad's adaptation to the noise from starting false turns.
        end_ratio: voiced share of the hangover window that still counts as silence.
        respond: send ``response.create`` after each commit (local path).
        barge_in: interrupt the assistant when the user starts speaking over it.
    """

    aggressiveness: int = 3
    prefix_padding_ms: int = 300
    silence_ms: int = 700
    ignore_first_ms: int = 0
    end_ratio: float = 0.15
    respond: bool = True
    barge_in: bool = True

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ConfigError(f"LocalVAD.aggressiveness must be 0-3, got {self.aggressiveness}")
        if not 200 <= self.silence_ms <= 5000:
            raise ConfigError(
                f"LocalVAD.silence_ms must be 200-5000 (600-800 recommended), got {self.silence_ms}"
            )
        if not 0 <= self.prefix_padding_ms <= 2000:
            raise ConfigError(
                f"LocalVAD.prefix_padding_ms must be 0-2000, got {self.prefix_padding_ms}"
            )
        if not 0.0 <= self.end_ratio < 0.5:
            raise ConfigError(f"LocalVAD.end_ratio must be in [0, 0.5), got {self.end_ratio}")
        if self.ignore_first_ms < 0:
            raise ConfigError(f"LocalVAD.ignore_first_ms must be >= 0, got {self.ignore_first_ms}")

    def detector(self, rate: int = API_RATE) -> TurnDetector:
        """A fresh detector for a stream at ``rate``."""
        return TurnDetector(
            rate, aggressiveness=self.aggressiveness, prefix_padding_ms=self.prefix_padding_ms,
            silence_duration_ms=self.silence_ms, end_ratio=self.end_ratio,
            ignore_first_ms=self.ignore_first_ms,
        )


@dataclass(frozen=True, slots=True)
class CommitTurn:
    """Commit the turn that spans ``start_ms`` to ``end_ms`` of the sent stream now."""

    start_ms: float
    end_ms: float


class LocalTurnDetection:
    """Client-side turn detection on the audio a call sends (sans I/O).

    Args:
        settings: the detector's settings.
        commit_delay_ms: media to send after a turn ends before committing it
            (:data:`COMMIT_DELAY_MS` over WebRTC, 0 where audio and events share one stream).
    """

    def __init__(self, settings: LocalVAD, *, commit_delay_ms: float = 0) -> None:
        self.settings = settings
        self._detector = settings.detector(API_RATE)
        self._delay = ms_to_samples(commit_delay_ms, API_RATE)
        self._start_ms: float | None = None
        self._waiting: CommitTurn | None = None
        self._countdown = 0

    @property
    def in_turn(self) -> bool:
        """Speech is going on, or a finished turn waits for its commit."""
        return self._start_ms is not None or self._waiting is not None

    def feed(self, pcm: PCM) -> list[SpeechStarted | CommitTurn]:
        """Take the next audio sent (24 kHz); return speech starts and turns to commit."""
        out: list[SpeechStarted | CommitTurn] = []
        if self._waiting is not None:
            self._countdown -= pcm.size
            if self._countdown <= 0:
                out.append(self._waiting)
                self._waiting = None
        for event in self._detector.feed(pcm):
            if isinstance(event, SpeechStarted):
                self._start_ms = float(event.start_ms)
                out.append(event)
            elif isinstance(event, SpeechStopped):
                start = self._start_ms if self._start_ms is not None else float(event.end_ms)
                turn = CommitTurn(start, float(event.end_ms))
                self._start_ms = None
                if self._waiting is not None:  # a turn already waiting: commit it now
                    out.append(self._waiting)
                    self._waiting = None
                if self._delay > 0:
                    self._waiting, self._countdown = turn, self._delay
                else:
                    out.append(turn)
        return out


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """Encode int16 mono PCM as a WAV file in memory."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


async def transcribe(
    client: httpx.AsyncClient, *, base_url: str, api_key: str, pcm: np.ndarray, rate: int,
    model: str, language: str | None = None, prompt: str | None = None,
) -> str:
    """``POST {base_url}/audio/transcriptions`` with one turn's audio; returns the text."""
    url = f"{base_url}/audio/transcriptions"
    data: dict[str, Any] = {"model": model, "response_format": "json"}
    if language:
        data["language"] = language
    if prompt:
        data["prompt"] = prompt
    response = await _post(
        client, url, headers={"Authorization": f"Bearer {api_key}"}, data=data,
        files={"file": ("turn.wav", wav_bytes(pcm, rate), "audio/wav")}, timeout=60.0,
    )
    if response.status_code != 200:
        raise _status_error(response)
    try:
        return str(response.json()["text"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SignalingError(f"{url} returned an unexpected body") from exc


async def batch_turns(
    source: Source,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str = DEFAULT_TRANSCRIPTION_MODEL,
    language: str | None = None,
    prompt: str | None = None,
    vad: LocalVAD | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> AsyncIterator[Turn]:
    """Detect turns in an audio source locally and transcribe each with the batch endpoint.

    Args:
        source: the audio (a :class:`~livetalk.audio.sources.Source`: ``FileSource``,
            ``ArraySource``, ``MicrophoneSource``...), read to its end.
        base_url, api_key: as for :func:`livetalk.connect`.
        model: the transcription model.
        language: ISO-639-1 hint.
        prompt: text the speech is likely to resemble (names, vocabulary).
        vad: detection settings.
        http_client: an httpx client to reuse.

    Yields:
        One completed user :class:`Turn` per detected utterance (``audio`` attached), in
        order, as soon as its transcription returns.
    """
    url = resolve_base_url(base_url)
    key = resolve_api_key(api_key)
    settings = vad or LocalVAD()
    detector = settings.detector(API_RATE)
    resampler = Resampler(int(source.rate), API_RATE)
    owned = http_client is None
    client = http_client or httpx.AsyncClient()
    count = 0

    async def finish(stop: SpeechStopped) -> Turn:
        nonlocal count
        count += 1
        started = time.monotonic()
        text = await transcribe(client, base_url=url, api_key=key, pcm=stop.audio, rate=API_RATE,
                                model=model, language=language, prompt=prompt)
        return Turn(role=Role.USER, item_id=f"batch_{count}", text=text,
                    status=TurnStatus.COMPLETED, started_at=started,
                    completed_at=time.monotonic(), audio_ms=stop.audio.size * 1000 / API_RATE,
                    audio=stop.audio)

    try:
        async for chunk in source:
            for event in detector.feed(resampler.process(chunk)):
                if isinstance(event, SpeechStopped):
                    yield await finish(event)
        ending: list[object] = [*detector.feed(resampler.flush()), detector.force_end()]
        for end in ending:
            if isinstance(end, SpeechStopped):
                yield await finish(end)
    finally:
        if owned:
            await client.aclose()
