"""transformers.Trainer integration: allocation on every optimizer step, and logging.

    trainer = Trainer(model=AdaLoraModel(...), ..., callbacks=[AdaLoraCallback()])

- ``on_optimizer_step`` runs after ``optimizer.step()`` and before ``zero_grad()``, once per
  optimizer step whatever the gradient accumulation, and calls
  ``update_and_allocate(state.global_step)``: t = the number of optimizer steps completed
  before this one (0-based; the Trainer increments global_step right after), the step the
  authors' Trainer passes to its allocator and the one PEFT's example loops pass. A run of
  max_steps steps allocates at t = 0 .. max_steps - 1. Under DDP the gradients are already
  all-reduced, so every rank computes the same scores and masks.
- ``history``: one row per optimizer step, ``{"step": t, "budget": b(t)}``.
- total_step: taken from the Trainer (``state.max_steps``) when the config leaves it None.
- Logged at every logging step into the Trainer's logs and ``state.log_history`` (reporting
  callbacks such as W&B see them only if they run after this one; the Trainer puts them first):
  ``adalora/budget`` (the budget of the last allocation: b(global_step - 1) in the row the
  Trainer logs at global_step), ``adalora/mask_threshold`` (the last masking threshold, once
  a mask was computed), ``adalora/orth_reg``, and with ``log_ranks=True``
  ``adalora/rank/<module>``.
"""

from __future__ import annotations

import warnings

from transformers import TrainerCallback

from .config import AdaLoraConfig
from .model import AdaLoraModel

try:  # transformers >= 4.42: callbacks whose state checkpoints carry
    from transformers.trainer_callback import ExportableState
except ImportError:  # pragma: no cover

    class ExportableState:  # type: ignore[no-redef]
        pass


def _find(model) -> AdaLoraModel:
    m = getattr(model, "module", model)  # DDP / accelerate wrappers
    if not isinstance(m, AdaLoraModel):
        raise TypeError(
            "AdaLoraCallback needs the Trainer's model to be an AdaLoraModel, "
            f"got {type(m).__name__}."
        )
    return m


class AdaLoraCallback(TrainerCallback, ExportableState):
    """Runs AdaLoRA's rank allocation inside ``transformers.Trainer`` (module docstring).
    Also exported as ``AdaLoRACallback``. ``history`` is saved in the Trainer's checkpoints
    (``state()``, in trainer_state.json); the allocator's own state (scores, mask, step) is in
    the model's state dict."""

    def __init__(self, log_ranks: bool = False):
        self.log_ranks = log_ranks
        self.model: AdaLoraModel | None = None
        self.history: list[dict] = []  # one row per optimizer step: {"step": t, "budget": b(t)}

    def state(self) -> dict:
        return {"args": {"log_ranks": self.log_ranks}, "attributes": {"history": self.history}}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = _find(model)
        c = self.model.config_
        if not isinstance(c, AdaLoraConfig):
            return
        if c.total_step is None:
            c.total_step = state.max_steps
        elif c.total_step != state.max_steps:
            warnings.warn(
                f"AdaLoraConfig.total_step={c.total_step} but the Trainer runs "
                f"{state.max_steps} optimizer steps: the schedule will not end where "
                "training does.",
                stacklevel=2,
            )
        c.check_schedule(c.total_step)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if (
            self.model is not None
            and isinstance(self.model.config_, AdaLoraConfig)
            and self.model.config_.score_weights == "pre_step"
        ):
            self.model.update_importance()

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.model is None or not isinstance(self.model.config_, AdaLoraConfig):
            return
        t = state.global_step  # steps completed before this one: 0-based, as the references
        budget, _ = self.model.update_and_allocate(t)
        self.history.append({"step": t, "budget": budget})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.model is None or logs is None or self.model.rankallocator is None:
            return
        alloc = self.model.rankallocator
        extra = {"adalora/budget": alloc.last_budget}
        if alloc.threshold is not None:
            extra["adalora/mask_threshold"] = alloc.threshold
        if self.model.last_orth_reg is not None:
            extra["adalora/orth_reg"] = float(self.model.last_orth_reg)
        if self.log_ranks:
            for name, r in self.model.final_ranks().items():
                extra[f"adalora/rank/{name}"] = r
        logs.update(extra)  # seen by the callbacks after this one (progress bar, printer)
        # Trainer.log() appended a copy of ``logs`` to log_history before calling on_log
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)

    def on_train_end(self, args, state, control, **kwargs):
        if self.model is not None:
            self.model.check_allocation_ran(trained=state.global_step > 0 or None)


AdaLoRACallback = AdaLoraCallback  # the spelling of the seed API
