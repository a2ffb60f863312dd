"""``livetalk script`` options that run nothing: --dry-run, and --ray's checks."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from livetalk.cli import build_parser, script as script_command
from livetalk.cli._runtime import Runtime
from livetalk.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["script", *argv])


async def run_script(args: argparse.Namespace) -> int:
    return await script_command.main(args, Runtime())


async def test_dry_run_prints_scenarios_minutes_dollars_and_plan(tmp_path, capsys) -> None:
    for i in range(3):
        (tmp_path / f"s{i}.json").write_text(json.dumps(
            {"name": f"case-{i}", "turns": [{"say": "please book a table for two"}]}))
    args = _args(str(tmp_path), "--dry-run", "--ray", "--concurrency", "2", "--speed", "4",
                 "--local", "--max-calls", "3", "--calls-per-minute", "30")
    assert await run_script(args) == 0
    out = capsys.readouterr().out
    assert all(f"case-{i}" in out for i in range(3))
    assert "3 scenarios" in out and "audio minutes" in out and "estimated $" in out
    assert "plan: 2 Ray tasks on a new local Ray instance, up to 2 calls each" in out
    assert "3 calls at once and 30 calls per minute across the run" in out


async def test_ray_and_processes_exclude_each_other(tmp_path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"turns": [{"say": "hi"}]}))
    with pytest.raises(ConfigError, match="exclude each other"):  # the CLI: one line, 2
        await run_script(_args(str(tmp_path), "--ray", "--processes", "2"))
    with pytest.raises(ConfigError, match="use --ray"):
        await run_script(_args(str(tmp_path), "--max-calls", "2", "--processes", "2"))


def test_ray_without_the_extra_is_one_line_and_status_2(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"turns": [{"say": "hi"}]}))
    code = ("import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
            "from livetalk.cli import main\n"
            f"sys.exit(main(['script', {str(tmp_path)!r}, '--ray', '--no-progress']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "livetalk: error: --ray needs the 'ray' extra (ray not installed): "
        "pip install 'livetalk[ray]'"]
    assert proc.stdout == ""
