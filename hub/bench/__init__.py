"""``hub bench``: speed of backbones on this machine, measured with ``extract()``.

:mod:`hub.bench.run` chooses the backbones and runs one measuring process each
(:mod:`hub.bench.measure`) on the inputs of :mod:`hub.bench.inputs`; the records it stores and
prints follow :mod:`hub.bench.schema`. Nothing here imports torch until a measurement starts.
"""

from hub.bench.run import BenchReport, MeasureRequest, bench, select, tradeoff_points
from hub.bench.schema import RECORD_SCHEMA, REPORT_SCHEMA

__all__ = ["RECORD_SCHEMA", "REPORT_SCHEMA", "BenchReport", "MeasureRequest", "bench", "select",
           "tradeoff_points"]
