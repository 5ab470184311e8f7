"""A synthetic discrete line whose 0/1 channels are switches that parts trip.

Each switch (a light barrier, a part-present sensor) toggles on its own,
with on and off dwell times drawn from a geometric distribution of mean 8
to 25 rows, so its combinations with the other switches keep changing: they
are events, not a recipe's commands. Analog readings (a force, a torque) mix
two shared noise factors, their own noise and, for the first few, a shift
while a switch is on. With ``running`` the line also has a long-dwell
"running" command (runs of 300-700 rows, idle for 100-300): while idle no
part passes and the analog readings sit near -3, a mode in its own right.

Used by ``tests/detectors/test_sensor_checks_channels.py`` and
``bench/switch_line.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["switch_line"]


def switch_line(
    rng: np.random.Generator,
    n: int,
    n_switches: int = 8,
    n_analog: int = 6,
    running: bool = False,
) -> np.ndarray:
    """Rows of ``n_switches`` 0/1 switches, then ``n_analog`` readings, then
    (with ``running``) the running command."""
    switches = np.zeros((n, n_switches))
    for j in range(n_switches):
        t, value = 0, int(rng.integers(2))
        mean_dwell = rng.uniform(8, 25)
        while t < n:
            dwell = int(rng.geometric(1 / mean_dwell))
            switches[t : t + dwell, j] = value
            t += dwell
            value = 1 - value
    shifted = min(n_analog, n_switches)
    analog = rng.normal(size=(n, 2)) @ rng.normal(size=(2, n_analog))
    analog += 0.3 * rng.normal(size=(n, n_analog))
    analog[:, :shifted] += 0.5 * switches[:, :shifted]
    if not running:
        return np.hstack([switches, analog])
    command = np.zeros(n)
    t, value = 0, 1
    while t < n:
        dwell = int(rng.integers(300, 700)) if value else int(rng.integers(100, 300))
        command[t : t + dwell] = value
        t += dwell
        value = 1 - value
    idle = command == 0
    switches[idle] = 0.0
    analog[idle] = 0.1 * rng.normal(size=(int(idle.sum()), n_analog)) - 3.0
    return np.hstack([switches, analog, command[:, None]])
