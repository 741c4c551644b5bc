"""Schemathesis over a running API's operations, in a process of its own.

    python -m support.fuzz < {"base_url": ..., "document": {...}, "headers": {...}, "operations": [[path, METHOD]]}

prints the failures as a JSON list. The tests' services run on the test's event loop, so the blocking fuzzer
must run beside it; in a thread of the same process, a module it imports lazily is parsed while the loop's thread
compiles too, and CPython 3.11 then fails with a spurious "AST constructor recursion depth mismatch"
(cpython#106905). A process of its own has one thread.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error


def fuzz(base_url: str, document: dict[str, Any], headers: dict[str, str], operations: list[list[str]]) -> list[str]:
    """Bounded examples of each operation; the failures, all of them."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    for path, method in operations:
        operation = schema[path][method]

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            case.validate_response(case.call(base_url=base_url, headers=headers), checks=[not_a_server_error])

        try:
            check()
        except Exception as exc:  # every operation is tried; the failures are reported together
            failures.append(f"{method} {path}: {exc}"[:2000])
    return failures


if __name__ == "__main__":
    request = json.load(sys.stdin)
    print(json.dumps(fuzz(request["base_url"], request["document"], request["headers"], request["operations"])))
