"""The rooms of the design: gradio stays in the UI, torch stays out of the document tasks."""

import subprocess
import sys

from tests.conftest import REPO_ROOT


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_tasks_and_model_do_not_import_gradio():
    modules = imported_after(
        "import tasks.workbench, tasks.documents, model.engine, model.loader, model.runtime, model.checkpoints"
    )
    assert "gradio" not in modules


def test_document_handling_does_not_import_torch():
    modules = imported_after("import tasks.documents, tasks.prompts, tasks.budget, tasks.workbench")
    assert "torch" not in modules and "gradio" not in modules


def test_the_command_line_imports_gradio_and_torch_only_when_a_command_needs_them():
    modules = imported_after("import app.cli, app.results, app.setup")
    assert "torch" not in modules and "gradio" not in modules
