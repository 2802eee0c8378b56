"""The README's two set-up commands are the ones CI runs, word for word."""

import re

from tests.conftest import REPO


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick, flags=re.S)


def test_ci_runs_the_readme_commands():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    ci = (REPO / ".ci" / "run").read_text()
    for cmd in commands:
        assert f"( {cmd} )" in ci, cmd
    assert "pip install torch==2.13.0" in commands[0]
