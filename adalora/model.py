"""AdaLoraModel: wraps any torch / transformers model, injects adapters, adds the orthogonal
regulariser to the loss and runs rank allocation. PEFT's API, one adapter, no class tree.

    model = AdaLoraModel(base_model, AdaLoraConfig(..., total_step=T), "default")
    out = model(**batch)              # training: out.loss includes orth_reg_weight * R
    out.loss.backward(); optimizer.step()
    budget, rank_pattern = model.update_and_allocate(step)   # before optimizer.zero_grad()

``step`` is the number of optimizer steps completed before this one: 0 after the first
``optimizer.step()``, as in PEFT's example loops and the authors' Trainer. PEFT's spelling
``model.base_model.update_and_allocate(step)`` works too (``base_model`` is the wrapper
itself, whose ``.model`` is the wrapped model, as in PEFT).

The same wrapper takes a ``LoraConfig`` for the fixed-rank baseline (no allocation, no R).
"""

from __future__ import annotations

import inspect
import numbers
import os
import types
import warnings

import torch
from torch import nn

from . import io as adapter_io
from .allocator import RankAllocator
from .config import AdaLoraConfig, LoraConfig
from .layers import LoraLinear, SVDLinear, _AdapterLayer
from .targets import find_targets, head_modules, is_conv1d


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def orth_regularizer(layers: list[SVDLinear], form: str = "norm_mean") -> torch.Tensor:
    """R over all adapters, batched: one Gram product per distinct P / Q shape, then one
    subtraction, norm and sum over every r x r Gram matrix of equal rank.

    "norm_mean" (both codebases): mean over the 2n matrices of ||Q Q^T - I||_F, ||P^T P - I||_F.
    "squared_sum" (paper eq. 4): sum over modules of ||P^T P - I||_F^2 + ||Q Q^T - I||_F^2."""
    by_shape: dict[tuple, list[torch.Tensor]] = {}
    for layer in layers:
        if layer.r == 0:
            continue
        a, b = layer.lora_A, layer.lora_B
        by_shape.setdefault((0, *a.shape), []).append(a)
        by_shape.setdefault((1, *b.shape), []).append(b)
    by_rank: dict[int, list[torch.Tensor]] = {}
    for (kind, *_), mats in by_shape.items():
        m = torch.stack(mats)  # (n_g, r, in) for Q, (n_g, out, r) for P
        gram = m @ m.mT if kind == 0 else m.mT @ m  # (n_g, r, r)
        by_rank.setdefault(gram.shape[-1], []).append(gram)
    if not by_rank:
        return layers[0].lora_A.new_zeros(())
    norms = []
    for r, grams in by_rank.items():
        g = torch.cat(grams) if len(grams) > 1 else grams[0]
        eye = torch.eye(r, device=g.device, dtype=g.dtype)
        norms.append(torch.linalg.matrix_norm(g - eye))
    norms = torch.cat(norms) if len(norms) > 1 else norms[0]
    if form == "squared_sum":
        return norms.square().sum()
    # PEFT counts every P and Q, rank-0 ones included, in the mean
    return norms.sum() / (2 * len(layers))


