"""Contact sounds: each impact rings the two objects it joins, louder for a larger impulse.

Legend: N audio samples.

Modal synthesis, the textbook way to sound rigid bodies: an object rings at a
few partials of a base frequency set by its size (small things ring high), each
decaying exponentially; a short noise burst makes the click of the hit.
"""

from __future__ import annotations

import numpy as np

PARTIALS = ((1.0, 1.0), (2.32, 0.5), (4.25, 0.25))  # (frequency ratio, relative amplitude)
IMPULSE_REF = 0.5  # N*s at which loudness reaches half of its ceiling


def pitch_hz(obj: dict) -> float:
    """Base frequency of an object: inversely proportional to its largest extent."""
    if obj["kind"] == "static":
        return 110.0  # floors and tables thud
    extent = 2.0 * max(obj["size"])
    return float(np.clip(90.0 / max(extent, 1e-3), 150.0, 5000.0))


def loudness(impulse: float) -> float:
    """Monotone in impulse, bounded below 0.8 so sums rarely clip."""
    return 0.8 * impulse / (impulse + IMPULSE_REF)


def synthesize_contacts(contacts: list[dict], objects: list[dict], duration: float, sample_rate: int,
                        rng: np.random.Generator) -> np.ndarray:
    """-> float32 [N] mono in [-1, 1], N = round(duration * sample_rate)."""
    n = int(round(duration * sample_rate))
    out = np.zeros(n, np.float64)
    by_id = {o["id"]: o for o in objects}
    tail = int(0.4 * sample_rate)
    for ev in contacts:
        start = int(round(ev["time"] * sample_rate))
        if start >= n:
            continue
        m = min(tail, n - start)
        t = np.arange(m) / sample_rate
        amp = loudness(ev["impulse"])
        for oid in (ev["a"], ev["b"]):
            f0 = pitch_hz(by_id[oid])
            tau = 0.06 * (1000.0 / f0) ** 0.5
            for ratio, rel in PARTIALS:
                out[start : start + m] += 0.5 * amp * rel * np.exp(-t / (tau / ratio)) * np.sin(2 * np.pi * f0 * ratio * t)
        click = min(int(0.002 * sample_rate), m)
        out[start : start + click] += 0.3 * amp * rng.uniform(-1, 1, click) * np.linspace(1, 0, click)
    return np.tanh(out).astype(np.float32)  # soft limit: stays monotone in loudness
