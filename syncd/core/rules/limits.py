"""Upper bounds on the numbers of the rules files.

Every duration and count the engine or the cycle turns into date arithmetic (``now + timedelta(days=...)``)
or sums is bounded here, far above any sensible value and far below what overflows: a ``datetime`` ends at
year 9999, so ``respect_days = 1e10`` would make every cycle fail. ``validate`` refuses values beyond them.
"""

from __future__ import annotations

MAX_DAYS = 3650  # ten years: hold, override and half-life periods
MAX_HOURS = 87_600  # ten years: SLA windows
MIN_HALF_LIFE_DAYS = 0.001  # about a minute and a half; shorter decays to nothing anyway
MAX_COUNT = 1_000_000  # caps, thresholds, the score's maximum, daily caps
MAX_POINTS = 1_000_000  # points of one scoring rule, either sign
MAX_WEIGHT = 1000  # round-robin weight of one rep
