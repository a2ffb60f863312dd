"""PocketSphinxTranscriber on eSpeak speech, CallableTranscriber and the phrase-list helpers."""

from __future__ import annotations

import signal
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livetalk.audio.resample import resample
from livetalk.audio.vad import SpeechStopped, TurnDetector
from livetalk.errors import AudioFormatError, ConfigError
from livetalk.server.asr import (
    CallableTranscriber,
    PocketSphinxTranscriber,
    Transcriber,
    TranscriptionError,
    load_phrases,
    make_transcriber,
    normalize_phrase,
)
from tests.speech_helpers import DEMO_PHRASES, shared_synthesizer

DATA = Path(__file__).resolve().parents[2] / "livetalk" / "data"


@pytest.fixture(scope="module")
def demo_transcriber() -> PocketSphinxTranscriber:
    return PocketSphinxTranscriber(load_phrases(DATA / "demo_phrases.txt"))


@pytest.mark.parametrize("phrase", DEMO_PHRASES)
def test_recognises_demo_phrases_at_several_rates(
    demo_transcriber: PocketSphinxTranscriber, phrase: str
) -> None:
    native, rate = shared_synthesizer().synthesize(phrase)
    assert demo_transcriber.transcribe(native, rate) == phrase
    at_16k = resample(native, rate, 16000)
    assert demo_transcriber.transcribe(at_16k, 16000) == phrase
    assert demo_transcriber.transcribe(resample(at_16k, 16000, 24000), 24000) == phrase


def test_demo_recording_through_vad_and_asr(demo_transcriber: PocketSphinxTranscriber) -> None:
    with wave.open(str(DATA / "demo.wav"), "rb") as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.int16)
    at_24k = resample(pcm, 16000, 24000)
    turns = [e for e in TurnDetector(24000).feed(at_24k) if isinstance(e, SpeechStopped)]
    assert [demo_transcriber.transcribe(t.audio, 24000) for t in turns] == list(DEMO_PHRASES)


def test_phrases_are_normalised_and_punctuation_ignored() -> None:
    phrases = ["Hello, can you hear me?", "What's up!", "HELLO can you hear me"]
    transcriber = PocketSphinxTranscriber(phrases)
    assert isinstance(transcriber, Transcriber)
    assert transcriber.phrases == ["hello can you hear me", "what's up"]
    native, rate = shared_synthesizer().synthesize("What's up?")
    assert transcriber.transcribe(native, rate) == "what's up"


def test_silence_transcribes_to_nothing(demo_transcriber: PocketSphinxTranscriber) -> None:
    assert demo_transcriber.transcribe(np.zeros(16000, dtype=np.int16), 16000) == ""
    assert demo_transcriber.transcribe(np.zeros(0, dtype=np.int16), 24000) == ""


def test_open_vocabulary_hears_something() -> None:
    native, rate = shared_synthesizer().synthesize("how are you")
    text = PocketSphinxTranscriber().transcribe(native, rate)
    assert text and text == text.lower()


def test_bad_phrase_lists_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="zorblaxian"):
        PocketSphinxTranscriber(["hello zorblaxian"])
    with pytest.raises(ConfigError):
        PocketSphinxTranscriber(["?!", ""])
    with pytest.raises(ConfigError):
        PocketSphinxTranscriber("hello there")


def test_transcribe_checks_its_input(demo_transcriber: PocketSphinxTranscriber) -> None:
    with pytest.raises(AudioFormatError):
        demo_transcriber.transcribe(np.zeros(160, dtype=np.float32), 16000)  # type: ignore[arg-type]
    with pytest.raises(AudioFormatError):
        demo_transcriber.transcribe(np.zeros(160, dtype=np.int16), 0)


def test_normalize_phrase() -> None:
    assert normalize_phrase("  What's the TIME, please?! ") == "what's the time please"
    assert normalize_phrase("'quoted' words") == "quoted words"
    assert normalize_phrase("...") == ""


