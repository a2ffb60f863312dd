"""The benchmark harness's building blocks at minimal size: real calls, sane numbers.

No timing thresholds: only that each measurement runs and yields positive, finite figures
(the shared test machines are too noisy for anything else).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench import stages
from bench.echo_peer import EchoPeer, encode_tone
from bench.report import Row, machine, render_markdown, render_table, write_json
from bench.signals import (
    MeasurementError,
    Recording,
    chirp,
    chirp_latency,
    find_chirp,
    lateness_ms,
    percentile,
)

pytestmark = pytest.mark.slow


def _sane(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_chirp_is_found_where_it_was_placed() -> None:
    reference = chirp(24000)
    noise = np.random.default_rng(1).normal(0, 300, 24000).astype(np.int16)
    noise[7000:7000 + reference.size] += reference
    assert find_chirp(noise, reference) == 7000
    with pytest.raises(MeasurementError):
        find_chirp(np.random.default_rng(2).normal(0, 300, 24000).astype(np.int16), reference)


def test_recording_times_samples_by_their_chunk() -> None:
    rec = Recording(1000)
    rec.mark()
    rec.add(np.zeros(20, dtype=np.int16), at=10.0)
    rec.add(np.ones(20, dtype=np.int16), at=10.5)
    assert rec.delivery_time(25) == pytest.approx(10.505)
    assert rec.pcm().size == 40


def test_chirp_latency_counts_from_send_to_delivery_of_its_first_sample() -> None:
    rec = Recording(24000)
    rec.mark()
    rec.add(np.zeros(4800, dtype=np.int16), at=1.0)
    late_chunk = np.zeros(7200, dtype=np.int16)
    late_chunk[480:480 + 2400] = chirp(24000)
    rec.add(late_chunk, at=1.2)
    assert chirp_latency(rec, chirp(24000), sent_at=1.1) == pytest.approx(120.0)


def test_lateness_is_measured_from_the_least_late_frame() -> None:
    late = lateness_ms([(0, 1.000), (1, 1.020), (2, 1.070), (3, 1.061)])
    assert late.tolist() == pytest.approx([0.0, 0.0, 30.0, 1.0])
    assert percentile(late, 50) == pytest.approx(0.5)


async def test_connect_once_each(server) -> None:
    for took in (await stages.connect_livetalk(server.base_url),
                 await stages.connect_raw(server.base_url)):
        assert _sane(took)


async def test_chirp_latency_once_each() -> None:
    async with EchoPeer(mode="echo") as peer:
        samples = [
            *await stages.latency_livetalk(peer, low_latency=True, repeats=1),
            *await stages.latency_raw(peer, repeats=1),
        ]
    for sample in samples:
        assert _sane(sample.down_ms) and _sane(sample.up_ms) and _sane(sample.echo_ms)
        assert sample.echo_ms == pytest.approx(sample.up_ms + sample.down_ms)


async def test_reply_delay_once_over_webrtc(make_server, synthesizer) -> None:
    audio, end_ms = stages.speech_sample(synthesizer, "hello can you hear me", tail_s=2.0)
    async with make_server(port=0) as srv:
        assert _sane(await stages.reply_delay_webrtc(srv.base_url, audio, end_ms))


def test_tone_packets_are_opus_frames() -> None:
    packets = encode_tone(0.2)
    assert 8 <= len(packets) <= 10 and all(packets)


def test_report_renders_every_row(tmp_path: Path) -> None:
    rows = [Row("one way down", "<= 50 ms", "24.0 ms", "88.0 ms", 0.27, True),
            Row("calls per core", ">= 10", "5", "10", 0.5, False, "frames got late")]
    table = render_table(rows)
    assert "met" in table and "MISSED: frames got late" in table
    info = machine()
    write_json(tmp_path / "r.json", info, rows, {})
    assert (tmp_path / "r.json").read_text().count('"stage"') == 2
    page = render_markdown(info, rows, {"profile": {"seconds": 1, "cpu_s": 0.1, "top": []}},
                           quick=True)
    assert "| one way down | <= 50 ms | 24.0 ms | 88.0 ms | 0.27 | met |" in page
    assert info["cpu"] in page
    # the page's docs test must not run `make bench` itself: the block carries its skip
    skip = "<!-- docs-test: skip long: the full run takes about ten minutes -->"
    assert f"{skip}\n```sh\nmake bench" in page


def test_scenario_scale_bench_batches_and_renders() -> None:
    from bench.scenarios_scale import PHRASES, batch, render

    scenarios = batch(7)
    assert [s.name for s in scenarios] == [f"s{i:03d}" for i in range(7)]
    assert scenarios[6].turns[0].say == PHRASES[1]
    entry = {"mode": "ray (2 workers x 2)", "per_minute": 60.0, "passed": 7, "scenarios": 7,
             "extra_s_per_scenario": 0.25}
    cpu = {"cpu_per_call": 0.1, "max_rss_mb": 200}
    page = render({"rounds": [[entry]], "ray": {"join_s": 2.5, "noop_task_ms_median": 3.0},
                   "cpu_per_call": [{"speed": 4.0, "client": cpu, "client_and_server": cpu}]})
    assert "| ray (2 workers x 2) | 60.0 | 7/7 | +0.25 |" in page
    assert "joining the cluster 2.5 s" in page and "| 4 | 0.1 | 0.1 | 200 MB |" in page


def test_recogniser_comparison_building_blocks() -> None:
    from bench.asr import Condition, lay_out, offline, wer
    from livetalk.server.asr import PocketSphinxTranscriber
    from tests.speech_helpers import shared_synthesizer

    sentences = ["what time is it", "thank you goodbye"]
    noisy = Condition("en-us", 165, 10.0, sentences)
    lay_out(noisy, seed=1)
    assert noisy.pcm.size > 24000 * 3 and noisy.label == "en-us 165 wpm, 10 dB SNR"
    clean = Condition("en-us", 175, None, sentences)
    for sentence in sentences:  # as if committed by a call: each turn alone, at 24 kHz
        from livetalk.audio.resample import resample

        pcm, rate = shared_synthesizer().synthesize(sentence)
        clean.committed.append(resample(pcm, rate, 24000))
    result = offline(PocketSphinxTranscriber(sentences), [clean])
    assert result["wer_clean"] == 0.0 and result["transcripts"][clean.label] == sentences
    assert _sane(result["cpu_s_per_audio_s"])
    assert wer(["a b c d"], ["a x c"]) == 0.5


def test_delivery_log_counts_what_a_real_time_speaker_would_miss() -> None:
    from bench.jitter import DeliveryLog

    log = DeliveryLog(1000)
    log.enabled = True
    frame = np.zeros(20, dtype=np.int16)  # 20 ms at 1 kHz
    log.entries = [(0.000, 0.02), (0.020, 0.02), (0.040, 0.02)]  # steady: the prebuffer holds
    assert log.underrun_s() == pytest.approx(0.0)
    log.entries.append((0.110, 0.02))  # 30 ms after the speaker ran dry at 0.080
    assert log.underrun_s() == pytest.approx(0.030)
    log.entries = []
    log.add(frame)
    assert log.entries[0][1] == pytest.approx(0.02)


async def test_jitter_stage_measures_both_receivers_through_an_impaired_path() -> None:
    from bench.jitter import measure

    async with EchoPeer(mode="echo") as peer:
        lt = await measure(peer, "livetalk", 20, 0.05, chirps=2, seed=1)
        raw = await measure(peer, "raw", 20, 0.05, chirps=2, seed=1)
    assert _sane(lt.down_ms) and _sane(raw.down_ms)
    assert lt.missing_ms_per_min == 0 and lt.concealed_ms_per_min >= 0
    assert raw.concealed_ms_per_min == 0 and raw.missing_ms_per_min >= 0
    assert lt.glitch_ms_per_min >= lt.concealed_ms_per_min


def test_routing_bench_section_renders_both_runs_and_the_ratio() -> None:
    from bench.routing import docs_section

    def run(routed: bool, median: float) -> dict[str, object]:
        return {"routed": routed, "turns": 4, "speed": 2.0, "barge_ins_planned": 1,
                "user_turns": 4, "answers": 4, "completed": 3, "cancelled": 1, "lost": 0,
                "turn_log_once_in_order": True,
                "overhead_ms": {"median": median, "p90": median + 50, "n": 4},
                "after_transcript_ms": {"median": 20.0, "p90": 30.0, "n": 4}}

    page = docs_section({"baseline": run(False, 300.0), "routed": run(True, 330.0),
                         "overhead_ratio": 1.1, "machine": {"date": "d", "cpu": "c",
                                                            "load_avg": [1, 2, 3]}})
    row = "| 4 | 4 | 3 | 1 | 0 | yes |"
    assert f"| baseline: the model answers {row} 300.0 | 350.0 | 20.0 |" in page
    assert f"| routed to the host agent {row} 330.0 | 380.0 | 20.0 |" in page
    assert "**1.1x**" in page


async def test_outbound_path_bench_measures_both_paths() -> None:
    from bench import outbound_path

    result = await outbound_path.measure(seconds=0.5, runs=1)
    assert [r["case"] for r in result["rows"]] == [
        "48 kHz file, sent whole", "24 kHz PCM (send_audio)", "idle call (silence frames)"]
    for row in result["rows"]:
        assert _sane(row["old_ms_per_s"]) and _sane(row["new_ms_per_s"]) and _sane(row["ratio"])
    assert "| 48 kHz file, sent whole |" in outbound_path.docs_section(result)
