"""The client's checks that a user's loop calls it in the documented order, each a warning that points
at the user's line (log.warn_user):

    loss.backward(); client.step(loss); optimizer.step()        (or client.step(loss) before backward)
    client.step_begin(); ...; loss.backward(); client.step_end(loss); optimizer.step()

An optimizer.step() in the wrong place shows as quantized weights changed in place when they should
not have (Tensor._version counts in-place changes: the optimizer's updates of the latent weights).
"""
from typing import List, Optional

import torch

from .log import warn_user
from .quant import QuantLayer


class StepOrder:
    """Watches the quantized weights of one client's model for optimizer steps out of order."""

    def __init__(self, layers: List[QuantLayer]):
        self.layers = layers
        # The weights' version when the last backward reached them: an optimizer step before the first
        # client.step() shows as weights changed since (first_step).
        self._backward_version: Optional[int] = None
        self._hook: Optional[torch.utils.hooks.RemovableHandle] = None
        self._begin_version = 0

    def version(self) -> int:
        return sum(m.weight._version for m in self.layers)

    def watch(self) -> None:
        """Before the first step: note each backward's weight version (a hook on one trainable weight)."""
        trainable = next((m.weight for m in self.layers if m.weight.requires_grad), None)
        if trainable is not None:
            self._hook = trainable.register_hook(self._on_backward)

    def _on_backward(self, grad: torch.Tensor) -> None:
        self._backward_version = self.version()

    def first_step(self) -> None:
        """At the first step: weights changed after the last backward mean optimizer.step() came first (it
        ran with your optimizer's own LR, and the transitions of that update go uncounted). Later steps
        cannot tell this order from a client.step() before backward, so only the first is checked."""
        self.stop()
        if self._backward_version is not None and self._backward_version != self.version():
            warn_user("trqat: optimizer.step() ran before the first client.step(): that update used your "
                      "optimizer's own LR, not the controller's, and its transitions were not counted. Call "
                      "client.step(loss) after loss.backward() and before optimizer.step()")

    def begin(self) -> None:
        """At step_begin(): the weights must not change before this step's LRs are set."""
        self._begin_version = self.version()

    def end(self) -> None:
        """When this step's LRs arrive: warn if an optimizer step ran since begin()."""
        if self.version() != self._begin_version:
            warn_user("trqat: the quantized weights changed between client.step_begin() and client.step_end(): "
                      "optimizer.step() ran before this step's LRs were set, so it used the previous ones. "
                      "Call client.step_end(loss) after loss.backward() and before optimizer.step()")

    def closing(self, stepped: bool, current_step: int, total_steps: Optional[int], error: Optional[str] = None) -> None:
        """At close(): a client that never stepped in a run with steps left, and no error ending the loop,
        was not called in it."""
        self.stop()
        if not stepped and error is None and current_step < (total_steps or 0):
            warn_user(f"trqat: the client is closing without a single client.step(): the run records no step "
                      f"(stopped at {current_step}/{total_steps}). Call client.step(loss) once per "
                      f"optimizer step, after loss.backward() and before optimizer.step()")

    def stop(self) -> None:
        """Remove the backward hook (the first step, or close)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
