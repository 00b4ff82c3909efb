"""Agent-harness evolution (ADAS / Darwin Gödel Machine style): `solve(task, ask, budget)`.

The candidate is the code around a model: how it splits a task into questions, votes,
verifies and when it stops asking. It runs in a sealed process (`sealed.py`: a fresh
interpreter in its own namespaces whose root holds only the candidate's file) and talks to
this evaluator over two pipes: it gets each task's question and an `ask` that comes back
here. The task data (`towns.py`: the register, the questions and their answers) lives in
this process only. Every question goes through `ask_model`, the one place a model is
called: the evaluator model `oracle` when the run's config names one (`evaluator_models:`,
reached through the engine, which holds its key and counts its calls; the register is in
its system message), else a deterministic simulated oracle with correlated errors.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from evoengine.evaluation import models
from evoengine.problem import EvalResult, Feature, Problem

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sealed  # noqa: E402
import session  # noqa: E402
import towns  # noqa: E402  (the task data: never sent to the candidate)

BUDGET = 16  # oracle calls allowed per task
CALL_COST = 0.002  # subtracted from a task's score per oracle call
SUITE_TIMEOUT_S = 60.0
MODEL = "oracle"  # the evaluator model this problem asks, when the run configures one
FEEDBACK_TASKS = 8

GRAMMAR = """\
  What is the <attribute> of <town>?              attribute: population, founding year,
                                                  elevation (metres) or mayor
  Who is the mayor of <town>?
  In what year was <town> founded?
  What is the <attribute> of <town> plus|minus the <attribute> of <town>?
  What is the <attribute> of the town whose mayor is <first last>?
  Which town has the larger|smaller <attribute>, <town> or <town>?
  Which town was founded earlier|later, <town> or <town>?
  Which town's mayor is <first last>?
  Is the <attribute> of <town> <value>?            (answers yes or no)
  Is <first last> the mayor of <town>?             (answers yes or no)
  Was <town> founded in <year>?                    (answers yes or no)"""

DESCRIPTION = f"""\
Write the harness around a language model: `solve(task, ask, budget) -> str`.

