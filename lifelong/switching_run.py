"""Runs on task-switching streams: pre-train once, then test-then-train every agent x seed.

A job pre-trains (or loads from the cache) the network its agent asks for (ProtoNet's
encoder, or MAML's or ANIL's initialisation: ``AgentEntry.pretraining``) on the stream's
pre-training distributions, hands the agent a copy, and runs the stream prequentially
(``lifelong.prequential``). Its record holds the per-step accuracies and the stream's ground
truth, so every figure of the summary can be recomputed by hand from ``results.json``.

A finished job writes its record to ``checkpoints/<agent>__seed<k>.json`` (as task-sequence
jobs do, ``lifelong.checkpoint``); a resumed run reads those back and runs only the jobs
without one, each from its start. A job seeds everything it draws from at its start and
works on its own copy of the encoder, so a resumed run's records equal an uninterrupted
run's, wall times apart. Within a job, the learner and the job's progress are saved every
``checkpoint_every_s`` seconds (``lifelong.switching_checkpoint``); a resumed job goes on
from its last checkpoint, and its record equals an uninterrupted job's, wall time apart.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from lifelong.agents import (
    AgentContext,
    StreamFacts,
    agent_options,
    get_agent,
    make_agent,
    settings_record,
)
from lifelong.budget import KINDS
from lifelong.checkpoint import JobFiles, read_job_result, write_job_result
from lifelong.config import RunConfig, config_to_dict
from lifelong.distribution_matrix import MatrixProbe
from lifelong.evaluation import make_evaluator
from lifelong.io import atomic_path, atomic_write_text
from lifelong.maml import MAMLSettings, pretrain_maml
from lifelong.methods.avalanche_online import AvalancheOnlineLearner, online_classifier
from lifelong.prequential import (
    prequential_accuracies,
    prequential_metrics,
    retrieval_precision,
)
from lifelong.pretraining import ProtoNetSettings, pretrain_protonet
from lifelong.records import ResultsFile, SwitchingRun, SwitchingSummary, runs_from_dicts
from lifelong.report import aligned_table
from lifelong.saved_agents import SavableLearner, save_agent
from lifelong.switching_checkpoint import (
    OnlineProgress,
    load_online_checkpoint,
    save_online_checkpoint,
)
from streams.switching import SwitchingStream

__all__ = ["SWITCHING_SUMMARY_KEYS", "format_switching_table", "mean_std", "run_switching"]

SWITCHING_SUMMARY_KEYS = tuple(SwitchingSummary.required_keys())
"""Keys of every summary row of a task-switching run."""

_COLUMNS = (
    "Agent", "Seeds", "OCA (%)", "1st visit", "Revisit (%)", "Pretrain", "New", "OOD",
    "Matrix ACC", "BWT", "FWT",
)
_RECOVERY_LAGS = 50
_MATRIX_POINTS = 10
"""Points of the accuracy matrix over distributions after the one before the stream."""


def run_switching(
    config: RunConfig,
    stream_for: Any,
    out_dir: Path,
    *,
    progress: bool,
    environment: Mapping[str, Any],
) -> dict[str, Any]:
    """Run every agent on every seed's stream, write the outputs, return the results.

    Args:
        config: The resolved configuration (agents already checked against the scenario).
        stream_for: ``stream_for(seed)`` builds (or reuses) the stream of a seed.
        out_dir: Output folder.
        progress: Show progress bars on stderr.
        environment: Versions and device, saved with the results.

    Returns:
        The results dict written to ``results.json``.
    """
    runs: list[SwitchingRun] = []
    first: SwitchingStream = stream_for(config.seeds[0])
    with tqdm(
        total=len(config.seeds) * len(config.agents) * first.n_steps,
        unit="steps",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for seed in config.seeds:
            stream = stream_for(seed)
            result_files = {a: JobFiles.of(out_dir, a, seed).result for a in config.agents}
            # Read up front, so that an unreadable record stops the run before any job.
            done = {a: read_job_result(path, SwitchingRun) for a, path in result_files.items()}
            # Pre-trained (or read from the cache) only if a job needs it, once per kind.
            encoders: dict[str, torch.nn.Module] = {}
            for agent in config.agents:
                bar.set_description(f"{agent} seed {seed}")
                record = done[agent]
                if record is None:
                    kind = get_agent(config.registered_agent(agent)).pretraining
                    if kind not in encoders:
                        encoders[kind] = _pretrained(config, stream, seed, progress, kind)
                    record = _job(config, stream, encoders[kind], agent, seed, out_dir)
                    write_job_result(result_files[agent], record)
                # A kill between writing the record and deleting the checkpoint leaves both.
                shutil.rmtree(JobFiles.of(out_dir, agent, seed).checkpoint, ignore_errors=True)
                runs.append(record)
                bar.update(stream.n_steps)
    results = ResultsFile(
        stream=first.name,
        scenario=first.scenario.value,
        config=config_to_dict(config),
        runs=runs,
        summary=summarize_switching_runs(runs),
        extras={
            "n_steps": first.n_steps,
            "ways": first.ways,
            "shots": first.shots,
            "p": first.p_stay,
            "labels": first.labels,
            "boundaries": first.boundaries,
            "distributions": [{"name": d.name, "kind": d.kind.value} for d in first.distributions],
            "evaluated_on": "prequential",
            "environment": dict(environment),
        },
    )
    write_switching_outputs(results, out_dir)
    return results.to_dict()


def _pretrained(
    config: RunConfig, stream: SwitchingStream, seed: int, progress: bool, kind: str
) -> torch.nn.Module:
    cache = Path(config.cache_dir) if config.cache_dir else None
    torch.set_num_threads(config.threads)
    episodes = config.train.pretrain_episodes
    if kind == "protonet":
        return pretrain_protonet(
            stream.pretraining(), ProtoNetSettings(episodes=episodes), seed,
            cache_dir=cache, progress=progress,
        )
    settings = MAMLSettings.of(kind, episodes=episodes)
    return pretrain_maml(stream.pretraining(), settings, seed, cache_dir=cache, progress=progress)


def _job(
    config: RunConfig,
    stream: SwitchingStream,
    encoder: torch.nn.Module,
    agent: str,
    seed: int,
    out_dir: Path,
) -> SwitchingRun:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    facts = StreamFacts(stream.scenario, stream.n_steps, stream.ways, stream.input_shape)
    device = torch.device("cpu")
    online_strategy = get_agent(config.registered_agent(agent)).online_strategy
    model = copy.deepcopy(encoder)
    context = AgentContext(
        online_classifier(model, facts) if online_strategy else model,
        config.train,
        facts,
        device,
        make_evaluator(ram_interval_s=None, metrics=False),
        (),
        seed,
        agent_options(config.registered_agent(agent), config.agent_options.get(agent, {})),
    )
    checkpoint = JobFiles.of(out_dir, agent, seed).checkpoint
    save_facts: dict[str, Any] = {
        "name": agent, "seed": seed, "encoder_width": ProtoNetSettings().width,
        "input_shape": stream.input_shape,
    }
    learner, progress, probe = _start(config, context, stream, agent, checkpoint, online_strategy)
    checkpointer = _Checkpointer(
        checkpoint, learner, progress, probe, config.checkpoint_every_s, save_facts
    )
    prequential_accuracies(stream, learner, checkpointer, start=progress.steps_done)
    accuracies = np.asarray(checkpointer.progress.accuracies, dtype=np.float64)  # every step's
    wall = checkpointer.wall_time_s()
    record = {
        "agent": agent,
        "seed": seed,
        **prequential_metrics(accuracies, stream.truth, _RECOVERY_LAGS),
        **probe.record(),
        "ground_truth": stream.truth.as_dict(),
        "wall_time_s": wall,
        **settings_record(config.variants, agent, context.options),
    }
    # What an agent reports of itself: bytes it keeps (none if it says nothing), its decisions.
    by_kind = getattr(learner, "memory_bytes_by_kind", None)
    kinds = by_kind() if callable(by_kind) else {}
    record["memory_bytes_by_kind"] = {kind: int(kinds.get(kind, 0)) for kind in KINDS}
    record["memory_bytes"] = sum(record["memory_bytes_by_kind"].values())
    decisions = getattr(learner, "decisions", None)
    if decisions is not None:
        record["decisions"] = dict(decisions)
    saved = Path("agents") / f"{agent}__seed{seed}"
    if hasattr(learner, "save_state"):
        save_agent(cast(SavableLearner, learner), out_dir / saved, **save_facts)
        record["saved_agent"] = str(saved)
    trace = getattr(learner, "retrieval_trace", None)
    if trace is not None:
        record["retrieval"] = retrieval_precision(
            trace["observed"], trace["retrieved"], stream.truth
        )
    # The caller writes the record, then deletes the checkpoint.
    return SwitchingRun.from_dict(record, f"job {agent!r} seed {seed}")


def _start(
    config: RunConfig,
    context: AgentContext,
    stream: SwitchingStream,
    agent: str,
    checkpoint: Path,
    online_strategy: bool,
) -> tuple[Any, OnlineProgress, MatrixProbe]:
    """A new learner from its factory, or the one a checkpoint holds, with the progress.

    ``online_strategy``: the factory returns an Avalanche strategy, wrapped here to run online.
    """
    every = max(stream.n_steps // _MATRIX_POINTS, 1)
    resumed = load_online_checkpoint(checkpoint)
    if resumed is None:
        learner = make_agent(config.registered_agent(agent), context)
        if online_strategy:
            learner = AvalancheOnlineLearner(learner, context.stream)
        return learner, OnlineProgress(0, [], [], 0.0, 0.0), MatrixProbe(stream, learner, every)
    learner, progress = resumed
    kept = (progress.matrix_rows, progress.probe_seconds)
    return learner, progress, MatrixProbe(stream, learner, every, resumed=kept)


class _Checkpointer:
    """After every step: the matrix's probe, then a checkpoint once one is due.

    Its clock counts the learner's time only: the probes' and the saves' are left out.
    """

    def __init__(
        self,
        folder: Path,
        learner: Any,
        progress: OnlineProgress,
        probe: MatrixProbe,
        every_s: float,
        facts: dict[str, Any],
    ) -> None:
        self.folder, self.learner, self.progress, self.probe = folder, learner, progress, probe
        self.every_s, self.facts = every_s, facts
        self.savable = hasattr(learner, "save_state")
        self.probe_start = probe.seconds
        self.started = time.perf_counter()
        self.saving_s = 0.0
        self.last_save = self.started

    def wall_time_s(self) -> float:
        """The learner's time, this session's and earlier sessions' together."""
        elapsed = time.perf_counter() - self.started - self.saving_s
        return self.progress.wall_time_s + elapsed - (self.probe.seconds - self.probe_start)

    def __call__(self, step: int, accuracy: float) -> None:
        """Probe, record the step, and save a checkpoint if ``every_s`` has passed."""
        self.probe(step)
        self.progress.accuracies.append(accuracy)
        if not self.savable or time.perf_counter() - self.last_save < self.every_s:
            return
        began = time.perf_counter()
        rows: list[list[float | None]] = [list(row) for row in self.probe.rows]
        saved = OnlineProgress(
            step + 1, list(self.progress.accuracies), rows, self.probe.seconds, self.wall_time_s()
        )
        save_online_checkpoint(self.folder, self.learner, saved, **self.facts)
        self.last_save = time.perf_counter()
        self.saving_s += self.last_save - began


