"""What one search keeps between its fits: compiled models to reuse, and the stop flag.

TensorFlow 2.21 keeps 1.5-5 MB per traced model that neither `clear_session()` nor
`gc.collect()` gives back, and tracing costs time in every fit. So a search reuses the last
compiled solo model when the next fit differs only in its initial weights (another fold,
initializer, batch size or epoch count), and the last fused model when the next group has the
same shapes. The reused model starts exactly like a fresh one: weights and dropout streams
from a fresh (uncompiled, untraced) build with the same random draws, optimizer state zeroed.

A `TrainingContext` is owned by one search (or by one worker's task): two searches in one
process never share models, and nothing here is module-level state.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

from ..spec.vocabulary import NetworkSpec, OptimizerSpec
from .factory import build_model, reset_optimizer

# Arguments that only decide the initial weights; every other argument shapes the traced graph.
WEIGHTS_ONLY = ("init_mode", "bias_init")


class StopFlag:
    """Set when the user asked the search to stop (Ctrl-C); training checks it at every batch end."""

    def __init__(self):
        self._event = threading.Event()

    def request(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def raise_if_requested(self) -> None:
        if self._event.is_set():
            raise KeyboardInterrupt


class ModelCache:
    """The last compiled solo model and the last fused model, each reused while shapes stay the same;
    and the initial states of fused towers (the same for every fold), at most `max_states`."""

    def __init__(self, max_states: int = 64):
        self._solo: tuple[Hashable, Any] | None = None
        self._fused: tuple[Hashable, Any] | None = None
        self._states: OrderedDict[Hashable, Any] = OrderedDict()
        self.max_states = max_states

    def solo(self, network: NetworkSpec, optimizer: OptimizerSpec, **build: Any):
        """`build_model(network, optimizer=optimizer, **build)`, reusing the last model when only
        the initial weights differ. The result trains exactly like a fresh build."""
        key = (network.model_copy(update=dict.fromkeys(WEIGHTS_ONLY, "")), optimizer, tuple(sorted(build.items())))
        if self._solo is None or self._solo[0] != key:
            self._solo = None  # drop the old model before building the next
            self._solo = (key, build_model(network, optimizer=optimizer, **build))
            return self._solo[1]
        model = self._solo[1]
        # No session clearing (its garbage collection costs ~0.2 s): under the fit's seeding the
        # draws depend on the seed only, as for fused towers' initial states.
        fresh = build_model(network, optimizer=optimizer, compile=False, clear_session=False,
                            **{k: v for k, v in build.items() if k in ("n_features", "n_outputs", "output_activation")})
        model.set_weights(fresh.get_weights())
        for old, new in zip(model.layers, fresh.layers):  # Dropout's random state is not among the weights
            if hasattr(new, "seed_generator"):
                old.seed_generator.state.assign(new.seed_generator.state)
        reset_optimizer(model.optimizer, optimizer)
        return model

    def fused(self, key: Hashable, build: Callable[[], Any]) -> tuple[Any, bool]:
        """(the last fused model if it was built for `key`, else `build()`; whether it was reused)."""
        if self._fused is not None and self._fused[0] == key:
            return self._fused[1], True
        self._fused = None
        self._fused = (key, build())
        return self._fused[1], False

    def initial_state(self, key: Hashable, draw: Callable[[], Any]) -> Any:
        """A tower's initial state for `key`, drawn once (`draw()`) and kept for the next folds."""
        if key not in self._states:
            self._states[key] = draw()
            while len(self._states) > self.max_states:
                self._states.popitem(last=False)
        self._states.move_to_end(key)
        return self._states[key]


class TrainingContext:
    """The per-search state of training: a `ModelCache` and a `StopFlag`.

    It rides along as an estimator parameter, so scikit-learn's `clone` (which deep-copies
    parameters) must hand over the same object, not a copy; it is never pickled to another
    process: workers make their own.
    """

    def __init__(self, models: ModelCache | None = None, stop: StopFlag | None = None):
        self.models = models or ModelCache()
        self.stop = stop or StopFlag()

    def __deepcopy__(self, memo: dict) -> "TrainingContext":
        return self

    def __reduce__(self):
        raise TypeError("a TrainingContext belongs to one process; create one per worker instead of sending it")
