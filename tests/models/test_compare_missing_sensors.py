"""A comparison says when a version's sensor has no archived reading (its live
scores were computed with the sensor imputed), against a real InfluxDB."""

from __future__ import annotations

import uuid

import pytest

from lineguard.influx import InfluxV1Client, encode_point
from lineguard.models.history import TELEMETRY_MEASUREMENT
from lineguard.models.lifecycle import sensors_without_values

pytestmark = pytest.mark.integration

T0 = 1_773_048_600_000_000  # 2026-03-09T09:30:00Z in microseconds


def test_sensors_without_values_in_the_archive(local_stack) -> None:
    settings = local_stack.influx_settings(f"ux_{uuid.uuid4().hex[:8]}")
    with InfluxV1Client(settings) as client:
        client.create_database()
        client.write(
            [
                encode_point(
                    TELEMETRY_MEASUREMENT,
                    {"line": "press-7"},
                    {"Current": 1.0 + i, "Temperature": 70.0},
                    (T0 + i * 1_000_000) * 1000,
                )
                for i in range(10)
            ]
        )
        sensors = ["Current", "Pressure", "Temperature", "Voltage"]
        window = (T0, T0 + 9_000_000)
        assert sensors_without_values(client, "press-7", sensors, *window) == [
            "Pressure",
            "Voltage",
        ]
        assert sensors_without_values(client, "press-7", ["Current"], *window) == []
        # No archive of the line at all: unknown, not "everything missing".
        assert sensors_without_values(client, "press-8", sensors, *window) is None
