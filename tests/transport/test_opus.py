"""libopus through ctypes: decoding, packet-loss concealment and in-band FEC, measured."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from livetalk.errors import ConfigError
from livetalk.transport.opus import (
    OpusDecoder,
    OpusError,
    load_libopus,
    opus_decoder_available,
    packet_samples,
)

pytestmark = pytest.mark.skipif(not opus_decoder_available(), reason="no libopus found")

RATE = 48000
FRAME = 960


def _voiced(seconds: float) -> np.ndarray:
    """A voiced-speech-like signal: a 140 Hz pulse train through a few formants, with a
    slowly moving pitch (what libopus codes in SILK mode at low bitrates)."""
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    signal = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t)
    return np.rint(4000 * envelope * signal / 3).astype(np.int16)


def _encode(pcm: np.ndarray, *, bitrate: int, fec: bool = False) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = bitrate
    codec.sample_rate = RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.time_base = fractions.Fraction(1, RATE)
    codec.options = ({"application": "voip", "fec": "1", "packet_loss": "10"} if fec
                     else {"application": "voip"})
    packets: list[bytes] = []
    for k in range(pcm.size // FRAME):
        frame = av.AudioFrame.from_ndarray(pcm[k * FRAME:(k + 1) * FRAME].reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = k * FRAME
        packets += [bytes(p) for p in codec.encode(frame)]
    return packets


def _snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    ref, out = reference.astype(np.float64), test.astype(np.float64)
    return float(10 * np.log10(np.sum(ref * ref) / max(np.sum((ref - out) ** 2), 1.0)))


def test_decodes_like_pyavs_decoder() -> None:
    packets = _encode(_voiced(1.0), bitrate=64000)
    decoder = OpusDecoder(RATE)
    ours = np.concatenate([decoder.decode(p) for p in packets])
    pyav = av.CodecContext.create("libopus", "r")
    pyav.format, pyav.layout, pyav.sample_rate = "s16", "mono", RATE
    theirs = np.concatenate([f.to_ndarray()[0] for p in packets
                             for f in pyav.decode(av.Packet(p))])
    assert ours.size == theirs.size == 50 * FRAME
    assert np.max(np.abs(ours.astype(np.int32) - theirs)) <= 1  # the same libopus


def test_decodes_at_the_applications_rate() -> None:
    packets = _encode(_voiced(0.2), bitrate=64000)
    assert OpusDecoder(24000).decode(packets[0]).size == 480
    assert packet_samples(packets[0]) == 960
    assert packet_samples(packets[0], 24000) == 480
    assert packet_samples(b"") is None


def test_concealment_continues_the_sound_instead_of_a_hole() -> None:
    """One frame in ten lost: PLC keeps the level and beats silence and fade-and-repeat."""
    pcm = _voiced(2.0)
    packets = _encode(pcm, bitrate=64000)
    reference = OpusDecoder(RATE)
    clean = [reference.decode(p) for p in packets]
    lost = set(range(5, len(packets), 10))
    decoder = OpusDecoder(RATE)
    out = [decoder.conceal(FRAME) if i in lost else decoder.decode(p)
           for i, p in enumerate(packets)]
    concealed = np.concatenate([out[i] for i in sorted(lost)])
    truth = np.concatenate([clean[i] for i in sorted(lost)])
    level = np.sqrt(np.mean(concealed.astype(np.float64) ** 2) /
                    np.mean(truth.astype(np.float64) ** 2))
    assert 0.5 < level < 1.5  # a silent hole would be 0
    # spectrally close to what was lost: correlation of magnitude spectra
    spectra = [np.abs(np.fft.rfft(x.astype(np.float64).reshape(-1, FRAME), axis=1)).ravel()
               for x in (concealed, truth)]
    assert np.corrcoef(*spectra)[0, 1] > 0.8
    # the frames after a loss sound like the clean decode (the codec's state converges: the
    # waveform differs, the spectrum does not)
    after = np.concatenate([out[i + 1] for i in sorted(lost)])
    after_truth = np.concatenate([clean[i + 1] for i in sorted(lost)])
    spectra = [np.abs(np.fft.rfft(x.astype(np.float64).reshape(-1, FRAME), axis=1)).ravel()
               for x in (after, after_truth)]
    assert np.corrcoef(*spectra)[0, 1] > 0.9


def test_in_band_fec_rebuilds_a_lost_frame_better_than_concealment() -> None:
    pcm = _voiced(2.0)
    packets = _encode(pcm, bitrate=24000, fec=True)  # SILK mode carries the FEC
    reference = OpusDecoder(RATE)
    clean = [reference.decode(p) for p in packets]
    lost = list(range(5, len(packets) - 1, 10))
    results = {}
    for mode in ("plc", "fec"):
        decoder = OpusDecoder(RATE)
        frames = []
        for i, p in enumerate(packets):
            if i in lost:
                frames.append(decoder.recover(packets[i + 1], FRAME) if mode == "fec"
                              else decoder.conceal(FRAME))
            else:
                frames.append(decoder.decode(p))
        results[mode] = _snr_db(np.concatenate([clean[i] for i in lost]),
                                np.concatenate([frames[i] for i in lost]))
    # measured: 9.0 dB against 5.5 dB of waveform SNR over the lost frames
    assert results["fec"] > results["plc"] + 2, results


def test_recover_without_fec_in_the_packet_conceals() -> None:
    packets = _encode(_voiced(0.5), bitrate=64000)  # CELT: no FEC data
    decoder = OpusDecoder(RATE)
    decoder.decode(packets[0])
    assert decoder.recover(packets[2], FRAME).size == FRAME


def test_errors() -> None:
    with pytest.raises(ConfigError):
        OpusDecoder(44100)
    with pytest.raises(ConfigError):
        OpusDecoder(48000, channels=3)
    decoder = OpusDecoder(RATE)
    with pytest.raises(OpusError, match="conceal"):
        decoder.decode(b"")
    with pytest.raises(OpusError, match="opus_decode"):
        decoder.decode(b"\xff\xff\xff")  # code 3, an invalid frame count
    decoder.close()
    decoder.close()
    with pytest.raises(OpusError, match="closed"):
        decoder.conceal(FRAME)


def test_library_and_version() -> None:
    assert load_libopus() is not None
    assert OpusDecoder().version.startswith("libopus")
    assert "48000" in repr(OpusDecoder())
