"""CloudWatch Embedded Metric Format (EMF): metrics as one structured JSON line on stdout.

The ECS tasks ship stdout to CloudWatch Logs, which extracts every EMF document into a metric, so no AWS SDK
(boto3) and no credentials are needed to publish metrics.

Invariants:
- One metric document is exactly one line of JSON (no newline inside), written to stdout with a flush, and
  never through the JSON logger (its envelope would hide the ``_aws`` member from CloudWatch Logs).
- The document has one dimension set: the sorted ``dimensions`` keys. ``emf_emit`` always adds
  ``Environment`` (``settings.METRICS_ENVIRONMENT``), so no published document relies on the empty dimension set
  (``[[]]``, which the EMF specification does not clearly allow); the CDK alarms and scaling policies read the
  metric with the same ``Environment`` dimension (deploy/ecs/stacks/platform.py ``METRICS_ENVIRONMENT``).
- Metric values are numbers (int or float, JSON numbers); dimension values are strings.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping

from django.conf import settings

# deploy/ecs/stacks/platform.py METRIC_NAMESPACE: the custom namespace its scaling policies and alarms read.
NAMESPACE = "Brokerage"
ENVIRONMENT_DIMENSION = "Environment"


def emf_metric_line(
    *,
    namespace: str,
    metrics: Mapping[str, float | int],
    dimensions: Mapping[str, str],
    unit: str = "Count",
    timestamp_ms: int | None = None,
) -> str:
    """The EMF document (one JSON line, no trailing newline) for ``metrics`` under ``dimensions``."""
    if not metrics:
        raise ValueError("an EMF document needs at least one metric")
    clash = set(metrics) & set(dimensions)
    if clash or "_aws" in metrics or "_aws" in dimensions:
        raise ValueError(f"metric and dimension names must be distinct and not _aws: {sorted(clash)}")
    document: dict[str, object] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name in metrics],
                }
            ],
        },
        **dimensions,
        **metrics,
    }
    return json.dumps(document, separators=(",", ":"))


def emf_emit(
    *,
    namespace: str = NAMESPACE,
    metrics: Mapping[str, float | int],
    dimensions: Mapping[str, str],
    unit: str = "Count",
    timestamp_ms: int | None = None,
) -> str:
    """Write one EMF line to stdout (flushed) and return it; ``Environment`` is added to ``dimensions``."""
    line = emf_metric_line(
        namespace=namespace,
        metrics=metrics,
        dimensions={ENVIRONMENT_DIMENSION: settings.METRICS_ENVIRONMENT, **dimensions},
        unit=unit,
        timestamp_ms=timestamp_ms,
    )
    print(line, file=sys.stdout, flush=True)
    return line
