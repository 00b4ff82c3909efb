"""An evaluator of ShinkaEvolve's shape, written without their package: run as
`evaluate.py --program_path P --results_dir R`, main() writes metrics.json (combined_score,
public and private metrics, text_feedback) and correct.json."""

import argparse
import importlib.util
import json
import math
import os

TARGET = [0.8, -0.4, 0.25]


def main(program_path, results_dir):
    os.makedirs(results_dir, exist_ok=True)
    correct, error, metrics = True, None, {"combined_score": 0.0, "public": {}, "private": {}}
    try:
        spec = importlib.util.spec_from_file_location("program", program_path)
        program = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(program)
        w = program.run_experiment(seed=1)
        if len(w) != 3 or not all(math.isfinite(v) and abs(v) <= 2 for v in w):
            raise ValueError(f"weights must be three numbers in [-2, 2], got {w}")
        error_sq = sum((a - b) ** 2 for a, b in zip(w, TARGET, strict=True))
        worst = max(range(3), key=lambda i: abs(w[i] - TARGET[i]))
        metrics = {
            "combined_score": 1.0 / (1.0 + error_sq),
            "public": {"squared_error": error_sq, "weights": str(w)},
            "private": {"target": TARGET},
            "text_feedback": f"weight {worst} is the furthest off",
            "execution_time_mean": 0.0,
        }
    except Exception as exc:
        correct, error = False, f"{type(exc).__name__}: {exc}"
    with open(os.path.join(results_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    with open(os.path.join(results_dir, "correct.json"), "w") as f:
        json.dump({"correct": correct, "error": error}, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--program_path", default="initial.py")
    parser.add_argument("--results_dir", default="results")
    args = parser.parse_args()
    main(args.program_path, args.results_dir)
