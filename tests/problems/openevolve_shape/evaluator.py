"""An evaluator of OpenEvolve's shape: evaluate(program_path) returns a dict of metrics with
combined_score, and cascade stages run a cheap check before the full evaluation. Like most of
theirs it imports the program into its own process."""

import importlib.util
import math

TARGET = (1.2, -0.7)


def _run(program_path):
    spec = importlib.util.spec_from_file_location("program", program_path)
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    return program.run_search()


def evaluate(program_path):
    try:
        x, y = _run(program_path)
    except Exception as exc:
        return {"combined_score": 0.0, "error": f"{type(exc).__name__}: {exc}"}
    distance = math.hypot(x - TARGET[0], y - TARGET[1])
    return {"combined_score": 1.0 / (1.0 + distance), "distance": distance, "x": x, "y": y}


def evaluate_stage1(program_path):
    """Cheap: does the program run and return two finite numbers?"""
    try:
        x, y = _run(program_path)
    except Exception as exc:
        return {"runs": 0.0, "error": f"{type(exc).__name__}: {exc}"}
    return {"runs": 1.0 if math.isfinite(x) and math.isfinite(y) else 0.0}


def evaluate_stage2(program_path):
    return evaluate(program_path)
