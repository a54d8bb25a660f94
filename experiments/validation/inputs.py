"""The runners' checks of summarisation lengths and data sizes and of --rank-pattern-from, at
experiments/validation/checks.py's stages (one-line ``BadInput``, exit status 2, nothing written):

1. ``check_flags`` (from checks.check_flags, before anything loads): the --rank-pattern-from
   file read in full (methods.read_rank_pattern) and no --target-modules beside it; the
   generation length leaves room for a summary token; --length-penalty only with beams.
2. ``check_generation`` (summarization.py, right after the model and tokenizer load): the
   summary lengths against the tokens the tokenizer and the generation config fix. The rank
   pattern against the model is methods.check_rank_pattern (from methods.plan_budget).
3. ``check_split_sizes`` (summarization.py, right after the data loads): no empty evaluation
   split, no fewer examples than an explicit --max-train-samples / --max-eval-samples asks for,
   and at least one batch to train on. A preset's sample cap above what a split holds is not an
   error: the run uses what there is and its data note records how many.
"""

from __future__ import annotations

import os

from experiments.validation.base import BadInput, bad, flag, given


# --------------------------------------------------------------------------- 1. flags
def check_flags(cfg, kind: str) -> None:
    """Stage 1, after checks.check_flags' own checks (so types and signs are already good).
    ``cfg``: the run's config (experiments/config.py)."""
    if cfg.rank_pattern_from is not None and cfg.method == "lora":
        _check_rank_pattern_flags(cfg)
    if kind == "summarization":
        _check_generation_room(cfg, ["the decoder start token"], "generation")
        if cfg.length_penalty is not None and cfg.num_beams == 1:
            raise bad(
                cfg,
                "length_penalty",
                cfg.length_penalty,
                f"has no effect with {flag('num_beams')} 1 (greedy search): it only scores "
                "beam hypotheses",
                f"pass {flag('num_beams')} 2 or more, or leave --length-penalty out",
            )


def _check_rank_pattern_flags(cfg) -> None:
    from experiments.methods import read_rank_pattern

    read_rank_pattern(cfg.rank_pattern_from, cfg.model)
    if given(cfg, "target_modules"):
        raise bad(
            cfg,
            "target_modules",
            cfg.target_modules,
            "unused with --rank-pattern-from: the rank pattern names the adapted modules",
            "drop --target-modules (or --rank-pattern-from)",
        )


def _gen_key(cfg) -> str:
    """The flag that sets the generation max length (--max-target-length when it is unset)."""
    return "gen_max_length" if cfg.gen_max_length else "max_target_length"


def _check_generation_room(cfg, fixed: list[str], by: str) -> None:
    """The generation max length holds the ``fixed`` tokens (the decoder start token, forced
    first / last tokens) and at least one summary token."""
    key = _gen_key(cfg)
    length, need = getattr(cfg, key), len(fixed) + 1
    if length is None or length >= need:
        return
    also = (
        ""
        if key == "gen_max_length"
        else "is the generation max length (--gen-max-length is unset) and "
    )
    raise bad(
        cfg,
        key,
        length,
        f"{also}leaves no room for a summary token: {by} fixes {len(fixed)} of its tokens "
        f"({', '.join(fixed)})",
        f"pass {flag(key)} {need} or more",
    )


# --------------------------------------------------------------------------- 2. model
def check_generation(cfg, model, tokenizer) -> None:
    """Stage 2 for a seq2seq model: --max-target-length leaves room for a summary token beside
    the tokenizer's special tokens (below their number the tokenizer does not truncate at all);
    the generation max length holds the decoder start token, the tokens the model's generation
    config forces first and last, one summary token, and its min_length."""
    # the tokens every summary gets (encoded as the labels are: as a target text)
    specials = tokenizer.convert_ids_to_tokens(tokenizer(text_target="")["input_ids"])
    n = len(specials)
    if cfg.max_target_length < n + 1:
        raise bad(
            cfg,
            "max_target_length",
            cfg.max_target_length,
            f"leaves the training summaries no room for a token: the tokenizer adds {n} "
            f"special tokens to each ({' '.join(specials)})"
            + (" and does not truncate below that" if cfg.max_target_length < n else ""),
            f"pass --max-target-length {n + 1} or more",
        )
    gc = model.generation_config
    fixed = ["the decoder start token"]
    if gc.forced_bos_token_id is not None:
        fixed.append("the forced first token")
    if gc.forced_eos_token_id is not None:
        fixed.append("the forced end token")
    _check_generation_room(cfg, fixed, f"{type(model).__name__}'s generation config")
    key = _gen_key(cfg)
    least = max(gc.min_length or 0, 1 + gc.min_new_tokens if gc.min_new_tokens else 0)
    if getattr(cfg, key) < least:
        raise bad(
            cfg,
            key,
            getattr(cfg, key),
            f"below the {least} tokens the model's generation config asks for at least "
            "(min_length / min_new_tokens): generation would be cut before it may end",
            f"pass {flag(key)} {least} or more",
        )


