"""Granite Long-Doc: the entry point that Hugging Face Spaces runs (`python app.py`: the web UI).

With a command it runs that instead, from the command line (`python app.py --help`; app/cli.py).
"""

import os
import sys

# Set before gradio / huggingface_hub are imported: no analytics, no telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from app.cli import main  # after the environment above

if __name__ == "__main__":
    sys.exit(main())
