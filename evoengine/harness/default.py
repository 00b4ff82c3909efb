"""The built-in harness: the per-proposal policy and the prompt, from the templates.

Policy: the operator is drawn from the model's learnt odds (`ctx.operator_weights`, which
start at the `config.operators` weights and follow the model's own record), or from the
configured weights when there are none; crossover only when there is a second parent to
cross with. The prompt shows up to `MAX_INSPIRATIONS` inspirations (none with
`selection.inspirations: false`) and the recent failures (none for the `iid` baseline,
whose every prompt is the seed's); the temperature is the model's own, raised a little
each time the same slot was already rejected (`ctx.attempt`), so a retry does not repeat
itself. The offline operators for Python cross two parents only with
`operators.offline_crossover: true` (and `operators.crossover` above 0).

Prompt: a system message framing the problem's kind, then one user message with the
problem's description, the parent (score, metrics, evaluator feedback, text), the
inspirations with their scores, recent failures, the task for the chosen operator, and
the exact reply format (see `evoengine/patches.py`). A candidate of several files shows
each file under its `FILE: name` line; its diffs name the file of each edit, and a rewrite
or crossover returns one file, picked here (`Plan.file`; for crossover, one where the
parents differ).

This file is a valid replacement harness as it stands: copy it, change it, and point
`config.harness` at the copy.
"""

from __future__ import annotations

import re
from typing import Any

from evoengine.blocks import evolve_blocks
from evoengine.config import Config
from evoengine.files import FilesError, language_of, split_files
from evoengine.harness import OfflinePlan, Plan, Templates
from evoengine.records import ProposalContext

# The policy: what `evoengine self-evolve` may change (everything between the markers).
# EVOLVE-BLOCK-START
MAX_INSPIRATIONS = 4
MAX_FAILURES = 5
FEEDBACK_CHARS = 3000
FAILURE_CHARS = 400
TEMPERATURE_STEP = 0.15
MAX_TEMPERATURE = 1.5
OFFLINE_WEIGHTS = {"constant": 0.6, "operator": 0.1, "statement": 0.1, "crossover": 0.2}
OFFLINE_STEP = 1.0
OFFLINE_STEP_PER_ATTEMPT = 0.5


def offline_plan(ctx):
    """How the offline operators treat one proposal: which edit families, how big a step."""
    step = OFFLINE_STEP * (1.0 + OFFLINE_STEP_PER_ATTEMPT * ctx.attempt)
    return OfflinePlan(dict(OFFLINE_WEIGHTS), step)


# EVOLVE-BLOCK-END

NOUNS = {"program": "program", "prompt": "prompt", "reward": "reward function", "harness": "harness"}