Each task is a question about a register of twenty fictional towns (population, founding
year, elevation, mayor) that only the model has read. Tasks are single lookups, sums and
differences of two figures, comparisons of two towns, and two-hop questions ("the
elevation of the town whose mayor is ..."). `ask(question)` sends one question to the
model and returns its reply as a string; `budget` ({BUDGET}) is how many calls this task
may make (beyond it, `ask` returns "" and costs nothing). Return the answer: a number, a
town name or a person's name.

The model is right about three times in four on a task's own question, and is less
reliable on compound questions than on single facts. Its errors are correlated: about
some facts it holds a fixed wrong belief that it repeats often, so plain repetition and
majority voting do not always fix them; it is better at confirming or denying a stated
value than at recalling it. Asking the same question again gives a fresh draw; replies are
deterministic (the same questions in the same order always get the same replies). The
model understands these question forms (case and a final "?" do not matter):

{GRAMMAR}

Anything else gets "I don't understand the question." (and still costs a call).
Arithmetic and string handling in your own code are free.

Score: the mean over the training tasks of (1 if the answer is right else 0) minus
{CALL_COST} per call. Held-out tasks, met in the same run, are reported separately as
`heldout_score`; keep the harness general (do not special-case particular towns).
`solve` keeps no useful state between tasks beyond what you store yourself and should
finish the whole suite well within {SUITE_TIMEOUT_S:.0f} s. It runs in a sealed process: no files
but its own, no network, no environment variables, and only these standard-library
modules to import: {", ".join(sealed.MODULES)}. What it prints is discarded.
"""

problem = Problem(
    name="harness_oracle",
    description=DESCRIPTION,
    initial="initial.py",
    language="python",
    kind="harness",
    features=(
        Feature("mean_calls", 0.0, float(BUDGET), 8),
        # Share of calls that were not the task's own question: 0 = pure repetition and
        # voting, 1 = everything decomposed or verified.
        Feature("decomposed_share", 0.0, 1.0, 10),
    ),
    timeout_s=SUITE_TIMEOUT_S + 30.0,  # with a real model, raise evaluation.timeout_s (configs/harness_model.yaml)
    memory_mb=1024,
    evaluator_models=(MODEL,),
)


def evaluate(candidate_path: str) -> EvalResult:
    """Start the harness sealed off, serve it the tasks, score the records."""
    try:
        child = sealed.start(Path(candidate_path), HERE / "client.py")
    except sealed.SealError as exc:
        return EvalResult.invalid(f"the harness could not be started sealed off from the task data: {exc}")
    try:
        run = session.Session(towns.ordered_tasks(), BUDGET, _oracle(), towns.is_correct, towns.question_key)
        # a real model's replies take time: then the sandbox's own timeout (evaluation.timeout_s) ends a slow suite
        allowed = SUITE_TIMEOUT_S if not models.available(MODEL) else 86400.0
        session.serve(run, child.stdin, child.stdout, time.monotonic() + allowed)
    finally:
        child.close()
    done = sum(r.answer is not None for r in run.records)
    if done < len(run.records):
        return EvalResult.invalid(
            f"the harness answered {done} of {len(run.records)} tasks: {run.failure}", tasks_answered=float(done)
        )
    return score_results(run.records)


def ask_model(messages: list[dict[str, str]], seed: int = 0) -> str:
    """The one place the oracle model is asked: chat messages in, the reply's text out.

    With an evaluator model `oracle` configured, it answers (asking again draws afresh at the
    model's temperature; a failed call raises, so the candidate is invalid with the reason).
    Offline, the simulated oracle in towns.py answers the last user message; `seed` counts how
    often this question was already asked in the current task, so that asking again draws a
    fresh reply and the same run always gets the same replies.
    """
    if models.available(MODEL):
        return models.chat(messages, model=MODEL)
    return towns.offline_reply(messages[-1]["content"], seed)


def _oracle():
    system = (
        "Answer questions about the towns in this register. Reply with the answer only: "
        "a number, a town name, a person's name, or yes/no.\n\n" + towns.register_document()
    )

    def reply(question: str, repeat: int) -> str:
        return ask_model([{"role": "system", "content": system}, {"role": "user", "content": question}], repeat)

    return reply


def task_score(task: session.TaskRecord) -> float:
    return (1.0 if task.correct else 0.0) - CALL_COST * task.calls


def score_results(tasks: list[session.TaskRecord]) -> EvalResult:
    """Score the per-task records: training tasks give the score, held-out ones a metric."""
    train = [t for t in tasks if not t.heldout]
    heldout = [t for t in tasks if t.heldout]
    calls = [t.calls for t in tasks]
    other = sum(t.other_questions for t in tasks)
    metrics = {
        "accuracy": _mean(t.correct for t in train),
        "mean_calls": statistics.mean(t.calls for t in train),
        "heldout_accuracy": _mean(t.correct for t in heldout),
        "heldout_score": _mean(task_score(t) for t in heldout),
        "heldout_mean_calls": _mean(t.calls for t in heldout),
        "unanswered": float(sum(t.answer is None for t in tasks)),
    }
    by_kind: dict[str, list[session.TaskRecord]] = defaultdict(list)
    for t in train:
        by_kind[t.kind].append(t)
    for kind, group in sorted(by_kind.items()):
        metrics[f"accuracy_{kind}"] = _mean(t.correct for t in group)
    return EvalResult(
        score=_mean(task_score(t) for t in train),
        metrics=metrics,
        features={
            "mean_calls": min(float(BUDGET), statistics.mean(calls)),
            "decomposed_share": other / sum(calls) if sum(calls) else 0.0,
        },
        feedback=_feedback(train, by_kind),
        instances={t.id: task_score(t) for t in train},
    )


def _mean(values) -> float:
    values = [float(v) for v in values]
    return statistics.mean(values) if values else 0.0


def _feedback(train: list[session.TaskRecord], by_kind: dict[str, list[session.TaskRecord]]) -> str:
    """Which training tasks failed and how the calls were spent (never the right answers)."""
    wrong = [t for t in train if not t.correct]
    lines = [
        f"{len(train) - len(wrong)}/{len(train)} training tasks right, "
        f"{statistics.mean(t.calls for t in train):.2f} calls per task on average."
    ]
    for kind, group in sorted(by_kind.items()):
        lines.append(
            f"  {kind:<10} {sum(t.correct for t in group)}/{len(group)} right, "
            f"{statistics.mean(t.calls for t in group):.1f} calls each"
        )
    errors = [t for t in train if t.error]
    if errors:
        lines.append(f"solve() raised on {len(errors)} tasks, e.g. {errors[0].id}: {errors[0].error}")
    refused = sum(t.refused for t in train)
    if refused:
        lines.append(f'{refused} calls were made after a task\'s budget was spent (they returned "").')
    if wrong:
        lines.append("Some wrong answers (town names are part of the data, not of the method):")
        for t in wrong[:FEEDBACK_TASKS]:
            spread = f"; the oracle gave {t.distinct_replies} different replies" if t.calls > 1 else ""
            lines.append(f"  {t.id} ({t.kind}) {t.question!r}: answered {t.answer!r} after {t.calls} call(s){spread}")
        if len(wrong) > FEEDBACK_TASKS:
            lines.append(f"  ... and {len(wrong) - FEEDBACK_TASKS} more")
    return "\n".join(lines)
