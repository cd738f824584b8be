"""YAML experiment files -> validated, frozen config objects, split into identity and execution.

One schema serves `pipeline.train` (one model) and `pipeline.search` (a search over many).
Unknown keys, wrong types, unknown names and out-of-range values are rejected with a
one-line `PipelineError` naming the file and the key.

The split that resume relies on: `identity()` is everything the results depend on (data,
model, optimizer, training, schedule, callbacks, folds, search space, seed), compared in
full when a run is resumed; `execution` is how the run executes (backend, scheduler,
worker processes, recycling, fusing, the failure limit), which a resume may change.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Any, Literal, Sequence, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ..core.errors import PipelineError
from .vocabulary import (CheckpointSpec, EarlyStoppingSpec, NetworkSpec, OptimizerSpec, ScheduleSpec, Spec,
                         TrainingSpec, one_of)

DATASET_NAMES = ("mnist", "mnist-sample", "digits", "file", "vertical", "spiral", "quadratic")
STRATEGIES = ("grid", "random", "halving-grid", "halving-random", "tpe", "pbt")
REGRESSION_DATASETS = ("quadratic",)
# scikit-learn scorers that work for every number of classes (binary-only ones such as 'f1' do not).
SCORERS = {
    "classification": ("accuracy", "balanced_accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro",
                       "precision_weighted", "recall_macro", "recall_weighted", "neg_log_loss"),
    "regression": ("neg_mean_squared_error", "neg_root_mean_squared_error", "neg_mean_absolute_error",
                   "neg_median_absolute_error", "r2", "explained_variance"),
}


class DataConfig(Spec):
    """Which dataset, and how it is split and subsampled."""

    name: str = "mnist"
    path: str | None = None
    test_size: float = Field(0.2, gt=0, lt=1)
    validation_split: float = Field(0.1, ge=0, lt=1)
    train_samples: int | None = Field(None, gt=0)
    test_samples: int | None = Field(None, gt=0)
    # Generated sets: points per class (vertical, spiral; default 100) or in all (quadratic; default 1000).
    samples: int | None = Field(None, gt=0)
    noise: float | None = Field(None, ge=0)
    x1_range: tuple[float, float] = (-5.0, 5.0)
    x2_range: tuple[float, float] = (-10.0, 10.0)

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        return one_of(name, DATASET_NAMES, "dataset")

    @property
    def task(self) -> str:
        """'regression' or 'classification', known from the dataset name before loading it."""
        return "regression" if self.name in REGRESSION_DATASETS else "classification"

    @model_validator(mode="after")
    def _path_with_file(self) -> "DataConfig":
        if self.name == "file" and not self.path:
            raise ValueError("data.name 'file' needs data.path (a .npz file or a folder of IDX files)")
        if self.path and self.name != "file":
            raise ValueError(f"data.path is only used with data.name 'file', not '{self.name}'")
        return self


class CallbacksConfig(Spec):
    early_stopping: EarlyStoppingSpec = EarlyStoppingSpec()
    checkpoint: CheckpointSpec = CheckpointSpec()
    terminate_on_nan: bool = True


class CVConfig(Spec):
    folds: int = Field(3, ge=2)
    shuffle: bool = True
    # Repeated k-fold: the folds drawn `repeats` times, each with another shuffle, for folds x
    # repeats splits: more paired scores for comparing the best candidate with the others
    # (the corrected t-test in results.csv and the report).
    repeats: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _repeats_shuffle(self) -> "CVConfig":
        if self.repeats > 1 and not self.shuffle:
            raise ValueError(f"cv.repeats {self.repeats} draws the folds anew each time, which needs cv.shuffle: true")
        return self

    @property
    def splits(self) -> int:
        """How many train/test splits each candidate is scored on."""
        return self.folds * self.repeats

    def describe(self) -> str:
        """The splits as a reader counts them: "3 folds", or "3 folds x 2 repeats"."""
        return f"{self.folds} folds" + (f" x {self.repeats} repeats" if self.repeats > 1 else "")


ParamValues = Union[list, dict]
# What population-based training may change in a member while it trains: settings the engine
# holds per tower that leave the weights' shapes alone (the optimizer's kind, widths, depth,
# activation and initializer stay with the member from its first epoch).
PERTURBABLE = ("optimizer__learning_rate", "optimizer__momentum", "optimizer__rho", "optimizer__beta_1",
               "optimizer__beta_2", "optimizer__epsilon", "optimizer__decay", "model__dropout", "model__l1",
               "model__l2")


class PruningConfig(Spec):
    """Asynchronous successive halving over epochs (search.pruning): every candidate trains
    `min_epochs` epochs, then min_epochs x reduction, ... (the rungs), then training.epochs; at
    each rung only those whose mean CV score is in the top 1/reduction of all scores seen at that
    rung go on (at least one); the others are pruned there."""

    min_epochs: int = Field(gt=0)
    reduction: int = Field(3, ge=2)

    def rungs(self, epochs: int) -> list[int]:
        """The epochs at which candidates are scored and compared; the last is `epochs`."""
        rungs = []
        while (rung := self.min_epochs * self.reduction ** len(rungs)) < epochs:
            rungs.append(rung)
        return rungs + [epochs]


class PBTConfig(Spec):
    """Population-based training (search.strategy: pbt, Jaderberg et al. 2017): `population`
    members drawn from the space train together; every `interval` epochs the bottom `fraction`
    (by mean CV score) take over the weights and optimizer state of a member of the top
    `fraction` and its hyperparameters, `perturb`ed: each multiplied by one of `factors`
    (clipped to its distribution's bounds) or moved to a neighbouring value of its list, or,
    with probability `resample`, drawn anew."""

    population: int = Field(8, ge=2)
    interval: int = Field(gt=0)
    fraction: float = Field(0.25, gt=0, le=0.5)
    perturb: list[str] = Field(default_factory=list)  # empty: every searched parameter in PERTURBABLE
    factors: tuple[float, float] = (0.8, 1.2)
    resample: float = Field(0.25, ge=0, le=1)

    @field_validator("perturb")
    @classmethod
    def _perturbable(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in PERTURBABLE:
                raise ValueError(f"'{name}' cannot change while a member trains; choose from {', '.join(PERTURBABLE)}")
        return names

    @field_validator("factors")
    @classmethod
    def _positive(cls, factors: tuple[float, float]) -> tuple[float, float]:
        if min(factors) <= 0:
            raise ValueError(f"perturbation factors must be positive (got {list(factors)})")
        return factors

    def ends(self, epochs: int) -> list[int]:
        """The epochs at which members are scored and the population exploits and explores; the last is `epochs`."""
        return list(range(self.interval, epochs, self.interval)) + [epochs]

    def perturbed(self, searched: Sequence[str]) -> list[str]:
        """The parameters perturbed: those given, or every searched one that may change."""
        return list(self.perturb) or [name for name in PERTURBABLE if name in searched]


class SearchConfig(Spec):
    """What to search: the strategy and the space, in scikeras' routed parameter names."""

    strategy: str = "grid"
    params: Union[dict[str, ParamValues], list[dict[str, ParamValues]]] = Field(default_factory=dict)
    n_iter: int = Field(10, gt=0)
    # tpe: this many candidates asked of Optuna's TPE sampler, `batch` at a time (a batch trains
    # together, fused where it can be; it is part of the run's identity, as it changes what is asked).
    n_trials: int = Field(20, gt=0)
    batch: int = Field(8, gt=0)
    # tpe: CPU minutes of the search's processes on this machine (workers included, the refit
    # not): a batch starts only if the time spent plus an average batch's stays within them.
    budget_minutes: float | None = Field(None, gt=0)
    # tpe and random: prune candidates at rungs of epochs (PruningConfig); null = every candidate
    # trains all training.epochs.
    pruning: PruningConfig | None = None
    # pbt: the population and how it exploits and explores (PBTConfig); needed by strategy pbt.
    pbt: PBTConfig | None = None
    scoring: str | None = None
    resource: Literal["epochs", "n_samples"] = "epochs"
    factor: float = Field(3.0, gt=1)
    min_resources: int | None = Field(None, gt=0)
    # A search beyond this many fits (first-round candidates x folds) is refused before anything runs.
    max_fits: int = Field(10_000, gt=0)

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        return one_of(name, STRATEGIES, "search strategy")

    def grids(self) -> list[dict[str, ParamValues]]:
        """The space as a list of sub-grids (a single dict is one sub-grid)."""
        return self.params if isinstance(self.params, list) else [self.params]

    def searched(self) -> set[str]:
        """Every parameter name of the space, in any sub-grid."""
        return {name for grid in self.grids() for name in grid}


class ExecutionConfig(Spec):
    """How a search executes. None of it changes a result, so `--resume` may change any of it."""

    # Where fits train: "local" (this machine) or "dask" (the scheduler at `scheduler`, e.g.
    # tls://host:8786, or without it a LocalCluster sized to this machine).
    backend: Literal["local", "dask"] = "local"
    scheduler: str | None = None
    # The LocalCluster's Dask dashboard, on 127.0.0.1 (a free port; the link is printed). Off by
    # default: every listening port is one more way in.
    dashboard: bool = False
    # Allow an unencrypted, unauthenticated tcp:// scheduler on a network address (see _safe_scheduler).
    insecure: bool = False
    # A tls:// scheduler's CA certificate, and the certificate (+ private key, unless appended to
    # it) this search presents: the files the cluster was started with (python -m pipeline.cluster
    # certs DIR makes them). Without them, Dask's own TLS settings (distributed.comm.tls.*).
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    # Candidates that differ only inside the model train together as towers of one program
    # (pipeline/tuning/engine.py), at most max_towers at a time; fuse: false trains every fit alone.
    fuse: bool = True
    max_towers: int = Field(24, ge=2)
    # Processes that train fused groups at once (null = one per CPU core): the search's and n_jobs - 1
    # workers, each with cores / n_jobs TensorFlow threads.
    n_jobs: int | None = Field(None, gt=0)
    # Fits train in worker processes that a fresh one replaces after this many fits, or once the
    # worker's memory grew by max_memory_growth (TensorFlow leaks per traced model); 0 = in-process.
    fits_per_process: int = Field(100, ge=0)
    max_memory_growth: float = Field(0.10, gt=0)
    # This many candidate failures in a row (not infrastructure failures) abort the run; null = never.
    max_consecutive_failures: int | None = Field(10, gt=0)

    @model_validator(mode="after")
    def _safe_scheduler(self) -> "ExecutionConfig":
        """A Dask scheduler runs any pickled code its clients send, and this process unpickles
        what comes back: plain TCP to a network address lets anyone on the way, or anyone who can
        reach the port, run code on every worker and here. Refused unless `insecure`; decided from
        the address text alone (no name lookup), so nothing is sent anywhere before."""
        if self.scheduler and not self.insecure and not loopback_or_tls(self.scheduler):
            raise ValueError(f"execution.scheduler {self.scheduler}: plain tcp:// to a network address is "
                             "unencrypted and unauthenticated, and a Dask scheduler runs any code its clients send; "
                             "use a tls:// scheduler with the cluster's certificates (--tls-ca/--tls-cert/--tls-key, made by "
                             "python -m pipeline.cluster certs DIR; see README), or pass --insecure "
                             "(execution.insecure: true) if only machines you trust can reach it")
        given = [name for name in ("tls_ca", "tls_cert", "tls_key") if getattr(self, name)]
        if given and not (self.scheduler or "").startswith("tls://"):
            raise ValueError(f"execution.{given[0]}: TLS files are for a tls:// scheduler (--scheduler tls://HOST:PORT); "
                             "the local cluster makes its own certificates")
        if given and not (self.tls_ca and self.tls_cert):
            raise ValueError("execution.tls_ca and execution.tls_cert go together (--tls-ca ca.pem --tls-cert cluster.pem, "
                             "and --tls-key cluster-key.pem unless the key is in the certificate file)")
        return self


def loopback_or_tls(address: str) -> bool:
    """Whether a Dask address is TLS, or TCP to this machine (localhost, 127.0.0.0/8, ::1)."""
    scheme, _, rest = address.rpartition("://")
    if scheme == "tls":
        return True
    host = rest.rsplit(":", 1)[0] if rest.count(":") == 1 or rest.startswith("[") else rest
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: not looked up, not trusted
        return False


class ReportConfig(Spec):
    """Extra report figures: training-loss curves of the best candidate per combination of these
    parameters (e.g. [optimizer, optimizer__momentum, optimizer__nesterov]: one line per optimizer)."""

    curves_by: list[str] = Field(default_factory=list)


# Sections that do not change results: they are left out of the run's identity (so is search.max_fits).
NOT_IDENTITY = ("experiment", "output_dir", "execution", "report")


class ExperimentConfig(Spec):
    """One experiment file: the fixed settings plus, for a search, the space to search."""

    experiment: str = "experiment"
    seed: int = Field(0, ge=0, lt=2**32)  # numpy's and scikit-learn's seed range
    output_dir: str = "outputs"
    data: DataConfig = DataConfig()
    model: NetworkSpec = NetworkSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    training: TrainingSpec = TrainingSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    callbacks: CallbacksConfig = CallbacksConfig()
    cv: CVConfig = CVConfig()
    search: SearchConfig = SearchConfig()
    execution: ExecutionConfig = ExecutionConfig()
    report: ReportConfig = ReportConfig()

    @field_validator("experiment")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"'{name}' must be letters, digits, '-', '_' or '.' (it names the run folder)")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        if self.optimizer.decay and self.schedule.name != "none":
            raise ValueError(
                f"optimizer.decay and schedule '{self.schedule.name}' both set the learning rate; keep one of them"
            )
        needs_validation = [
            f"callbacks.{name}.monitor" for name, section in
            (("early_stopping", self.callbacks.early_stopping), ("checkpoint", self.callbacks.checkpoint))
            if section.enabled and section.monitor.startswith("val_")
        ]
        if needs_validation and self.data.validation_split == 0:
            raise ValueError(f"{needs_validation[0]} watches a validation metric but data.validation_split is 0; raise it")
        task = self.data.task
        for name, section in (("early_stopping", self.callbacks.early_stopping), ("checkpoint", self.callbacks.checkpoint)):
            if section.enabled and task == "regression" and "accuracy" in section.monitor:
                raise ValueError(f"callbacks.{name}.monitor: {section.monitor} is not logged for regression "
                                 f"({self.data.name}); watch loss or val_loss")
        if self.search.scoring is not None and self.search.scoring not in SCORERS[task]:
            raise ValueError(f"search.scoring: '{self.search.scoring}' is not a {task} scorer for every class count; "
                             f"choose one of {', '.join(SCORERS[task])}")
        pruning, strategy = self.search.pruning, self.search.strategy
        if pruning is not None and strategy not in ("tpe", "random"):
            raise ValueError(f"search.pruning: needs strategy tpe or random, not {strategy} "
                             "(halving strategies prune by rounds of their own)")
        if self.search.budget_minutes is not None and strategy != "tpe":
            raise ValueError(f"search.budget_minutes: needs strategy tpe (it decides before each batch of trials), "
                             f"not {strategy}; bound the search with n_iter")
        if pruning is not None and pruning.min_epochs >= self.training.epochs:
            raise ValueError(f"search.pruning.min_epochs: {pruning.min_epochs} puts the first rung at or after the "
                             f"last epoch (training.epochs {self.training.epochs}); lower it")
        if self.search.budget_minutes is not None and self.execution.scheduler:
            raise ValueError("search.budget_minutes counts the CPU time of this machine's search processes, which "
                             "an external Dask cluster's workers are not; drop the budget or execution.scheduler")
        searched = self.search.searched()
        self._pbt_consistent(searched)
        unknown = [name for name in self.report.curves_by if name not in searched]
        if unknown:
            raise ValueError(f"report.curves_by: '{unknown[0]}' is not a searched parameter; "
                             f"choose from {', '.join(sorted(searched)) or '(none: this config searches nothing)'}")
        return self

    def _pbt_consistent(self, searched: set[str]) -> None:
        pbt, strategy = self.search.pbt, self.search.strategy
        if pbt is not None and strategy != "pbt":
            raise ValueError(f"search.pbt: is for strategy pbt, not {strategy}; drop it or set search.strategy: pbt")
        if strategy != "pbt":
            return
        if pbt is None:
            raise ValueError("search.strategy pbt needs search.pbt with at least interval (epochs between "
                             "exploit/explore steps), e.g. search.pbt: {population: 8, interval: 4}")
        if pbt.interval >= self.training.epochs:
            raise ValueError(f"search.pbt.interval: {pbt.interval} epochs leaves no meeting before the last epoch "
                             f"(training.epochs {self.training.epochs}); lower it")
        missing = [name for name in pbt.perturb if name not in searched]
        if missing:
            raise ValueError(f"search.pbt.perturb: '{missing[0]}' is not in search.params; add its range there")
        if self.search.params and not pbt.perturbed(searched):
            raise ValueError(f"search.pbt: nothing to perturb; search at least one of {', '.join(PERTURBABLE)}")
        callbacks = self.callbacks
        for name, section in (("early_stopping", callbacks.early_stopping), ("checkpoint", callbacks.checkpoint)):
            if section.enabled:
                raise ValueError(f"callbacks.{name}: not with strategy pbt (a member's state carries no callback "
                                 "state across its intervals); disable it")
        if not self.execution.fuse:
            raise ValueError("execution.fuse: false: strategy pbt trains its members as towers and continues them "
                             "from their states at every interval; keep fuse: true")

    def identity(self) -> dict[str, Any]:
        """Everything the results depend on, as plain values: what a resumed run must share."""
        return self.model_dump(mode="json", exclude={**{section: True for section in NOT_IDENTITY},
                                                     "search": {"max_fits"}})

    def identity_hash(self) -> str:
        return hashlib.sha256(yaml.safe_dump(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        """The resolved config as YAML; `load_config` reads it back to an equal config."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(path: str | Path, overrides: Sequence[str] = (), search: bool = False) -> ExperimentConfig:
    """Read, override (`key.sub=value` strings, values parsed as YAML) and validate a config file.

    With `search=True` the file must also define a non-empty search space.
    """
    path = Path(path)
    if path.is_dir():
        raise PipelineError(f"config {path} is a folder: pass a YAML file with --config, e.g. configs/quick.yaml")
    if not path.is_file():
        raise PipelineError(f"config file {path} not found: pass an existing YAML file with --config")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PipelineError(f"{path}: not a text file; pass a YAML experiment file with --config") from None
    except OSError as error:
        raise PipelineError(f"{path}: cannot read it ({error.strerror}); check its permissions") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise PipelineError(f"{path}: not valid YAML{line}: fix the syntax") from None
    if raw is None:
        raise PipelineError(f"{path}: the file is empty; start from one of configs/*.yaml")
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: the top level must be a mapping of sections (experiment, data, model, ...)")
    if search and "search" not in raw and not any(o.startswith("search.") for o in overrides):
        raise PipelineError(f"{path}: this is a training config (no search section): train it with "
                            f"python -m pipeline.train --config {path}, or add a search section")
    for override in overrides:
        _apply_override(raw, override)
    try:
        return parse_config(raw, source=str(path), search=search)
    except PipelineError as error:
        problem = str(error).removeprefix(f"{path}: ")
        blamed = _override_at_fault(problem.split(":", 1)[0], overrides)
        if blamed is None:
            raise
        raise PipelineError(f"--set {blamed}: {problem}") from None


def parse_config(raw: dict[str, Any], source: str = "<config>", search: bool = False) -> ExperimentConfig:
    """Validate a raw mapping (as read from YAML) into an `ExperimentConfig`."""
    from .space import check_search_space

    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise PipelineError(f"{source}: {describe(error)}") from None
    try:
        if search or config.search.params:
            check_search_space(config)
    except ValueError as error:
        raise PipelineError(f"{source}: {error}") from None
    return config


def first_difference(a: Any, b: Any, prefix: str = "") -> str:
    """Where two plain nested values first differ, as 'key.path (a, b)'."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return f"{prefix.rstrip('.')} ({a!r} in the run, {b!r} given)"


def _override_at_fault(key: str, overrides: Sequence[str]) -> str | None:
    """The --set override about the config key a validation message names (or a parent or child of it)."""
    for override in overrides:
        given = override.partition("=")[0].strip()
        if given == key or given.startswith(key + ".") or key.startswith(given + "."):
            return override
    return None


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise PipelineError(f"--set {override!r}: expected key=value, e.g. --set cv.folds=5")
    node = raw
    *parents, leaf = key.strip().split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise PipelineError(f"--set {override!r}: '{part}' is not a section")
        node = child
    try:
        node[leaf] = yaml.safe_load(value)
    except yaml.YAMLError:
        raise PipelineError(f"--set {override!r}: the value is not valid YAML") from None


def describe(error: ValidationError) -> str:
    """The first validation problem as 'key.path: message'."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if not loc and first["type"] == "value_error":  # a whole-config check: its message names its keys
        return first["msg"].removeprefix("Value error, ")
    key = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        if len(loc) == 2 and loc[0] == "search" and loc[1] in ExecutionConfig.model_fields:
            return f"{key}: moved to execution.{loc[1]} (how a run executes, which a resume may change)"
        return f"{key}: unknown key; remove it or check its spelling"
    message = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    if first["type"] != "value_error" and not isinstance(given, (dict, list)):
        message += f" (got {given!r})"
    return f"{key}: {message}"