def summarize_switching_runs(
    runs: Sequence[SwitchingRun | Mapping[str, Any]],
) -> list[SwitchingSummary]:
    """One row per agent: means (and sample stds) over seeds, keys ``SWITCHING_SUMMARY_KEYS``.

    Raises:
        ValueError: If ``runs`` is empty, a run is malformed or an (agent, seed) repeats.
    """
    records = cast(list[SwitchingRun], runs_from_dicts(runs, SwitchingRun))
    groups: dict[str, list[SwitchingRun]] = {}
    for run in records:
        groups.setdefault(run.agent, []).append(run)
    rows = []
    for agent, agent_runs in groups.items():
        row: dict[str, Any] = {"agent": agent, "n_seeds": len(agent_runs)}
        for name, values in (
            ("oca", [r.oca for r in agent_runs]),
            ("oca_revisit", [r.oca_revisit for r in agent_runs]),
        ):
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
        row["oca_first_visit_mean"] = mean_std([r.oca_first_visit for r in agent_runs])[0]
        for kind in ("pretrain", "new", "ood"):
            row[f"oca_{kind}_mean"] = mean_std([r.oca_by_type[kind] for r in agent_runs])[0]
        row["wall_time_s_mean"] = float(np.mean([r.wall_time_s for r in agent_runs]))
        for name in ("acc", "forgetting", "bwt", "fwt"):
            values = [getattr(r, f"matrix_{name}") for r in agent_runs]
            row[f"matrix_{name}_mean"] = mean_std(values)[0]
        rows.append(SwitchingSummary(**row))
    return rows


