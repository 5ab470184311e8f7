"""``python -m lineguard.cli``: the demo and benchmarks start workers this way."""

import os

from lineguard.cli import main

os.environ.setdefault("PYTHONUNBUFFERED", "1")
main()
