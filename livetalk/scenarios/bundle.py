"""A scenario packed with the bytes of its audio files, to run where its files are not.

On a cluster the machine that runs a scenario is rarely the one that holds its files.
:meth:`ScenarioBundle.pack` reads every ``audio:`` file of a validated scenario into the
bundle (a picklable value); :meth:`ScenarioBundle.unpacked` writes them to a private temporary
folder on the worker and yields the same scenario pointing at those copies, removing them
afterwards. ``say:`` turns need no file (they are synthesised where they run), so a scenario
without recordings packs to a few hundred bytes.

The scenario keeps its original ``path`` (the report names the file on the driver) and each
recording keeps its file name (turn labels read ``audio: name.wav``).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from livetalk.scenarios.schema import Scenario, ScenarioError, TurnKind

__all__ = ["ScenarioBundle"]


@dataclass(frozen=True, slots=True)
class ScenarioBundle:
    """A validated scenario and the content of its recordings.

    Attributes:
        scenario: the scenario as loaded on the driver.
        audio: ``(turn index, file name, file bytes)`` for every ``audio`` turn.
    """

    scenario: Scenario
    audio: tuple[tuple[int, str, bytes], ...] = ()

    @classmethod
    def pack(cls, scenario: Scenario) -> ScenarioBundle:
        """Read the scenario's recordings into a bundle.

        Raises:
            ScenarioError: a recording cannot be read (the message names the file and turn).
        """
        audio: list[tuple[int, str, bytes]] = []
        for turn in scenario.turns:
            if turn.kind is not TurnKind.AUDIO or turn.audio is None:
                continue
            try:
                audio.append((turn.index, turn.audio.name, turn.audio.read_bytes()))
            except OSError as exc:
                raise ScenarioError(f"cannot read the recording {str(turn.audio)!r}: "
                                    f"{exc.strerror or exc}", path=scenario.path,
                                    turn=turn.index, field="audio") from None
        return cls(scenario, tuple(audio))

    @property
    def nbytes(self) -> int:
        """Bytes of recordings carried."""
        return sum(len(data) for _, _, data in self.audio)

    @contextmanager
    def unpacked(self) -> Iterator[Scenario]:
        """Write the recordings to a temporary folder; yield the scenario reading them there.

        The folder is removed when the block ends, whatever happens inside it.
        """
        if not self.audio:
            yield self.scenario
            return
        folder = Path(tempfile.mkdtemp(prefix="livetalk-scenario-"))
        try:
            files: dict[int, Path] = {}
            for index, name, data in self.audio:
                target = folder / str(index) / Path(name).name
                target.parent.mkdir()
                target.write_bytes(data)
                files[index] = target
            turns = tuple(dataclasses.replace(t, audio=files[t.index]) if t.index in files
                          else t for t in self.scenario.turns)
            yield dataclasses.replace(self.scenario, turns=turns)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
