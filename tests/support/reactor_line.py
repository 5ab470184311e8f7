"""A synthetic continuous process under control loops: a cooled exothermic reactor.

A continuous stirred-tank reactor runs an exothermic reaction A -> B. Two PI
loops hold it: the coolant valve holds the reactor temperature at its
setpoint, the outlet valve holds the level. The feed's flow, temperature and
concentration, and the coolant's inlet temperature, wander slowly (AR(1)
disturbances of 30 to 200 minutes), as upstream units and the weather make
them. One row per minute; the physics is integrated in 6-second steps.

Measured: feed flow and temperature, level, reactor temperature, the
concentration of A (an analyser), the coolant flow and its outlet
temperature, the outlet flow, and both controller outputs (valve
commands). Not measured: the feed concentration and the coolant inlet
temperature -- so a step in either is a disturbance the plant only sees
through what the loops do about it.

That is the point of this line. A control loop *compensates* a fault: a
warmer coolant is answered by more coolant flow, and the reactor
temperature returns to its setpoint within minutes. What remains is a
lasting shift in a manipulated variable, inside its normal range, and a
changed relation between the readings (more flow for the same heat
removal). A biased temperature transmitter is compensated the other way:
the loop holds the *reading* at its setpoint, the true temperature moves
off, and only the conversion and the heat balance show it.

:data:`FAULTS` are the process and instrument faults of a continuous
chemical plant, one of each kind: steps in unmeasured and measured
disturbances, random variation, slow drifts (catalyst decay, fouling), a
sticking and a stuck valve, sensor bias and drift. Used by
``bench/reactor_line.py`` and ``tests/detectors/test_reactor_faults.py``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FAULTS", "SENSORS", "STEP_US", "reactor_line", "reactor_runs"]

SENSORS = [
    "feed_flow",
    "feed_temp",
    "level",
    "reactor_temp",
    "conc_a",
    "coolant_flow",
    "coolant_valve",
    "coolant_out_temp",
    "outlet_flow",
    "outlet_valve",
]
#: Microseconds between rows (one minute).
STEP_US = 60_000_000

#: Each fault's kind and what it does from its first row on.
FAULTS = {
    "coolant_inlet_step": "the (unmeasured) coolant inlet temperature 3 K higher",
    "feed_conc_step": "the (unmeasured) feed concentration of A 8 % higher",
    "feed_temp_step": "the feed 4 K warmer",
    "feed_temp_variation": "the feed temperature's wander 4 times as large",
    "catalyst_decay": "the reaction rate falling by 0.05 % a minute",
    "fouling": "the jacket's heat transfer falling by 0.02 % a minute",
    "coolant_valve_sticking": "the coolant valve moves only once its command is 2 % away",
    "coolant_valve_stuck": "the coolant valve stays where it is",
    "temp_sensor_bias": "the reactor temperature transmitter reads 1 K high",
    "level_sensor_drift": "the level transmitter drifting by 0.01 % of span a minute",
}

_BURN_IN = 60
_SUBSTEPS = 10
_DT = 1.0 / _SUBSTEPS  # minutes
_T_SET = 350.0  # K
_LEVEL_SET = 50.0  # % of span
_E_OVER_R = 5000.0  # K
_HEAT = 100.0  # -dH / (rho cp), K L / mol
_UA_V = 209.0  # UA / (rho cp), L / min: the reactor side over 100 L is 2.09 / min
_JACKET_L = 50.0
_COOLANT_MAX = 300.0  # L / min at a fully open valve
_OUTLET_CV = 200.0  # L / min at a fully open valve and the level at 100 %


def _ar1(rng: np.random.Generator, n: int, sd: float, tau: float, scale: float = 1.0) -> np.ndarray:
    """An AR(1) wander of stationary sd ``sd`` and time constant ``tau`` rows;
    ``scale`` multiplies its innovations (random variation)."""
    phi = math.exp(-1.0 / tau)
    e = rng.normal(0.0, sd * math.sqrt(1.0 - phi * phi), n)
    if np.ndim(scale):
        e = e * scale
    else:
        e *= scale
    out = np.empty(n)
    x = rng.normal(0.0, sd)
    for i in range(n):
        x = phi * x + e[i]
        out[i] = x
    return out


def reactor_line(n: int, seed: int, fault: str | None = None, fault_start: int = 0) -> np.ndarray:
    """``n`` rows of :data:`SENSORS` (one per minute), drawn with ``seed``.

    Parameters
    ----------
    n : int
        Rows.
    seed : int
        Seed of the disturbances and the measurement noise; the same seed
        gives the same run with and without a fault up to ``fault_start``.
    fault : str or None
        One of :data:`FAULTS`, active from row ``fault_start`` on.
    fault_start : int
        First faulty row.
    """
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"fault must be one of {sorted(FAULTS)}, got {fault!r}")
    rng = np.random.default_rng(seed)
    # Burn in an hour so the run starts in the loops' steady state.
    rows, n, fault_start = n, n + _BURN_IN, fault_start + _BURN_IN
    on = np.arange(n) >= fault_start if fault is not None else np.zeros(n, dtype=bool)
    since = np.maximum(np.arange(n) - fault_start, 0) * on
    variation = np.where(on, 4.0, 1.0) if fault == "feed_temp_variation" else 1.0
    feed_flow = 100.0 + _ar1(rng, n, 3.0, 30.0)
    feed_temp = 350.0 + _ar1(rng, n, 1.0, 60.0, variation)
    feed_conc = 1.0 + _ar1(rng, n, 0.02, 120.0)
    coolant_in = 290.0 + _ar1(rng, n, 0.5, 200.0)
    if fault == "coolant_inlet_step":
        coolant_in = coolant_in + 3.0 * on
    elif fault == "feed_conc_step":
        feed_conc = feed_conc + 0.08 * on
    elif fault == "feed_temp_step":
        feed_temp = feed_temp + 4.0 * on
    rate = np.exp(-0.0005 * since) if fault == "catalyst_decay" else np.ones(n)
    ua = 1.0 - 0.0002 * since if fault == "fouling" else np.ones(n)
    noise = rng.normal(size=(n, len(SENSORS)))

    # Steady state at the nominal feed, and the loops' integral terms there.
    volume, conc, temp, jacket = 100.0, 0.5, _T_SET, 326.0
    coolant_cmd, outlet_cmd = 46.0, 50.0
    coolant_pos = coolant_cmd
    # PI tunings (direct acting: too hot -> more coolant; too full -> open the outlet).
    kc_t, ti_t, kc_l, ti_l = 2.0, 5.0, 0.5, 10.0
    integral_t = coolant_cmd
    integral_l = outlet_cmd
    out = np.empty((n, len(SENSORS)))
    for i in range(n):
        k_ref = rate[i]
        for _ in range(_SUBSTEPS):
            coolant = _COOLANT_MAX * coolant_pos / 100.0
            outlet = _OUTLET_CV * outlet_cmd / 100.0 * math.sqrt(max(volume, 0.0) / 200.0)
            k = k_ref * math.exp(_E_OVER_R * (1.0 / _T_SET - 1.0 / temp))
            dilution = feed_flow[i] / volume
            transfer = _UA_V * ua[i] * (temp - jacket)
            d_conc = dilution * (feed_conc[i] - conc) - k * conc
            d_temp = dilution * (feed_temp[i] - temp) + _HEAT * k * conc - transfer / volume
            d_jacket = coolant / _JACKET_L * (coolant_in[i] - jacket) + transfer / _JACKET_L
            volume += _DT * (feed_flow[i] - outlet)
            conc += _DT * d_conc
            temp += _DT * d_temp
            jacket += _DT * d_jacket
        level = volume / 2.0
        measured_temp = temp + (1.0 if fault == "temp_sensor_bias" and on[i] else 0.0)
        measured_level = level + (0.01 * since[i] if fault == "level_sensor_drift" else 0.0)
        # The controllers act once a minute on the readings they see.
        reading_t = measured_temp + 0.05 * noise[i, 3]
        reading_l = measured_level + 0.2 * noise[i, 2]
        integral_t += kc_t / ti_t * (reading_t - _T_SET)
        coolant_cmd = min(max(integral_t + kc_t * (reading_t - _T_SET), 0.0), 100.0)
        integral_l += kc_l / ti_l * (reading_l - _LEVEL_SET)
        outlet_cmd = min(max(integral_l + kc_l * (reading_l - _LEVEL_SET), 0.0), 100.0)
        if fault == "coolant_valve_stuck" and on[i]:
            pass  # the valve stays where it was
        elif fault == "coolant_valve_sticking" and on[i]:
            if abs(coolant_cmd - coolant_pos) > 2.0:
                coolant_pos = coolant_cmd
        else:
            coolant_pos = coolant_cmd
        out[i] = (
            feed_flow[i] + 0.5 * noise[i, 0],
            feed_temp[i] + 0.1 * noise[i, 1],
            reading_l,
            reading_t,
            conc + 0.003 * noise[i, 4],
            _COOLANT_MAX * coolant_pos / 100.0 + 1.0 * noise[i, 5],
            coolant_cmd,
            jacket + 0.1 * noise[i, 7],
            _OUTLET_CV * outlet_cmd / 100.0 * math.sqrt(volume / 200.0) + 0.5 * noise[i, 8],
            outlet_cmd,
        )
    return out[n - rows :]


def reactor_runs(n_runs: int, rows: int, first_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_runs`` normal runs of ``rows`` rows (seeds ``first_seed``, ...),
    concatenated oldest first, and their frame times: a day between runs,
    so each run starts its trailing windows afresh."""
    X = np.vstack([reactor_line(rows, first_seed + r) for r in range(n_runs)])
    period = rows * STEP_US + 86_400 * 10**6
    t = [np.arange(rows, dtype=np.int64) * STEP_US + r * period for r in range(n_runs)]
    return X, np.concatenate(t)
