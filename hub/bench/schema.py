"""JSON Schemas (draft 2020-12) of what ``hub bench`` stores and prints.

:data:`RECORD_SCHEMA` is one stored measurement (``hub.machine.write_record("bench", name,
record)``; the contract shared with ``hub probe`` and ``hub browse``); :data:`REPORT_SCHEMA`
is the output of ``hub bench --json`` (:meth:`hub.bench.BenchReport.to_dict`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RECORD_SCHEMA", "REPORT_SCHEMA"]

_SPREAD: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["median", "min", "max"],
    "properties": {k: {"type": "number", "exclusiveMinimum": 0} for k in ("median", "min", "max")},
}

RECORD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "hub bench record: one backbone measured on this machine",
    "type": "object",
    "required": ["name", "variant", "modality", "batch_size", "dtype", "device", "items_per_s",
                 "latency_ms", "peak_memory_mib", "load_s", "random_weights", "threads", "torch",
                 "gpu", "measured_at"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "the catalogue name"},
        "variant": {"type": "string", "minLength": 1,
                    "description": "the weight variant, or 'random' for random weights"},
        "modality": {"enum": ["image", "text"]},
        "batch_size": {"type": "integer", "minimum": 1},
        "dtype": {"enum": ["float32", "float16", "bfloat16"],
                  "description": "the compute precision actually used (autocast or weights)"},
        "device": {"type": "string", "pattern": "^(cpu|cuda:[0-9]+)$"},
        "items_per_s": {**_SPREAD, "description": "images or texts per second at batch_size"},
        "latency_ms": {**_SPREAD, "description": "milliseconds for one item at batch size 1"},
        "peak_memory_mib": {"type": ["number", "null"], "exclusiveMinimum": 0,
                            "description": "peak resident memory of the measuring process "
                                           "(VmHWM); null where the OS does not say"},
        "memory_before_load_mib": {"type": ["number", "null"], "exclusiveMinimum": 0,
                                   "description": "resident memory just before hub.load (VmRSS: "
                                                  "torch and the libraries); null off Linux"},
        "peak_cuda_memory_mib": {"type": "number", "minimum": 0,
                                 "description": "on CUDA: torch.cuda.max_memory_allocated"},
        "load_s": {"type": "number", "exclusiveMinimum": 0, "description": "hub.load seconds"},
        "random_weights": {"type": "boolean",
                           "description": "true: the weights were not pulled, so the "
                                          "architecture ran with random weights"},
        "threads": {"type": "integer", "minimum": 1, "description": "torch.get_num_threads()"},
        "torch": {"type": "string", "minLength": 1},
        "gpu": {"type": ["string", "null"], "description": "the GPU used; null on CPU"},
        "measured_at": {"type": "string", "format": "date-time"},
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "hub bench --json",
    "type": "object",
    "required": ["machine", "results", "skipped"],
    "additionalProperties": False,
    "properties": {
        "machine": {
            "type": "object",
            "required": ["id", "cpu", "cpu_flags", "cores", "arch", "os", "torch",
                         "torch_threads", "gpus"],
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
                "cpu": {"type": "string"},
                "cpu_flags": {"type": "array", "items": {"type": "string"}},
                "cores": {"type": "integer", "minimum": 1},
                "arch": {"type": "string"},
                "os": {"type": "string"},
                "torch": {"type": "string"},
                "torch_threads": {"type": "integer", "minimum": 1},
                "gpus": {"type": "array", "items": {"type": "string"}},
            },
        },
        "results": {"type": "array", "minItems": 1, "items": RECORD_SCHEMA},
        "skipped": {
            "type": "array",
            "items": {"type": "object", "required": ["name", "reason"], "additionalProperties": False,
                      "properties": {"name": {"type": "string"}, "reason": {"type": "string"}}},
        },
    },
}
