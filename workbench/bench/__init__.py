"""Measurement: CUDA-event timing, measured ceilings and bounds, result records."""

from .ceilings import (
    Ceilings,
    current_ceilings,
    datasheet_for,
    measure_ceilings,
    pct_of_bound,
    recorded_ceilings,
)
from .records import (
    Case,
    all_records,
    is_stale,
    load_record,
    make_record,
    provenance,
    validate_record,
    write_record,
)
from .timing import Timing, summarize, time_cuda, time_variants

__all__ = [
    "Ceilings", "current_ceilings", "datasheet_for", "measure_ceilings", "pct_of_bound", "recorded_ceilings",
    "Case", "all_records", "is_stale", "load_record", "make_record", "provenance", "validate_record",
    "write_record", "Timing", "summarize", "time_cuda", "time_variants",
]
