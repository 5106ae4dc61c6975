"""One frozen base model under several named LoRA adapters: the policy, PPO's value function, the reward model,
and the reference as the base with every adapter disabled.

Four models cost one copy of the base weights plus a few adapters. Nothing is ever merged into the base: that
would change the reference and the reward model with it. PEFT's `set_adapter` also marks only the adapter it
activates as trainable; `use` puts back the run's own choice (the policy and value adapters train, the reward
adapter never does), so a forward under one adapter never freezes another one that is being optimised.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn

POLICY = "default"  # PEFT's default name: the policy adapter saves to the adapter folder itself, as DPO's does
VALUE = "value"
REWARD = "reward"


class SharedBase:
    """A PEFT model whose adapters are switched by name; `trainable` names those the optimizer updates."""

    def __init__(self, peft_model: nn.Module, trainable: Sequence[str] = (POLICY,)):
        self.model = peft_model
        self.trainable = tuple(trainable)
        self._active = peft_model.active_adapter
        self._find_layers()

    @property
    def active(self) -> str:
        """The adapter forwards run through."""
        return self._active

    @property
    def names(self) -> list[str]:
        return list(self.model.peft_config)

    def _find_layers(self) -> None:
        # PEFT's own set_adapter walks every module of the model twice per switch, which costs more than a
        # forward of a small model; the adapter layers are found once (again whenever an adapter is added)
        from peft.tuners.tuners_utils import BaseTunerLayer

        self._layers = [m for m in self.model.modules() if isinstance(m, BaseTunerLayer)]

    def use(self, name: str) -> None:
        """Make `name` the adapter every forward runs through (what PEFT's set_adapter does, on the layers found
        once, and leaving which adapters train as the run set it)."""
        if self.active == name:
            return
        if name not in self.model.peft_config:
            raise KeyError(f"no adapter named {name!r} (adapters: {', '.join(self.names)})")
        for layer in self._layers:
            layer.set_adapter(name)
        self._apply_grads()
        # what PeftModel.set_adapter records besides the layers (saving and disabling read it)
        self.model.active_adapter = self.model.base_model.active_adapter = name
        self._active = name

    @contextmanager
    def adapter(self, name: str) -> Iterator[None]:
        """Forwards under adapter `name`, then back to the one active before."""
        previous = self.active
        self.use(name)
        try:
            yield
        finally:
            self.use(previous)

    @contextmanager
    def reference(self) -> Iterator[None]:
        """Forwards through the base alone: every adapter disabled. PEFT re-enables them with its set_adapter,
        which freezes every adapter but the active one: the run's trainable adapters are put back after."""
        try:
            with self.model.disable_adapter():
                yield
        finally:
            self._apply_grads()

    def _apply_grads(self) -> None:
        """The trainable adapters require gradients, the others not (on the layers found once)."""
        trainable = [n for n in self.names if n in self.trainable]
        frozen = [n for n in self.names if n not in self.trainable]
        for layer in self._layers:
            layer.set_requires_grad(trainable, True)
            if frozen:
                layer.set_requires_grad(frozen, False)

    def load(self, name: str, folder, trainable: bool) -> None:
        """Add the PEFT adapter saved in `folder` under `name` (on the same base weights)."""
        self.model.load_adapter(str(folder), adapter_name=name, is_trainable=trainable)
        if trainable and name not in self.trainable:
            self.trainable = (*self.trainable, name)
        self._restore_grads()

    def add(self, name: str, lora_config) -> None:
        """Add a fresh adapter (LoRA's B = 0: the base's own function at first) under `name`, trainable."""
        self.model.add_adapter(name, lora_config)
        if name not in self.trainable:
            self.trainable = (*self.trainable, name)
        self._restore_grads()

    def _restore_grads(self) -> None:
        self._find_layers()
        self._active = self.model.active_adapter
        self._apply_grads()

    def parameters_of(self, name: str) -> list[nn.Parameter]:
        """The adapter's own weights (those whose name carries `.name.`, PEFT's naming)."""
        return [p for n, p in self.model.named_parameters() if f".{name}." in n]
