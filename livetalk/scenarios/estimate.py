"""What a batch will cost before it runs: audio minutes, tokens and dollars (``--dry-run``).

Nothing is sent. The estimate reads each scenario's turns:

- ``say`` turns last their word count at :data:`ASSUMED_SPEECH_WPM` (the bundled voice's
  default rate); ``audio`` turns last their file's duration (read from its header);
  ``pause_ms`` turns last their pause;
- every spoken turn gets a reply of :data:`ASSUMED_REPLY_S` seconds (set your own with
  ``reply_s``: replies are what you cannot know in advance);
- tokens follow the Realtime API's audio rates (:data:`AUDIO_INPUT_TOKENS_PER_S` for what the
  user says, :data:`AUDIO_OUTPUT_TOKENS_PER_S` for what the model says) and the conversation
  grows: each reply reads the whole conversation so far as input, the part it already read
  before at the cached price, the new part (the new user turn and the previous reply) at the
  full price; the instructions are text input, cached after the first reply;
- dollars use the same price table as the report (:mod:`livetalk.scenarios.pricing`).

Input transcription (billed by the transcription model) is not included, as in the report.
Treat the figure as an order of magnitude and compare it with the report of a small run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from livetalk.protocol.events import Usage
from livetalk.protocol.session import DEFAULT_MODEL
from livetalk.scenarios.pricing import DEFAULT_PRICES, PriceTable, estimate_cost
from livetalk.scenarios.schema import Scenario, ScenarioTurn, TurnKind

__all__ = [
    "ASSUMED_REPLY_S",
    "ASSUMED_SPEECH_WPM",
    "AUDIO_INPUT_TOKENS_PER_S",
    "AUDIO_OUTPUT_TOKENS_PER_S",
    "BatchEstimate",
    "ScenarioEstimate",
    "estimate_batch",
    "estimate_scenario",
]

ASSUMED_SPEECH_WPM: Final = 175
"""Speaking rate of ``say`` turns in words per minute (the bundled eSpeak NG voice's default)."""
ASSUMED_REPLY_S: Final = 4.0
"""Seconds of spoken reply assumed for every spoken turn."""
AUDIO_INPUT_TOKENS_PER_S: Final = 10
"""Audio tokens per second of user audio (one per 100 ms)."""
AUDIO_OUTPUT_TOKENS_PER_S: Final = 20
"""Audio tokens per second of model audio (one per 50 ms)."""
TEXT_TOKENS_PER_REPLY_S: Final = 4
"""Text tokens of a reply's transcript per second of speech (about 2.5 words a second)."""
_CHARS_PER_TOKEN: Final = 4



@dataclass(frozen=True, slots=True)
class ScenarioEstimate:
    """The estimate of one scenario.

    Attributes:
        name: the scenario's name.
        spoken_turns: turns that get a reply.
        user_audio_s: seconds of audio sent (speech and pauses, without the 0.8 s lead-in).
        reply_audio_s: seconds of reply assumed.
        usage: the estimated tokens.
        model: the model priced.
        cost_usd: the estimated cost (None without a price for the model).
    """

    name: str
    spoken_turns: int
    user_audio_s: float
    reply_audio_s: float
    usage: Usage
    model: str
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class BatchEstimate:
    """The estimate of a batch: its scenarios and their sums.

    Attributes:
        scenarios: one :class:`ScenarioEstimate` per scenario, in order.
        reply_s: the reply length assumed per spoken turn.
    """

    scenarios: tuple[ScenarioEstimate, ...]
    reply_s: float

    @property
    def audio_minutes(self) -> float:
        """Minutes of audio both ways (what is sent plus the replies assumed)."""
        return sum(s.user_audio_s + s.reply_audio_s for s in self.scenarios) / 60

    @property
    def cost_usd(self) -> float | None:
        """The summed cost; None when some model has no price."""
        costs = [s.cost_usd for s in self.scenarios]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    def lines(self) -> list[str]:
        """A table for the terminal: one line per scenario and a total."""
        out = [f"{'scenario':<32} {'turns':>5} {'sent s':>7} {'reply s':>7} {'est. USD':>9}"]
        for s in self.scenarios:
            cost = "?" if s.cost_usd is None else f"{s.cost_usd:.4f}"
            out.append(f"{s.name[:32]:<32} {s.spoken_turns:>5} {s.user_audio_s:>7.1f} "
                       f"{s.reply_audio_s:>7.1f} {cost:>9}")
        total = self.cost_usd
        if total is None:
            money = "unknown (a model without a price)"
        else:
            money = f"${total:.2f}" if total >= 1 else f"${total:.4f}"
        out.append(f"{len(self.scenarios)} scenarios, {self.audio_minutes:.1f} audio minutes "
                   f"(replies assumed {self.reply_s:g} s each), estimated {money}; "
                   "transcription not included")
        return out


def _duration_s(turn: ScenarioTurn) -> float:
    if turn.kind is TurnKind.PAUSE:
        return turn.pause_ms / 1000
    if turn.kind is TurnKind.SAY:
        return len((turn.say or "").split()) * 60 / ASSUMED_SPEECH_WPM
    return _file_duration_s(turn)


def _file_duration_s(turn: ScenarioTurn) -> float:
    import av

    assert turn.audio is not None
    with av.open(str(turn.audio)) as container:
        if container.duration is not None:
            return float(container.duration) / 1_000_000
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
    return 0.0


def estimate_scenario(scenario: Scenario, *, reply_s: float = ASSUMED_REPLY_S,
                      prices: PriceTable = DEFAULT_PRICES) -> ScenarioEstimate:
    """Estimate one scenario (see the module docstring for the model).

    Raises:
        av.error.FFmpegError: an ``audio`` file cannot be probed.
    """
    model = scenario.session.model or DEFAULT_MODEL
    instructions = round(len(scenario.session.instructions or "") / _CHARS_PER_TOKEN)
    usage = Usage()
    history = 0  # audio tokens already read by an earlier reply
    previous_reply = 0
    sent = reply_total = 0.0
    spoken = 0
    for turn in scenario.turns:
        seconds = _duration_s(turn)
        sent += seconds
        if not turn.spoken:
            continue
        spoken += 1
        reply_total += reply_s
        new = round(seconds * AUDIO_INPUT_TOKENS_PER_S) + previous_reply
        out_audio = round(reply_s * AUDIO_OUTPUT_TOKENS_PER_S)
        out_text = round(reply_s * TEXT_TOKENS_PER_REPLY_S)
        cached_text = instructions if spoken > 1 else 0
        usage = usage + Usage(
            input_tokens=history + new + instructions, output_tokens=out_audio + out_text,
            total_tokens=history + new + instructions + out_audio + out_text,
            input_text_tokens=instructions, input_audio_tokens=history + new,
            cached_tokens=history + cached_text, cached_text_tokens=cached_text,
            cached_audio_tokens=history, output_text_tokens=out_text,
            output_audio_tokens=out_audio)
        history += new
        previous_reply = out_audio
    return ScenarioEstimate(name=scenario.name, spoken_turns=spoken, user_audio_s=sent,
                            reply_audio_s=reply_total, usage=usage, model=model,
                            cost_usd=estimate_cost(usage, model, prices))


def estimate_batch(scenarios: Sequence[Scenario], *, reply_s: float = ASSUMED_REPLY_S,
                   prices: PriceTable = DEFAULT_PRICES) -> BatchEstimate:
    """Estimate every scenario of a batch (see :class:`BatchEstimate`)."""
    return BatchEstimate(tuple(estimate_scenario(s, reply_s=reply_s, prices=prices)
                               for s in scenarios), reply_s)