def _clip(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, keeping its head and its tail."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[-tail:]}"


def _score(candidate: Any) -> str:
    if not candidate.valid or candidate.score is None:
        return "invalid"
    return f"{candidate.score:.6g}"


def _fence(text: str) -> str:
    """A backtick fence longer than any run of backticks inside `text`."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _focus(ctx: ProposalContext) -> str | None:
    """For a candidate of several named texts (named EVOLVE-BLOCKs), the one to change now:
    they mutate one at a time. None for a single text."""
    if ctx.problem.folder:
        return None
    try:
        names = [b.name for b in evolve_blocks(ctx.parent.text, ctx.problem.comment)]
    except ValueError:
        return None
    if len(names) < 2 or not all(names):
        return None
    return ctx.rng.choice(names)


def _one_file(ctx: ProposalContext, operator: str) -> str | None:
    """For a candidate of several files, the one a rewrite or crossover returns (one at a time;
    for crossover one where the parents differ, if any). None for diffs and single files."""
    if operator == "diff" or not ctx.problem.folder:
        return None
    try:
        files = split_files(ctx.parent.text)
        theirs = split_files(ctx.inspirations[0].text) if operator == "crossover" else {}
    except FilesError:
        return None
    differing = [name for name in files if name in theirs and theirs[name] != files[name]]
    return ctx.rng.choice(differing or list(files))


def _files(text: str) -> dict[str, str]:
    try:
        return split_files(text)
    except FilesError:  # shown as one text; the patch step will say what is wrong
        return {"(unreadable files)": text}


class Harness:
    def __init__(self, config: Config, templates: Templates):
        self.config = config
        self.templates = templates
        self.temperatures = {m.name: m.temperature for m in config.models}

    # ------------------------------------------------------------ policy

    def plan(self, ctx: ProposalContext, arm: str) -> Plan:
        ops = self.config.operators
        weights = dict(ctx.operator_weights or {"diff": ops.diff, "full": ops.full, "crossover": ops.crossover})
        if not any(c.id != ctx.parent.id for c in ctx.inspirations[:1]):
            weights["crossover"] = 0.0
        if sum(weights.values()) <= 0:
            weights = {"diff": 1.0, "full": 0.0, "crossover": 0.0}
        operator = ctx.rng.choices(list(weights), weights=list(weights.values()))[0]
        shown = min(len(ctx.inspirations), MAX_INSPIRATIONS) if self.config.selection.inspirations else 0
        temperature = None
        if ctx.attempt > 0:
            base = self.temperatures.get(arm, 0.8)
            temperature = min(MAX_TEMPERATURE, base + TEMPERATURE_STEP * ctx.attempt)
        return Plan(operator, shown, temperature, _focus(ctx), _one_file(ctx, operator))

    def offline(self, ctx: ProposalContext) -> OfflinePlan:
        plan = offline_plan(ctx)
        ops = self.config.operators
        if (ops.offline_crossover and ops.crossover > 0) or not plan.weights:
            return plan
        return OfflinePlan({**plan.weights, "crossover": 0.0}, plan.step)

    # ------------------------------------------------------------ prompt

    def messages(self, ctx: ProposalContext, plan: Plan) -> list[dict[str, str]]:
        problem = ctx.problem
        words = self._words(ctx)
        framing = self.templates.render(f"kind_{problem.kind}", **words)
        system = self.templates.render("system", framing=framing, **words)
        shown = ctx.inspirations[: plan.inspirations]
        if plan.operator == "crossover":
            other, shown = ctx.inspirations[0], shown[1:]
            parent = "\n\n".join(
                [
                    self._candidate(ctx.parent, f"Parent A (candidate {ctx.parent.id})", words),
                    self._candidate(other, f"Parent B (candidate {other.id})", words),
                ]
            )
            words = {**words, "other": str(other.id)}
        else:
            parent = self._candidate(ctx.parent, f"Current {words['noun']} (candidate {ctx.parent.id})", words)
        inspirations = ""
        if shown:
            blocks = [self._candidate(c, f"Candidate {c.id}", words) for c in shown]
            inspirations = self.templates.render("inspirations", candidates="\n\n".join(blocks), **words)
        failures = ""
        independent = self.config.selection.strategy == "iid"
        recent = [] if independent else [f for f in ctx.failures[-MAX_FAILURES:] if f.strip()]
        if recent:
            items = "\n".join(f"- {_clip(f, FAILURE_CHARS)}" for f in recent)
            failures = self.templates.render("failures", items=items, **words)
        user = self.templates.render(
            "task",
            name=problem.name,
            description=problem.description.strip(),
            parent=parent,
            inspirations=inspirations,
            failures=failures,
            operator=self.templates.render(f"op_{plan.operator}", **words) + self._focus_note(ctx, plan, words),
            format=self._format(ctx, plan, words),
            **words,
        )
        return [{"role": "system", "content": system + "\n"}, {"role": "user", "content": user + "\n"}]

    def _focus_note(self, ctx: ProposalContext, plan: Plan, words: dict[str, str]) -> str:
        """What part of the candidate this proposal changes: a named section, or which files."""
        noun = words["noun"]
        if plan.block:
            return (
                f"\n\nThis {noun} is made of named sections. This time change only the section "
                f"`{plan.block}` (between `{ctx.problem.comment} EVOLVE-BLOCK-START {plan.block}` and its "
                f"EVOLVE-BLOCK-END); leave every other section exactly as it is."
            )
        if not words.get("folder"):
            return ""
        if plan.operator == "diff":
            return (
                f"\n\nThis {noun} is a folder of files, each shown under its `FILE: name` line. "
                "Name the file each edit changes with a `FILE: name` line right before its SEARCH line."
            )
        return (
            f"\n\nThis {noun} is a folder of files, each shown under its `FILE: name` line. This time "
            f"write only the file `{plan.file}`, whole; the other files stay as they are."
        )

    def repair(
        self, ctx: ProposalContext, plan: Plan, messages: list[dict[str, str]], reply: str, error: str
    ) -> list[dict[str, str]]:
        words = self._words(ctx)
        again = self.templates.render("repair", error=error, format=self._format(ctx, plan, words), **words)
        return [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": again + "\n"}]

    # ------------------------------------------------------------ pieces

    def _words(self, ctx: ProposalContext) -> dict[str, str]:
        problem = ctx.problem
        return {
            "kind": problem.kind,
            "noun": NOUNS.get(problem.kind, "program"),
            "language": problem.language,
            "comment": problem.comment,
            "id": str(ctx.parent.id),
            "folder": "yes" if problem.folder else "",
        }

    def _candidate(self, candidate: Any, title: str, words: dict[str, str]) -> str:
        metrics = ", ".join(f"{k}={v:.6g}" for k, v in sorted(candidate.metrics.items()))
        feedback = _clip(candidate.feedback, FEEDBACK_CHARS) if candidate.feedback else ""
        values = {
            **words,
            "title": title,
            "score": _score(candidate),
            "metrics": f"Metrics: {metrics}" if metrics else "",
            "feedback": f"Evaluator feedback:\n{feedback}" if feedback else "",
        }
        if words.get("folder"):  # several files, each under its FILE line
            files = [
                self.templates.render(
                    "file", name=name, language=language_of(name), fence=_fence(text), text=text.rstrip("\n")
                )
                for name, text in _files(candidate.text).items()
            ]
            return self.templates.render("candidate_files", files="\n\n".join(files), **values)
        return self.templates.render(
            "candidate", fence=_fence(candidate.text), text=candidate.text.rstrip("\n"), **values
        )

    def _format(self, ctx: ProposalContext, plan: Plan, words: dict[str, str]) -> str:
        if words.get("folder"):
            return self._files_format(ctx, plan, words)
        try:
            marked = evolve_blocks(ctx.parent.text, ctx.problem.comment)[0].marked
        except ValueError:  # broken markers: the patch step will say so
            marked = False
        frozen = self.templates.render("frozen", **words) if marked else ""
        name = "format_diff" if plan.operator == "diff" else "format_full"
        return self.templates.render(name, frozen=frozen, **words)

    def _files_format(self, ctx: ProposalContext, plan: Plan, words: dict[str, str]) -> str:
        files = _files(ctx.parent.text)
        try:
            marked = any(evolve_blocks(t, ctx.problem.file_comment(n))[0].marked for n, t in files.items())
        except ValueError:
            marked = False
        frozen = self.templates.render("frozen_files", **words) if marked else ""
        if plan.operator == "diff":
            return self.templates.render("format_diff_files", frozen=frozen, **words)
        file = plan.file or next(iter(files))
        return self.templates.render(
            "format_full_files", frozen=frozen, file=file, file_language=language_of(file), **words
        )