def _check_args(where: str, model, adapter_name, **flags) -> None:
    """The arguments every entry point shares: a module to wrap, an adapter name, bool flags."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{where}: model must be a torch.nn.Module, got {type(model).__name__}. Pass the "
            "loaded model (e.g. AutoModelForSequenceClassification.from_pretrained(name))."
        )
    if not isinstance(adapter_name, str) or not adapter_name:
        raise TypeError(
            f"{where}: adapter_name must be a non-empty string, got {adapter_name!r}. "
            "Pass e.g. 'default'."
        )
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(
                f"{where}: {name} must be True or False, got {value!r}. Pass {name}=True or False."
            )


def _step_int(step) -> int:
    """``update_and_allocate``'s step as a Python int: an int, a numpy integer or a 0-dim
    integer CPU tensor. A CUDA tensor is refused: reading it would wait for the GPU at every
    step."""
    what = (
        "update_and_allocate(step): step must be a non-negative int (the number of optimizer "
        "steps completed before this one)"
    )
    fix = (
        "Pass an int: 0 after the first optimizer.step(), then 1, 2, ... "
        "(the Trainer's state.global_step)."
    )
    if isinstance(step, torch.Tensor):
        if step.dim() != 0 or step.dtype == torch.bool or step.is_floating_point():
            raise TypeError(
                f"{what}, got a {step.dtype} tensor of shape {tuple(step.shape)}. {fix}"
            )
        if step.device.type != "cpu":
            raise TypeError(
                f"{what}, got a tensor on {step.device}: reading it would wait for the GPU at "
                f"every step. {fix}"
            )
    elif isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"{what}, got {step!r} ({type(step).__name__}). {fix}")
    step = int(step)
    if step < 0:
        raise ValueError(f"{what}, got {step}. {fix}")
    return step


def _forward_showing_signature(model: nn.Module):
    """``model.forward`` as a bound method that shows the wrapped model's parameters: the
    Trainer (remove_unused_columns=True) keeps only the batch keys that
    inspect.signature(model.forward) names, and (*args, **kwargs) names none. A real bound
    method, so accelerate's mixed-precision wrapping and unwrapping keep working."""
    f = type(model).forward
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
    try:
        sig = inspect.signature(model.model.forward)
        this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        g.__signature__ = sig.replace(parameters=[this, *sig.parameters.values()])
    except (TypeError, ValueError):  # no signature to show: keep (*args, **kwargs)
        pass
    return types.MethodType(g, model)


