"""What the live gateway's process loads: no numpy, none of the other commands.

The gateway's memory aim (80 MB at 500 tags x 1 Hz, docs/gateway.md) holds
only while ``lineguard gateway run`` leaves numpy (the live path uses lists)
and the model, dashboard and worker commands out of its process.
"""

from __future__ import annotations

import json
import subprocess
import sys

# The command line as `lineguard gateway run` resolves it, then every module
# the run imports for both source kinds.
_CODE = """
import json, sys
from lineguard.cli import main
main(["gateway", "run", "--help"], standalone_mode=False)
import lineguard.ingest.live, lineguard.ingest.gateway_config
import lineguard.ingest.sources.opcua, lineguard.ingest.sources.sparkplug
import asyncua, kafka, paho.mqtt.client
print(json.dumps(sorted(sys.modules)))
"""


def _loaded() -> list[str]:
    out = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_gateway_run_command_loads_neither_numpy_nor_the_other_commands():
    loaded = _loaded()
    numpy = [m for m in loaded if m == "numpy" or m.startswith("numpy.")]
    assert numpy == [], f"expected no numpy module in the gateway; got {numpy[:5]}"
    others = [
        m
        for m in loaded
        if m.startswith(("lineguard.cli.", "lineguard.models", "lineguard.stream"))
        and m not in ("lineguard.cli._common", "lineguard.cli.gateway", "lineguard.cli.sim")
    ]
    assert others == [], f"expected only the gateway's commands loaded; got {others}"
    # The command itself was resolved (else the check above proves nothing).
    assert "lineguard.cli.sim" in loaded and "lineguard.cli.gateway" in loaded
