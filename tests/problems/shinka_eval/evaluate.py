"""An evaluator of ShinkaEvolve's shape built on their run_shinka_eval (needs shinka-evolve)."""

import argparse

from shinka.core import run_shinka_eval

TARGET = [0.8, -0.4, 0.25]


def validate(result):
    if len(result) != 3 or any(abs(v) > 2 for v in result):
        return False, f"weights must be three numbers in [-2, 2], got {result}"
    return True, None


def aggregate(results):
    error_sq = sum((a - b) ** 2 for a, b in zip(results[0], TARGET, strict=True))
    return {
        "combined_score": 1.0 / (1.0 + error_sq),
        "public": {"squared_error": error_sq},
        "private": {"target": TARGET},
        "text_feedback": f"squared error {error_sq:.4f}",
    }


def main(program_path, results_dir):
    run_shinka_eval(
        program_path=program_path,
        results_dir=results_dir,
        experiment_fn_name="run_experiment",
        num_runs=1,
        validate_fn=validate,
        aggregate_metrics_fn=aggregate,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--program_path", default="initial.py")
    parser.add_argument("--results_dir", default="results")
    args = parser.parse_args()
    main(args.program_path, args.results_dir)