class AdaLoraModel(nn.Module):
    # The Trainer must scale the loss for gradient accumulation itself: our forward does not
    # take num_items_in_batch (letting it pass through doubled losses under DDP/accumulation).
    accepts_loss_kwargs = False

    def __init__(
        self,
        model: nn.Module,
        config: AdaLoraConfig | LoraConfig,
        adapter_name: str = "default",
        low_cpu_mem_usage: bool = False,
    ):
        """Inject adapters into ``model`` (in place) for the modules that ``find_targets``
        selects (PEFT's selection for an explicit ``target_modules``).

        ``modules_to_save=None`` trains the model's task heads in full (``head_modules``:
        classifier, score, classification_head, qa_outputs), ``[]`` none.
        ``low_cpu_mem_usage=True`` (PEFT's meaning): the adapter weights are created on the
        meta device, without storage or initialisation, to be filled in by ``from_pretrained``
        or ``load_state_dict(state_dict, assign=True)``; not for training a new adapter.
        Bad arguments raise TypeError / ValueError before the model is touched."""
        where = "AdaLoraModel(model, config)"
        _check_args(where, model, adapter_name, low_cpu_mem_usage=low_cpu_mem_usage)
        if not isinstance(config, AdaLoraConfig | LoraConfig):
            raise TypeError(
                f"{where}: config must be an AdaLoraConfig or a LoraConfig, got "
                f"{type(config).__name__}. Build one (AdaLoraConfig(**d), LoraConfig(**d)), or "
                "convert a to_dict() / adapter_config.json dict with "
                "adalora.config.config_from_dict(d)."
            )
        config.validate()  # fields set after construction are checked too
        super().__init__()
        self.model = model
        self.forward = _forward_showing_signature(self)  # the Trainer reads its signature
        self.peft_config = {adapter_name: config}
        self.trainable_adapter_name = adapter_name
        self.last_orth_reg: torch.Tensor | None = None
        self._allocations = 0  # update_and_allocate calls
        self._train_forwards = 0  # training forwards that returned a loss
        if config.modules_to_save is None:
            config.modules_to_save = head_modules(model)
        saved = []
        for m in config.modules_to_save:
            try:
                saved.append(model.get_submodule(m))
            except AttributeError:
                raise ValueError(
                    f"modules_to_save entry {m!r} is not a submodule of "
                    f"{type(model).__name__}; top-level modules: "
                    f"{[n for n, _ in model.named_children()]}"
                ) from None
        names = find_targets(model, config.target_modules, config.modules_to_save, config.task_type)
        for p in model.parameters():
            p.requires_grad_(False)
        device = "meta" if low_cpu_mem_usage else None
        layers = {}
        for name in names:
            base = model.get_submodule(name)
            fan = config.fan_in_fan_out or is_conv1d(base)
            if isinstance(config, AdaLoraConfig):
                layer = SVDLinear(
                    base,
                    config.init_r,
                    config.lora_alpha,
                    config.lora_dropout,
                    fan,
                    prune_lora=config.prune_lora,
                    device=device,
                )
            else:
                r, alpha = config.r_and_alpha(name)
                layer = LoraLinear(base, r, alpha, config.lora_dropout, fan, device=device)
            _set_submodule(model, name, layer)
            layers[name] = layer
        self._layer_names = names
        for sub in saved:
            for p in sub.parameters():
                p.requires_grad_(True)
        self.rankallocator = None
        if isinstance(config, AdaLoraConfig):
            self.rankallocator = RankAllocator(layers, config)
            if config.rank_pattern:
                self._load_mask(config.rank_pattern)

    # ------------------------------------------------------------------ access
    @property
    def config_(self) -> AdaLoraConfig | LoraConfig:
        return self.peft_config[self.trainable_adapter_name]

    def adapter_layers(self) -> dict[str, _AdapterLayer]:
        return {n: self.model.get_submodule(n) for n in self._layer_names}

    def _hot_layers(self) -> list[_AdapterLayer]:
        """adapter_layers() for the training forward, cached: 72 get_submodule() walks cost
        about 1.5 ms of Python per step (DeBERTa-base), on the GPU's critical path. The cache
        is keyed on the adapted module names (merge_and_unload empties them; a deepcopy copies
        the cached modules along with the model)."""
        key = tuple(self._layer_names)
        cached = self.__dict__.get("_hot_layers_cache")
        if cached is None or cached[0] != key:
            cached = (key, list(self.adapter_layers().values()))
            self.__dict__["_hot_layers_cache"] = cached
        return cached[1]

    def get_base_model(self) -> nn.Module:
        return self.model

    @property
    def base_model(self) -> AdaLoraModel:
        """This wrapper, which is both PEFT's PeftModel and its tuner: PEFT's
        ``model.base_model.update_and_allocate(step)`` and ``model.base_model.model`` work."""
        return self

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)  # model.config, generate(), ... pass through

    # ------------------------------------------------------------------ forward
    def forward(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        c = self.config_
        loss = getattr(out, "loss", None)
        if self.training and isinstance(loss, torch.Tensor):
            self._train_forwards += 1
        if (
            self.training
            and isinstance(c, AdaLoraConfig)
            and isinstance(loss, torch.Tensor)
            and c.orth_reg_weight > 0
            and not c.prune_lora
            and self._layer_names
        ):
            reg = orth_regularizer(self._hot_layers(), c.orth_reg_form)
            self.last_orth_reg = reg.detach()
            out.loss = loss + c.orth_reg_weight * reg
        return out

    def generate(self, *args, **kwargs):
        return self.model.generate(*args, **kwargs)

    # ------------------------------------------------------------------ allocation
    def _allocator(self) -> RankAllocator:
        if self.rankallocator is None:
            if isinstance(self.config_, AdaLoraConfig):
                raise RuntimeError(
                    "the adapters were resized to their final ranks (resized "
                    "checkpoint or resize_modules_by_rank_pattern): allocation "
                    "cannot continue. To keep training, load a checkpoint saved "
                    "with resize=False."
                )
            raise TypeError(
                "update_and_allocate needs an AdaLoraConfig; this model holds a "
                "fixed-rank LoraConfig."
            )
        return self.rankallocator

    def update_importance(self) -> None:
        """Paper variant (score_weights='pre_step'): call before optimizer.step()."""
        self._allocator().pre_step_importance()

    def update_and_allocate(self, global_step: int):
        """After optimizer.step(), before zero_grad(). ``global_step`` = t, the number of
        optimizer steps completed before this one (0-based: 0 after the first step), as in
        PEFT's example loops and the authors' Trainer; it must increase from call to call.
        Returns (budget b(t), rank_pattern or None). The rank pattern is also stored in
        ``peft_config[name].rank_pattern``. ``global_step``: an int (a numpy integer or a
        0-dim integer CPU tensor is taken too); anything else raises TypeError."""
        global_step = _step_int(global_step)
        budget, pattern = self._allocator().update_and_allocate(global_step)
        self._allocations += 1
        if pattern is not None:
            self.config_.rank_pattern = pattern
        return budget, pattern

    def _load_mask(self, rank_pattern: dict) -> None:
        alloc = self._allocator()
        rows = []
        for n in alloc.names:
            keep = rank_pattern.get(f"{n}.lora_E", rank_pattern.get(n))
            if keep is None:
                raise KeyError(f"rank_pattern has no entry for module {n}")
            rows.append(torch.as_tensor(keep, dtype=torch.bool).view(-1))
        alloc.mask.copy_(torch.stack(rows))

    def _allocated(self) -> bool:
        """update_and_allocate ran: in this process, or before the checkpoint whose allocator
        state (its last step) was loaded."""
        alloc = self.rankallocator
        return self._allocations > 0 or (alloc is not None and alloc.last_step() >= 0)

    def final_ranks(self) -> dict[str, int]:
        """Rank of every adapter: sum of the keep-mask (AdaLoRA) or the layer rank (LoRA)."""
        if self.rankallocator is None or not self._allocated() and not self.config_.rank_pattern:
            return {n: layer.r for n, layer in self.adapter_layers().items()}
        counts = self.rankallocator.mask.sum(dim=1).tolist()
        return dict(zip(self.rankallocator.names, counts))

    @torch.no_grad()
    def resize_modules_by_rank_pattern(
        self, rank_pattern: dict | None = None, adapter_name: str | None = None
    ) -> None:
        """Physically drop masked triplets (rank 0 allowed); the scale alpha / r_init stays.
        After resizing, allocation cannot continue (the allocator needs full rank)."""
        rank_pattern = rank_pattern if rank_pattern is not None else self.config_.rank_pattern
        if rank_pattern is None:
            raise ValueError("no rank_pattern: train with update_and_allocate first or pass one.")
        for name, layer in self.adapter_layers().items():
            keep = rank_pattern.get(f"{name}.lora_E", rank_pattern.get(name))
            if keep is None:
                raise KeyError(f"rank_pattern has no entry for module {name}")
            layer.resize(torch.as_tensor(keep, dtype=torch.bool))
        self.config_.rank_pattern = {k: list(v) for k, v in rank_pattern.items()}
        self.rankallocator = None  # full-rank state no longer matches the modules

    # ------------------------------------------------------------------ merge
    def merge_adapter(self) -> None:
        for layer in self.adapter_layers().values():
            layer.merge()

    def unmerge_adapter(self) -> None:
        for layer in self.adapter_layers().values():
            layer.unmerge()

    def merge_and_unload(self) -> nn.Module:
        """Fold every adapter into its base weight and return the plain base model."""
        self.check_allocation_ran()
        for name, layer in self.adapter_layers().items():
            layer.merge()
            _set_submodule(self.model, name, layer.base_layer)
        self._layer_names = []
        return self.model

    # ------------------------------------------------------------------ counts
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def adapter_parameters(self, ranks: dict[str, int] | None = None) -> int:
        """Adapter parameter count at the given ranks (default: the current/final ranks).
        SVD: r (in + out + 1); LoRA: r (in + out)."""
        ranks = ranks or self.final_ranks()
        total = 0
        for name, layer in self.adapter_layers().items():
            per_rank = (
                layer.in_features + layer.out_features + (1 if isinstance(layer, SVDLinear) else 0)
            )
            total += ranks[name] * per_rank
        return total

    def print_trainable_parameters(self) -> None:
        n_all = sum(p.numel() for p in self.parameters())
        n = self.trainable_parameters()
        print(
            f"trainable params: {n:,d} || all params: {n_all:,d} || "
            f"trainable%: {100 * n / n_all:.4f}"
        )

    # ------------------------------------------------------------------ I/O
    def adapter_state_dict(self, resize: bool = True) -> dict[str, torch.Tensor]:
        """Adapter weights (and modules_to_save) under PEFT's key names; with ``resize`` only
        the kept triplets (rank_pattern)."""
        config = self.config_
        ada = isinstance(config, AdaLoraConfig)
        pattern = config.rank_pattern if (resize and ada) else None
        sd = {}
        for name, layer in self.adapter_layers().items():
            a, b = layer.lora_A.detach(), layer.lora_B.detach()
            e = layer.lora_E.detach() if ada else None
            if pattern is not None and layer.r == config.init_r:
                keep = torch.as_tensor(pattern[f"{name}.lora_E"], dtype=torch.bool, device=a.device)
                a, b, e = a[keep], b[:, keep], e[keep]
            for key, t in zip(adapter_io.param_keys(config), (a, b, e) if ada else (a, b)):
                sd[f"{adapter_io.PREFIX}{name}.{key}"] = t
        for m in config.modules_to_save or ():
            for pname, p in self.model.get_submodule(m).named_parameters():
                sd[f"{adapter_io.PREFIX}{m}.{pname}"] = p.detach()
        return sd

    def save_pretrained(self, path, resize: bool = True) -> None:
        """PEFT's folder format (adalora/io.py); ``resize=False`` keeps full rank and the
        allocator state, for resuming training exactly."""
        self.check_allocation_ran()
        c = self.config_
        ada = isinstance(c, AdaLoraConfig)
        if self.rankallocator is None and ada and not resize:
            raise ValueError("this model was resized: save it with resize=True.")
        base = getattr(getattr(self.model, "config", None), "_name_or_path", None)
        state = None
        if not resize and self.rankallocator is not None:
            state = dict(self.rankallocator.state_dict())
        resized = resize and ada and c.rank_pattern is not None
        adapter_io.write_adapter(
            path,
            self.adapter_state_dict(resize=resize),
            adapter_io.peft_config_dict(c, self._layer_names, base),
            adapter_io.our_config_dict(c, self._layer_names, resized),
            state,
        )

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        path,
        adapter_name: str = "default",
        is_trainable: bool = False,
        low_cpu_mem_usage: bool = False,
    ) -> AdaLoraModel:
        """Load our folders and PEFT's (LoRA or AdaLoRA) alike: resizes to rank_pattern when
        the weights were saved resized, restores the allocator state when it was saved.
        ``low_cpu_mem_usage``: build the adapters on the meta device and take the loaded
        tensors (no initialisation, no copy when the dtype matches).

        A missing or corrupted file, or an adapter that does not fit ``model`` (another base
        model: other modules, missing or unexpected parameters, other shapes), raises
        FileNotFoundError / ValueError naming the file and the parameter before any weight is
        loaded; ``model`` may then already hold the new (empty) adapter layers."""
        where = "AdaLoraModel.from_pretrained(model, path)"
        _check_args(
            where,
            model,
            adapter_name,
            is_trainable=is_trainable,
            low_cpu_mem_usage=low_cpu_mem_usage,
        )
        if not isinstance(path, str | os.PathLike):
            raise TypeError(
                f"{where}: path must be the adapter folder (a str or Path), got "
                f"{type(path).__name__}. Pass the folder that save_pretrained wrote."
            )
        saved = adapter_io.read_adapter(path, [n for n, _ in model.named_modules()], adapter_name)
        try:
            self = cls(model, saved.config, adapter_name, low_cpu_mem_usage=low_cpu_mem_usage)
        except ValueError as e:
            raise ValueError(f"adapter folder {path} does not fit this model: {e}") from None
        if saved.resized:
            self.resize_modules_by_rank_pattern(saved.config.rank_pattern)
        model_name = getattr(getattr(model, "config", None), "_name_or_path", None) or None
        adapter_io.check_tensors(
            os.path.join(path, adapter_io.WEIGHTS),
            saved.weights,
            self.adapter_state_dict(resize=False),
            saved.base_model,
            model_name,
        )
        if saved.allocator_state is not None and self.rankallocator is not None:
            adapter_io.check_tensors(
                os.path.join(path, adapter_io.ALLOCATOR_STATE),
                saved.allocator_state,
                self.rankallocator.state_dict(),
                saved.base_model,
                model_name,
            )
        with torch.no_grad():
            for key, t in saved.weights.items():
                self._put(adapter_io.file_key_to_param(key), t)
        self._finish_meta_load()
        if saved.allocator_state is not None and self.rankallocator is not None:
            self.rankallocator.load_state_dict(saved.allocator_state, strict=True)
        if not is_trainable:
            self.eval()
            for p in self.parameters():
                p.requires_grad_(False)
        return self

    def _put(self, param_name: str, t: torch.Tensor) -> None:
        """Copy ``t`` into a parameter of the wrapped model; a meta (low_cpu_mem_usage)
        adapter parameter takes ``t`` itself, on its base layer's device."""
        owner_name, _, attr = param_name.rpartition(".")
        owner = self.model.get_submodule(owner_name)
        old = getattr(owner, attr)
        if old.is_meta:
            dev = owner.base_layer.weight.device if isinstance(owner, _AdapterLayer) else t.device
            # old's dtype, as copy_ gives without low_cpu_mem_usage (adapters stay fp32)
            t = t.to(device=dev, dtype=old.dtype)
            setattr(owner, attr, nn.Parameter(t, requires_grad=old.requires_grad))
        else:
            old.copy_(t)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; after ``assign=True`` into meta adapters
        (``low_cpu_mem_usage``), the adapters move to their base layers' devices and the rank
        allocator is rebuilt on the real device (keeping any state the dict carried)."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._finish_meta_load()
        return result

    def _finish_meta_load(self) -> None:
        layers = self.adapter_layers()
        if any(p.is_meta for layer in layers.values() for p in layer.parameters()):
            return  # not all adapter weights loaded yet
        with torch.no_grad():
            for layer in layers.values():
                dev = layer.base_layer.weight.device
                for attr in ("lora_A", "lora_B", "lora_E"):
                    p = getattr(layer, attr, None)
                    if p is not None and p.device != dev:
                        setattr(layer, attr, nn.Parameter(p.to(dev), requires_grad=p.requires_grad))
        alloc = self.rankallocator
        if alloc is None or not any(b.is_meta for b in alloc.buffers()):
            return
        fresh = RankAllocator(layers, self.config_)
        kept = {k: v for k, v in alloc.state_dict().items() if not v.is_meta}
        fresh.load_state_dict(kept, strict=False)
        self.rankallocator = fresh
        if alloc.mask.is_meta and self.config_.rank_pattern:
            self._load_mask(self.config_.rank_pattern)

    def check_allocation_ran(self, trained: bool | None = None) -> None:
        """Warn if AdaLoRA trained (default: a training forward returned a loss) but
        update_and_allocate was never called, i.e. no rank was allocated."""
        trained = self._train_forwards > 0 if trained is None else trained
        if self.rankallocator is not None and not self._allocated() and trained:
            warnings.warn(
                "AdaLoRA trained without a single update_and_allocate() call: no rank "
                "was allocated, this was plain SVD-LoRA. Call it after every "
                "optimizer.step() or use AdaLoraCallback with the Trainer.",
                stacklevel=2,
            )
