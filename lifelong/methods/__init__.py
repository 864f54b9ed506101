"""The established strategies every run compares against, one module per method.

Importing this package registers, in ``lifelong.agents``:

============  ================================================  =============================
name          what it is                                        memory (``memory_size`` = M)
============  ================================================  =============================
naive         plain fine-tuning, the lower bound                none
cumulative    retrains on all data seen so far, upper bound     all past data (not bounded)
ewc           Elastic Weight Consolidation                      none (one penalty per task)
si            Synaptic Intelligence                             none
lwf           Learning without Forgetting                       none (a copy of the model)
replay        experience replay (ER)                            M samples, balanced per task
replay-coded  ER over FAISS-coded samples                       M samples (coded), or bytes
gem           Gradient Episodic Memory                          M // n_tasks samples per task
agem          Averaged GEM                                      M // n_tasks samples per task
der           Dark Experience Replay++ (single-head only)       M samples and their logits
er-ace        ER with asymmetric cross-entropy                  M samples, balanced per class
mir           Maximally Interfered Retrieval                    M samples, balanced per class
lamaml        Look-ahead MAML (``lamaml_v2``)                   M samples, reservoir
mer           Meta-Experience Replay                            M samples, reservoir
gdumb         GDumb: retrained on a class-balanced memory       M samples, balanced per class
icarl         iCaRL (class-incremental only)                    M exemplars, herded per class
expert-gate   Expert Gate (single-head only)                    none (an expert + AE per task)
finetune      online SGD (task-switching streams)               none
protonet      ProtoNet prototypes (task-switching streams)      the current task's prototypes
maml          MAML init, adapted to each batch (switching)      fast weights (one network)
anil          ANIL init, head adapted to each batch             fast weights (one head)
cmaml         Continual-MAML, OSAKA (task-switching streams)    a segment's batches, fast weights
============  ================================================  =============================

A method is one module: its hyperparameter dataclass (each field with the paper or script its
value comes from), its factory and its ``register_agent`` call. ``common`` holds what they
share (constructor arguments, the memory budget); ``avalanche_fixes`` every workaround of
Avalanche 0.6; ``online`` what the task-switching learners share. To add a method, add a module
here and import it below, or register it from outside the package (README, "Your own agent").

"GEM protocol" in the hyperparameter docstrings means MNIST Rotations / Permutations, 20 tasks
x 1,000 examples, one epoch, batch 10, MLP 784-100-100-10, SGD lr 0.1 (../shared/DESIGN.md);
where a paper gives values for several benchmarks, the permuted-MNIST (or Split-MNIST for DER)
value at that protocol is the one kept, and the docstring says so.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

# Importing a method's module registers it.
from lifelong.methods import (  # noqa: F401
    agem,
    cmaml,
    cumulative,
    der,
    er_ace,
    ewc,
    expert_gate,
    finetune,
    gdumb,
    gem,
    icarl,
    lamaml,
    lwf,
    maml,
    mer,
    mir,
    naive,
    protonet,
    replay,
    replay_coded,
    si,
)
from lifelong.methods.avalanche_fixes import SynapticIntelligencePenalty, quiet_library_warnings
from lifelong.methods.common import common_arguments, stored_samples

__all__ = [
    "BASELINE_HPARAMS",
    "SynapticIntelligencePenalty",
    "common_arguments",
    "quiet_library_warnings",
    "stored_samples",
]

BASELINE_HPARAMS: Mapping[str, object] = types.MappingProxyType(
    {
        "ewc": ewc.EWCHParams(),
        "si": si.SIHParams(),
        "lwf": lwf.LwFHParams(),
        "replay": replay.ReplayHParams(),
        "replay-coded": replay_coded.ReplayCodedHParams(),
        "gem": gem.GEMHParams(),
        "agem": agem.AGEMHParams(),
        "der": der.DERHParams(),
        "er-ace": er_ace.ERACEHParams(),
        "mir": mir.MIRHParams(),
        "lamaml": lamaml.LaMAMLHParams(),
        "mer": mer.MERHParams(),
        "gdumb": gdumb.GDumbHParams(),
        "expert-gate": expert_gate.ExpertGateHParams(),
    }
)
"""Each baseline's published hyperparameters, by agent name; methods without any are absent."""
