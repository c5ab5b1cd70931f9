"""Typed, validated settings for training, evaluating and the nightly loop. Every field has help text.

They live beside the code that reads them; they follow schemas/config.py's conventions (frozen,
extra keys forbidden) so that a run id can hash them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PRMTrainConfig(BaseModel):
    """Everything that determines the weights `prmforge train` produces. Its hash is the model id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset_version: int = Field(..., ge=1, description="Dataset version to train on (its train split).")
    base: str | None = Field(
        None, description="Local HF model directory to start from; the embedded policy if unset."
    )
    kind: Literal["prm", "orm", "implicit"] = Field(
        "prm",
        description=(
            "'prm': a label at every step; 'orm': the outcome baseline, trained only on is_correct "
            "read at the last step; 'implicit': the implicit PRM, a copy of the base LM trained on "
            "is_correct through its log-likelihood ratio to the base (no step labels)."
        ),
    )
    beta: float = Field(0.05, gt=0, description="The implicit PRM's beta: reward = beta * log(pi / pi_ref).")
    label_kind: Literal["hard", "soft"] = Field(
        "hard", description="'hard': cross-entropy on the bool labels; 'soft': BCE on the MC estimate q."
    )
    epochs: float = Field(3.0, gt=0, description="Passes over the training examples (fractions allowed).")
    steps: int | None = Field(
        None, ge=1, description="Optimizer steps to take, whatever the data's size; overrides epochs when set."
    )
    batch_size: int = Field(8, ge=1, description="Solutions per optimizer step.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak AdamW learning rate of the pretrained LM.")
    head_learning_rate: float = Field(1e-3, gt=0, description="Peak AdamW learning rate of the new step head.")
    lm_weight: float = Field(
        1.0, ge=0,
        description=(
            "Weight of the PRM's own next-token loss on the steps its labels call good, beside the step loss; "
            "it keeps the surprise features a model of good steps (0: off; an ORM never has it)."
        ),
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the steps spent warming up linearly.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    variants: bool = Field(True, description="Also train on augmented rows (HNC merged steps), not only originals.")
    dropout: bool = Field(False, description="Keep the base model's dropout (off by default, as TRL does).")
    max_length: int | None = Field(
        None, ge=8, description="Longest input in tokens; the base model's n_positions if unset."
    )
    seed: int = Field(0, description="Seed for the classifier head's initialisation and the batch order.")
    checkpoint_every: int = Field(50, ge=1, description="Optimizer steps between resumable checkpoints.")
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = Field(
        "auto",
        description=(
            "Autocast precision of the forward and backward passes: 'auto' is bf16 on a GPU that supports it "
            "and fp32 elsewhere (a CPU); 'fp16' needs a GPU; 'no' is fp32 everywhere. The weights stay fp32."
        ),
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute the base LM's activations in the backward pass: less memory, about a third slower."
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1,
        description=(
            "Forward/backward passes per optimizer step; each takes its share of batch_size solutions, so the "
            "optimizer step sees the same batch with less memory."
        ),
    )
    fsdp: bool = Field(
        False,
        description=(
            "Shard the weights, gradients and optimizer state over the processes of a `torchrun` or "
            "`accelerate launch` run (PyTorch FSDP through the Trainer) instead of replicating them (DDP)."
        ),
    )
    lora_rank: int = Field(
        0, ge=0,
        description=(
            "Train LoRA adapters of this rank on the base LM instead of all its weights (needs peft; 0: off). "
            "The step head trains in full; the adapters are merged into the saved model."
        ),
    )
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (the update is alpha / rank times B A).")
    lora_target_modules: tuple[str, ...] | None = Field(
        None, description="Names of the base LM's modules that get adapters; peft's default for the architecture if unset."
    )

    def training_fingerprint(self) -> str:
        """The fields that change the weights (checkpoint cadence and gradient checkpointing do not).

        The options added with the Trainer are left out at their defaults, so that the runs before them
        keep their model ids. The number of processes is not a setting: N processes train one's weights.
        """
        later = {"mixed_precision", "gradient_accumulation_steps", "lora_rank", "lora_alpha", "lora_target_modules", "fsdp"}
        at_default = {name for name in later if getattr(self, name) == type(self).model_fields[name].default}
        return self.model_dump_json(exclude={"checkpoint_every", "gradient_checkpointing"} | at_default)


class EvaluateConfig(BaseModel):
    """How `prmforge evaluate` measures a model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float | None = Field(
        None, ge=0, le=1,
        description="Score below which a step counts as the first error; chosen on a held-out half if unset.",
    )
    calibration_fraction: float = Field(
        0.5, gt=0, lt=1, description="Share of first-error rows used to choose the threshold when it is not given."
    )
    bon_policy: str | None = Field(
        None,
        description=(
            "Policy spec that samples fresh Best-of-N solutions for the held-out problems; if unset the "
            "dataset's own test solutions are reused, grouped by problem."
        ),
    )
    bon_samples: int = Field(16, ge=1, description="Solutions sampled per held-out problem with bon_policy.")
    bon_seed: int = Field(1, description="Sampling seed for the fresh Best-of-N solutions.")
    max_new_tokens: int = Field(160, ge=1, description="Longest fresh Best-of-N solution, in tokens.")
    step_boundary: str = Field(
        r"\n\s*\n|\n(?=Step \d+:)", description="Regex that splits fresh solutions into steps."
    )
    subset_draws: int = Field(
        256, ge=1,
        description="Majority-vote subsets per problem and N, all of them when there are fewer (other methods are exact).",
    )
    seed: int = Field(0, description="Seed for the Best-of-N subsets and the random-choice baseline.")
    batch_size: int = Field(16, ge=1, description="Solutions scored per forward pass.")


class NightlyConfig(BaseModel):
    """One turn of the loop: fresh problems -> gated data -> new dataset -> retrain -> compare -> promote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    problems: int = Field(8, ge=1, description="Fresh synthetic seed problems per night.")
    samples: int = Field(4, ge=1, description="Solutions sampled per problem.")
    rollouts: int = Field(4, ge=1, description="Monte Carlo completions per step (k).")
    policy: str = Field("embedded", description="Policy spec that writes and labels the solutions.")
    labeler: Literal["mc", "search", "progress"] = Field("mc", description="Step labeller.")
    max_new_tokens: int = Field(160, ge=1, description="Longest continuation, in tokens.")
    test_fraction: float = Field(
        0.2, ge=0.0, lt=1.0,
        description="Share of problems held out; keep it fixed across nights so the held-out set only grows.",
    )
    first_seed: int = Field(1, description="Seed of the first night when no generate run is recorded yet.")
    min_new_labels: int = Field(
        8, ge=0, description="Fewest new labelled steps worth retraining on; fewer stops the night."
    )
    base: str | None = Field(None, description="Base model for retraining; the embedded policy if unset.")
    label_kind: Literal["hard", "soft"] = Field("hard", description="Labels the PRM trains on.")
    epochs: float = Field(3.0, gt=0, description="Training passes over the new dataset version.")
    batch_size: int = Field(8, ge=1, description="Solutions per optimizer step.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak AdamW learning rate of the pretrained LM.")
    orm_baseline: bool = Field(
        True,
        description=(
            "Also train the ORM baseline on the new dataset: until a model is promoted, a candidate must "
            "beat it (and random choice) at Best-of-N to be promoted."
        ),
    )
    promotion_selector: str = Field(
        "prm_min", description="The Best-of-N selector promotion compares (prm_min, prm_last, prm_mean, prm_vote, ...)."
    )
    promotion_n: int = Field(
        16, ge=1, description="N of the Best-of-N comparison: fresh solutions sampled per held-out problem."
    )
    bon_seed: int = Field(1, description="Sampling seed of the fresh Best-of-N solutions (the same for both models).")
    report_dir: str | None = Field(None, description="Write the candidate's HTML report here, if set.")