# --------------------------------------------------------------------------- 3. data
def check_split_sizes(cfg, split, dataset: str) -> None:
    """Stage 3: ``split`` (data.summarization.Split) against --max-*-samples and the batch (module
    doc). The batch is what one optimizer step takes: batch size x accumulation x processes."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    per_step = cfg.batch_size * cfg.grad_accum * world
    batch = f"{flag('batch_size')} {cfg.batch_size}"
    if cfg.grad_accum > 1:
        batch += f" x {flag('grad_accum')} {cfg.grad_accum}"
    if world > 1:
        batch += f" x {world} processes"
    if per_step != cfg.batch_size:
        batch += f" = {per_step} examples a step"
    short = f"fewer than one batch ({batch})"
    n_tr, n_ev, n = len(split.train), len(split.eval), split.shared
    tr, ev = f"{dataset}/{split.train_split}", f"{dataset}/{split.eval_split}"
    asked_tr, asked_ev = cfg.max_train_samples, cfg.max_eval_samples
    tr_given, ev_given = given(cfg, "max_train_samples"), given(cfg, "max_eval_samples")
    if n_ev < 1:
        raise _data_error(cfg, f"{ev} has no examples", "point --data-dir at a complete copy")
    if tr_given and asked_tr < per_step:
        raise bad(
            cfg,
            "max_train_samples",
            asked_tr,
            f"{short} to train on",
            f"pass --max-train-samples {per_step} or more, or a smaller --batch-size",
        )
    if n is None and ev_given and n_ev < asked_ev:
        fix = f"pass --max-eval-samples {n_ev} or less, or leave it out"
        raise bad(cfg, "max_eval_samples", asked_ev, f"{ev} holds only {n_ev} examples", fix)
    if n is not None and ev_given and asked_ev > n - per_step:
        # evaluation takes the last examples of the split, training one batch or more before
        raise bad(
            cfg,
            "max_eval_samples",
            asked_ev,
            f"{ev} holds {n} examples and training needs one batch ({batch}) of them "
            "besides the evaluation ones (no separate train split)",
            f"pass --max-eval-samples {n - per_step} or less, or a smaller --batch-size"
            if n > per_step
            else "pass a smaller --batch-size, or use more data",
        )
    remain = (
        f"{tr} holds {n_tr} examples"
        if n is None
        else f"{ev} holds {n} examples, the last {n_ev} of them for evaluation: {n_tr} remain "
        "for training"
    )
    if tr_given and n_tr < asked_tr:
        fix = f"pass --max-train-samples {n_tr} or less, or leave it out"
        raise bad(cfg, "max_train_samples", asked_tr, remain, fix)
    if n_tr >= per_step:
        return
    fix = "pass a smaller --batch-size" + (" or --max-eval-samples" if n is not None else "")
    if given(cfg, "batch_size"):
        raise bad(cfg, "batch_size", cfg.batch_size, f"{remain}, {short}", fix)
    raise _data_error(cfg, f"{remain}, {short}", fix + ", or use more data")


def _data_error(cfg, problem: str, fix: str) -> BadInput:
    if cfg.data_dir is None:  # the line names --data-dir: say where the data came from
        problem += f" (data from {os.environ.get('SUMM_DIR') or 'the Hub'})"
    return BadInput("--data-dir", cfg.data_dir, problem, fix)