def format_switching_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """The terminal table of a task-switching run: OCA first, in percent."""
    return aligned_table(_COLUMNS, [_cells(row) for row in summary])


def write_switching_outputs(results: ResultsFile, out_dir: Path) -> None:
    """``results.json``, ``summary.csv``, ``summary.md`` and the two PNGs, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = [row.to_dict() for row in results.summary]
    atomic_write_text(out_dir / "results.json", json.dumps(results.to_dict(), indent=2) + "\n")
    atomic_write_text(out_dir / "config.json", json.dumps(results.config, indent=2) + "\n")
    header = ",".join(SWITCHING_SUMMARY_KEYS)
    lines = [header] + [
        ",".join("" if row[k] is None else str(row[k]) for k in SWITCHING_SUMMARY_KEYS)
        for row in summary
    ]
    atomic_write_text(out_dir / "summary.csv", "\n".join(lines) + "\n")
    table = format_switching_table(summary)
    atomic_write_text(out_dir / "summary.md", f"```\n{table}\n```\n")
    runs = [run.to_dict() for run in results.runs]
    for name, draw in (
        ("recovery_curves.png", _draw_recovery),
        ("prequential_accuracy.png", _draw_prequential),
    ):
        figure = draw(runs)
        with atomic_path(out_dir / name) as tmp:
            figure.savefig(tmp, format="png", dpi=110)


def _draw_recovery(runs: Sequence[Mapping[str, Any]]) -> Figure:
    figure = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, sharey=True)
    agents = list(dict.fromkeys(r["agent"] for r in runs))
    for ax, visit in zip(axes, ("first_visit", "revisit"), strict=True):
        for agent in agents:
            curves = [r["recovery_curve"][visit] for r in runs if r["agent"] == agent]
            mean = [mean_std([c[k] for c in curves])[0] for k in range(len(curves[0]))]
            ax.plot(range(len(mean)), [np.nan if m is None else m for m in mean], label=agent)
        ax.set_title("first visits" if visit == "first_visit" else "revisits")
        ax.set_xlabel("steps since the switch")
        ax.grid(alpha=0.25)
    axes[0].set_ylabel("accuracy on the incoming batch")
    axes[1].legend(fontsize="small")
    return figure


def _draw_prequential(runs: Sequence[Mapping[str, Any]]) -> Figure:
    seed = runs[0]["seed"]
    shown = [r for r in runs if r["seed"] == seed]
    figure = Figure(figsize=(12, 4), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    window = 10
    for run in shown:
        values = np.asarray(run["step_accuracy"])
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window - 1, len(values)), smooth, lw=1, label=run["agent"])
    switches = np.flatnonzero(shown[0]["ground_truth"]["switch"])
    for t in switches:
        ax.axvline(float(t), color="grey", lw=0.5, alpha=0.4)
    ax.set_title(f"test-then-train accuracy, seed {seed} ({window}-step mean; lines: switches)")
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize="small", loc="lower right")
    return figure


def _cells(row: Mapping[str, Any]) -> list[str]:
    def pct(key: str) -> str:
        value = row[key]
        return "-" if value is None else f"{100 * value:.1f}"

    def pm(key: str) -> str:
        if row[f"{key}_mean"] is None:
            return "-"
        return f"{100 * row[f'{key}_mean']:.1f} ± {100 * row[f'{key}_std']:.1f}"

    return [
        row["agent"],
        str(row["n_seeds"]),
        pm("oca"),
        pct("oca_first_visit_mean"),
        pm("oca_revisit"),
        pct("oca_pretrain_mean"),
        pct("oca_new_mean"),
        pct("oca_ood_mean"),
        pct("matrix_acc_mean"),
        pct("matrix_bwt_mean"),
        pct("matrix_fwt_mean"),
    ]


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std (0 for one value) of the finite values; ``None`` for none."""
    present = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not present:
        return None, None
    std = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
    return float(np.mean(present)), std
