"""Errors at the CLI boundary: one line, printed as written."""

from __future__ import annotations

from typer.testing import CliRunner

from codesign.cli import app


def test_error_text_is_not_read_as_markup(tmp_path):
    """'[low, high]' in a message is text, not a rich markup tag."""
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'version = 1\nkind = "run"\n[workload]\nmodels = ["rm-small"]\ncandidates = 1024\n'
        "keep = 64\nqps = 10\n[space]\nbatch_split_log2 = [3, 1]\n"
    )
    result = CliRunner().invoke(app, ["optimize", str(bad)])
    assert result.exit_code == 1
    assert "must be [low, high] with low <= high" in result.stderr
    assert result.stderr.strip().count("\n") == 0