def test_load_phrases_skips_comments_and_blanks(tmp_path: Path) -> None:
    path = tmp_path / "phrases.txt"
    path.write_text("# a comment\nhello there\n\n  good morning  # trailing comment\n")
    assert load_phrases(path) == ["hello there", "good morning"]
    with pytest.raises(ConfigError):
        load_phrases(tmp_path / "missing.txt")


def test_callable_transcriber_passes_audio_and_rate() -> None:
    seen: list[tuple[Any, int]] = []

    def fn(pcm: np.ndarray, rate: int) -> str:
        seen.append((pcm, rate))
        return "from the host"

    pcm = np.ones(10, dtype=np.int16)
    transcriber = CallableTranscriber(fn)
    assert isinstance(transcriber, Transcriber)
    assert transcriber.transcribe(pcm, 24000) == "from the host"
    assert seen[0][0] is pcm and seen[0][1] == 24000


def test_callable_transcriber_failures() -> None:
    def boom(pcm: np.ndarray, rate: int) -> str:
        raise RuntimeError("model unavailable")

    with pytest.raises(TranscriptionError, match="model unavailable") as info:
        CallableTranscriber(boom).transcribe(np.zeros(1, dtype=np.int16), 16000)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(TranscriptionError, match="int"):
        CallableTranscriber(lambda pcm, rate: 42).transcribe(  # type: ignore[arg-type, return-value]
            np.zeros(1, dtype=np.int16), 16000
        )
    with pytest.raises(ConfigError):
        CallableTranscriber("not callable")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- choosing the ears
# Without the asr extra: a child interpreter in which faster_whisper cannot be imported
# (a None entry in sys.modules makes every import of it raise ImportError).
_NO_EXTRA = "import sys; sys.modules['faster_whisper'] = None\n"
_EXTRA_HINT = "pip install 'livetalk[asr]'"
_MESSAGE = ("open-vocabulary recognition (Whisper) needs the 'asr' extra (faster_whisper not "
            f"installed): {_EXTRA_HINT}")


def _without_extra(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _NO_EXTRA + code, *args], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])


def test_auto_picks_whisper_when_the_extra_is_installed() -> None:
    from livetalk.server.whisper import WhisperTranscriber

    assert isinstance(make_transcriber("auto", phrases=["hello there"]), WhisperTranscriber)
    assert isinstance(make_transcriber("pocketsphinx"), PocketSphinxTranscriber)
    with pytest.raises(ConfigError, match="asr must be one of"):
        make_transcriber("vosk")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="recogniser is pocketsphinx"):
        make_transcriber("pocketsphinx", whisper_model="/models/small.en")


@pytest.mark.slow
def test_without_the_extra_auto_falls_back_to_pocketsphinx_and_says_so_once() -> None:
    done = _without_extra(
        "from livetalk.server.asr import make_transcriber\n"
        "print(type(make_transcriber('auto')).__name__)\n"
        "print(type(make_transcriber('auto', phrases=['hello there'])).__name__)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["PocketSphinxTranscriber"] * 2
    assert done.stderr.count(_EXTRA_HINT) == 1  # said once per process, on the log
    assert "recognising with pocketsphinx" in done.stderr


@pytest.mark.slow
def test_without_the_extra_asking_for_whisper_is_a_one_line_error() -> None:
    done = _without_extra(
        "from livetalk.errors import MissingExtraError\n"
        "from livetalk.server.asr import make_transcriber\n"
        "try:\n    make_transcriber('whisper')\n"
        "except MissingExtraError as exc:\n    print(exc)\n")
    assert done.stdout.strip() == _MESSAGE
    cli = _without_extra("from livetalk.cli import main; raise SystemExit(main(sys.argv[1:]))",
                         "serve", "--port", "0", "--asr", "whisper")
    assert cli.returncode == 2
    assert cli.stderr.strip().splitlines() == [
        f"livetalk: error: {_MESSAGE}"]


@pytest.mark.slow
def test_livetalk_serve_without_the_extra_serves_with_pocketsphinx() -> None:
    code = "from livetalk.cli import main; raise SystemExit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", _NO_EXTRA + code, "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert err.count(_EXTRA_HINT) == 1
    assert "recognising with pocketsphinx" in err
