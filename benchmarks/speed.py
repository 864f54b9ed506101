"""How far the harness is from the cost of its own work: jobs against a plain-torch bound.

One job is one agent on one seed over GEM-protocol rotated MNIST (20 tasks x 1,000 training
examples, batch 10, one epoch, MLP 784-100-100-10, SGD at lr 0.1, memory 200 samples) with
the full accuracy matrix (21 evaluations of the 20 test sets). The bound is the same work
written in plain torch below: experience replay's 2,000 SGD steps, each on the incoming batch
plus 10 replayed samples, and the 21 x 20 evaluations, batched, in inference mode. Each
harness job's ratio is its wall time over the bound's, both measured in this one process on
one torch thread, one after the other (run nothing else CPU-heavy at the same time).

Then a sweep's throughput: the same jobs, two seeds each, through ``lifelong.run`` with
``--executor process --workers 2`` (jobs per minute, process start-up included).

    python benchmarks/speed.py --data-root ../shared/data/mnist
    python benchmarks/speed.py --evaluator avalanche --out benchmarks/results/speed_avalanche.json

Prints a table and writes ``benchmarks/results/speed.json``. Works on older versions of the
harness too (no ``evaluator`` setting there: pass ``--evaluator avalanche``), which is how the
"before" figures were taken.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from lifelong import RunConfig, StreamConfig, TrainConfig, run
from lifelong.run import Job, build_stream, run_job, seed_everything

try:
    from streams import dataset_tensors
except ImportError:  # a harness from before the tensor evaluator (the "before" figures)

    def dataset_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
        items = [dataset[i] for i in range(len(dataset))]
        return torch.stack([i[0] for i in items]), torch.tensor([int(i[1]) for i in items])

AGENTS = ("naive", "replay", "der", "lifelong")
MEMORY_SIZE = 200
REPLAY_BATCH = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data/mnist")
    parser.add_argument("--agents", default=",".join(AGENTS))
    parser.add_argument("--evaluator", default="tensor", choices=("tensor", "avalanche"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--repeats", type=int, default=2, help="timings per job; the best is kept")
    parser.add_argument("--skip-sweep", action="store_true", help="leave out the process pool")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    agents = tuple(a for a in args.agents.split(",") if a)
    config = _config(args.data_root, agents, args.evaluator, args.device)

    bound = min((_reference(config) for _ in range(args.repeats)), key=lambda t: t["total_s"])
    rows = []
    for agent in agents:
        timings = [_harness(config, agent) for _ in range(args.repeats)]
        best = min(timings, key=lambda t: t["wall_time_s"])
        rows.append({"agent": agent, **best, "ratio": best["wall_time_s"] / bound["total_s"]})
    sweep = None if args.skip_sweep else _sweep(config, agents)

    report = {
        "job": "rotated-mnist, GEM protocol, 20 tasks, memory 200, seed 0, full accuracy matrix",
        "evaluator": args.evaluator,
        "device": str(_device(args.device)),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "torch_threads": 1,
        "bound": bound,
        "harness": rows,
        "sweep": sweep,
    }
    print(_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"written to {args.out}")


def _config(data_root: str, agents: tuple[str, ...], evaluator: str, device: str) -> RunConfig:
    settings: dict[str, Any] = {
        "stream": StreamConfig(name="rotated-mnist", data_root=data_root),
        "agents": agents,
        "seeds": (0,),
        "train": TrainConfig(memory_size=MEMORY_SIZE),
        "device": device,
    }
    if "evaluator" in {f.name for f in dataclasses.fields(RunConfig)}:
        settings["evaluator"] = evaluator
    elif evaluator != "avalanche":
        raise SystemExit("this harness has no tensor evaluator; pass --evaluator avalanche")
    return RunConfig(**settings)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _harness(config: RunConfig, agent: str) -> dict[str, float]:
    build_stream(config.stream, 0)  # cached: the stream's build is not part of a job
    began = time.perf_counter()
    record = run_job(Job(config, agent, 0)).to_dict()
    total = time.perf_counter() - began
    keys = ("train_time_s", "eval_time_s", "avalanche_train_time_s", "avalanche_eval_time_s")
    return {
        "wall_time_s": total,
        "acc": float(record["acc"]),
        **{key: float(record[key]) for key in keys if key in record},
    }


def _reference(config: RunConfig) -> dict[str, float]:
    """Experience replay with the full accuracy matrix, in plain torch: the lower bound."""
    stream = build_stream(config.stream, 0)
    device = _device(config.device)
    train = [_on(dataset_tensors(e.dataset), device) for e in stream.benchmark.train_stream]
    test = [_on(dataset_tensors(e.dataset), device) for e in stream.benchmark.test_stream]
    seed_everything(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
        nn.Linear(100, 10),
    ).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.train.lr)
    stored: list[tuple[torch.Tensor, torch.Tensor]] = []  # per task, as replay's buffer
    memory_x = memory_y = None
    train_s = eval_s = 0.0
    eval_s += _evaluate(model, test)
    for x, y in train:
        began = time.perf_counter()
        order = torch.randperm(len(y), device=device)
        for start in range(0, len(y), config.train.batch_size):
            batch = order[start : start + config.train.batch_size]
            bx, by = x[batch], y[batch]
            if memory_y is not None:
                drawn = torch.randint(len(memory_y), (REPLAY_BATCH,), device=device)
                bx, by = torch.cat([bx, memory_x[drawn]]), torch.cat([by, memory_y[drawn]])
            optimizer.zero_grad(set_to_none=True)
            cross_entropy(model(bx), by).backward()
            optimizer.step()
        # The memory split evenly over the tasks seen, as Avalanche's replay buffer keeps it.
        chosen = torch.randperm(len(y), device=device)[:MEMORY_SIZE]
        stored.append((x[chosen], y[chosen]))
        per_task = MEMORY_SIZE // len(stored)
        stored = [(sx[:per_task], sy[:per_task]) for sx, sy in stored]
        memory_x = torch.cat([sx for sx, _ in stored])
        memory_y = torch.cat([sy for _, sy in stored])
        train_s += time.perf_counter() - began
        eval_s += _evaluate(model, test)
    return {"train_s": train_s, "eval_s": eval_s, "total_s": train_s + eval_s}


def _on(pair: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> tuple[Any, Any]:
    return pair[0].to(device), pair[1].to(device)


def _evaluate(model: nn.Module, test: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    began = time.perf_counter()
    model.eval()
    with torch.inference_mode():
        for x, y in test:
            correct = 0
            for start in range(0, len(y), 256):
                logits = model(x[start : start + 256])
                correct += int((logits.argmax(1) == y[start : start + 256]).sum())
    model.train()
    return time.perf_counter() - began


def _sweep(config: RunConfig, agents: tuple[str, ...]) -> dict[str, float]:
    seeds = (0, 1)
    with tempfile.TemporaryDirectory() as out:
        sweep = dataclasses.replace(
            config, agents=agents, seeds=seeds, executor="process", workers=2, out=out
        )
        began = time.perf_counter()
        run(sweep, progress=False)
        seconds = time.perf_counter() - began
    jobs = len(agents) * len(seeds)
    return {"jobs": jobs, "workers": 2, "seconds": seconds, "jobs_per_minute": 60 * jobs / seconds}


def _table(report: dict[str, Any]) -> str:
    bound = report["bound"]
    lines = [
        f"plain-torch bound: {bound['total_s']:.2f} s "
        f"(training {bound['train_s']:.2f} s, evaluation {bound['eval_s']:.2f} s)",
        f"{'agent':<10} {'wall (s)':>9} {'train (s)':>10} {'eval (s)':>9} {'x bound':>8} "
        f"{'ACC':>6}",
    ]
    for row in report["harness"]:
        train = row.get("train_time_s", row.get("avalanche_train_time_s", float("nan")))
        evaluation = row.get("eval_time_s", row.get("avalanche_eval_time_s", float("nan")))
        lines.append(
            f"{row['agent']:<10} {row['wall_time_s']:>9.2f} {train:>10.2f} {evaluation:>9.2f} "
            f"{row['ratio']:>8.2f} {100 * row['acc']:>6.1f}"
        )
    if report["sweep"]:
        sweep = report["sweep"]
        lines.append(
            f"sweep: {sweep['jobs']} jobs, --executor process --workers 2: "
            f"{sweep['seconds']:.1f} s, {sweep['jobs_per_minute']:.1f} jobs/min"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
