"""The PRM's network: a causal LM that keeps its language-model head, plus a step head.

A step's score is read at the `<|step|>` separator after it, from two things:
- the LM's last hidden state there (what a plain token classifier reads), and
- the model's own surprise at the step's tokens: the log-probability its LM head gave each token
  of the step, and how far that was below the token it would have written instead. Over the
  step's tokens: the minimum and the mean of both; over every step token so far: the minimums.

Why: a PRM must notice that `6 + 3 = 11` is wrong. A classifier head on a fine-tuned LM learns
that comparison slowly (on the embedded model a linear probe of the frozen policy's states finds
no sign of it, and 1,000 steps of fine-tuning on exact labels did not either), while the LM
already made it: it predicted `9` and got `11`. Training keeps the LM honest by adding its
next-token loss on the steps the labels call good, so the surprise stays a model of good steps
(and extends to steps the base policy never wrote well). The head's loss does not flow into the
surprise features (they are detached), only into the hidden state.

The input is laid out as the prompt, a newline and a separator (which closes the prompt: it
carries no label), then every step followed by a separator. An ORM (`step_features=False`,
`lm_weight=0`) is the same network reading only the hidden state at the last separator.

This file imports only torch and transformers: `save_pretrained` copies it beside the weights,
so `AutoModelForTokenClassification.from_pretrained(path, trust_remote_code=True)` loads a
trained PRM without prmforge installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

MODEL_TYPE = "prmforge_step_reward"
STEP_FEATURES = ("step_min_logprob", "step_mean_logprob", "step_min_gap", "step_mean_gap",
                 "so_far_min_logprob", "so_far_min_gap")
LOGPROB_FLOOR = -20.0  # surprise beyond this says nothing more; keeps the features in range
IGNORE_INDEX = -100


class StepRewardConfig(PretrainedConfig):
    """The base LM's config plus the step head's settings."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        base_config: PretrainedConfig | dict | None = None,
        step_token_id: int = 0,
        label_kind: str = "hard",
        step_features: bool = True,
        lm_weight: float = 1.0,
        **kwargs,
    ) -> None:
        if isinstance(base_config, dict):
            base_config = AutoConfig.for_model(**base_config)
        self.base_config = base_config
        self.step_token_id = step_token_id
        self.label_kind = label_kind
        self.step_features = step_features
        self.lm_weight = lm_weight
        kwargs.setdefault("num_labels", 2 if label_kind == "hard" else 1)
        super().__init__(**kwargs)

    def to_dict(self) -> dict:
        output = super().to_dict()
        if self.base_config is not None:
            output["base_config"] = self.base_config.to_dict()
        return output


@dataclass
class StepRewardOutput(ModelOutput):
    loss: torch.Tensor | None = None  # step_loss + lm_weight * lm_loss
    logits: torch.Tensor | None = None  # (batch, tokens, num_labels): read at the separators
    lm_logits: torch.Tensor | None = None
    step_loss: torch.Tensor | None = None  # the labels' loss alone
    lm_loss: torch.Tensor | None = None


def hidden_size(config: PretrainedConfig) -> int:
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot tell the hidden size of a {type(config).__name__}")


def token_surprise(lm_logits: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position t: log p(token t | before) and its gap below the most likely token (<= 0).

    Position 0 has no prediction and gets 0 for both.

    >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]])
    >>> logprob, gap = token_surprise(logits, torch.tensor([[0, 1, 0]]))
    >>> [round(x, 3) for x in logprob[0].tolist()], [round(x, 3) for x in gap[0].tolist()]
    ([0.0, -2.127, -2.127], [0.0, -2.0, -2.0])
    """
    logp = lm_logits.float().log_softmax(-1)
    logprob = torch.zeros(input_ids.shape, dtype=logp.dtype, device=logp.device)
    gap = torch.zeros_like(logprob)
    following = logp[:, :-1].gather(-1, input_ids[:, 1:, None])[..., 0]
    logprob[:, 1:] = following
    gap[:, 1:] = following - logp[:, :-1].max(-1).values
    return logprob.clamp(min=LOGPROB_FLOOR), gap.clamp(min=LOGPROB_FLOOR)


def step_features(input_ids: torch.Tensor, logprob: torch.Tensor, gap: torch.Tensor, step_token_id: int) -> torch.Tensor:
    """(batch, tokens, 6): at each position, the features of the step the next separator closes.

    A separator belongs to the segment it closes; segment 0 is the prompt, so the so-far minimums
    leave it out.

    >>> ids = torch.tensor([[5, 9, 6, 7, 9, 8, 9]])  # prompt, sep, step of 2 tokens, sep, step, sep
    >>> lp = torch.tensor([[0.0, 0.0, -1.0, -3.0, 0.0, -0.5, 0.0]])
    >>> features = step_features(ids, lp, lp, step_token_id=9)
    >>> features[0, 4].tolist(), features[0, 6].tolist()
    ([-3.0, -2.0, -3.0, -2.0, -3.0, -3.0], [-0.5, -0.5, -0.5, -0.5, -3.0, -3.0])
    """
    is_separator = input_ids == step_token_id
    segment = torch.cumsum(is_separator.long(), dim=1) - is_separator.long()
    batch, width = input_ids.shape
    segments = int(segment.max()) + 1
    flat = (segment + torch.arange(batch, device=segment.device)[:, None] * segments).reshape(-1)
    member = ~is_separator.reshape(-1)

    def pooled(values: torch.Tensor, how: str) -> torch.Tensor:
        empty = torch.zeros(batch * segments, dtype=values.dtype, device=values.device)
        return empty.scatter_reduce(0, flat[member], values.reshape(-1)[member], reduce=how, include_self=False)

    per_step = torch.stack(
        [pooled(logprob, "amin"), pooled(logprob, "mean"), pooled(gap, "amin"), pooled(gap, "mean")], dim=-1
    )[flat].reshape(batch, width, 4)
    in_steps = (segment > 0) & ~is_separator
    so_far = [torch.where(in_steps, values, torch.zeros_like(values)).cummin(dim=1).values for values in (logprob, gap)]
    return torch.cat([per_step, so_far[0][..., None], so_far[1][..., None]], dim=-1)


class StepRewardModel(PreTrainedModel):
    """Scores every step of a solution at its separator; see the module docstring."""

    config_class = StepRewardConfig
    base_model_prefix = "lm"
    supports_gradient_checkpointing = True

    def __init__(self, config: StepRewardConfig, lm: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        self.lm = lm if lm is not None else AutoModelForCausalLM.from_config(config.base_config)
        features = len(STEP_FEATURES) if config.step_features else 0
        self.score = nn.Linear(hidden_size(config.base_config) + features, config.num_labels)
        nn.init.normal_(self.score.weight, std=0.02)
        nn.init.zeros_(self.score.bias)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """The LM arrives trained (or initialises itself); only the head is initialised here."""

    def get_input_embeddings(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        lm_labels: torch.Tensor | None = None,
        **kwargs,
    ) -> StepRewardOutput:
        """`labels`: the target at each separator (class index, or q for soft labels), -100
        elsewhere. `lm_labels`: the token to predict at each position of a good step, -100
        elsewhere (aligned with the inputs: position t's label is token t)."""
        output = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = output.hidden_states[-1]
        if self.config.step_features:
            logprob, gap = token_surprise(output.logits.detach(), input_ids)
            features = step_features(input_ids, logprob, gap, self.config.step_token_id)
            hidden = torch.cat([hidden, features.to(hidden.dtype)], dim=-1)
        logits = self.score(hidden)
        loss = step_loss = lm_loss = None
        if labels is not None:
            loss = step_loss = separator_loss(logits, labels, self.config.label_kind)
            if lm_labels is not None and self.config.lm_weight > 0 and bool((lm_labels != IGNORE_INDEX).any()):
                lm_loss = nn.functional.cross_entropy(
                    output.logits[:, :-1].float().reshape(-1, output.logits.shape[-1]),
                    lm_labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
                )
                loss = step_loss + self.config.lm_weight * lm_loss
        return StepRewardOutput(loss=loss, logits=logits, lm_logits=output.logits, step_loss=step_loss, lm_loss=lm_loss)


def separator_loss(logits: torch.Tensor, labels: torch.Tensor, label_kind: str) -> torch.Tensor:
    """Mean loss over the positions that carry a target: cross-entropy (hard) or BCE (soft)."""
    labelled = labels != IGNORE_INDEX
    picked, wanted = logits[labelled].float(), labels[labelled]
    if label_kind == "hard":
        return nn.functional.cross_entropy(picked, wanted.long())
    return nn.functional.binary_cross_entropy_with_logits(picked[:, 0], wanted.float())


def register() -> None:
    """Make the Auto classes know this model, in this process and in saved directories."""
    try:
        AutoConfig.register(MODEL_TYPE, StepRewardConfig)
    except ValueError:
        pass  # registered already
    from transformers import AutoModelForTokenClassification

    try:
        AutoModelForTokenClassification.register(StepRewardConfig, StepRewardModel)
    except ValueError:
        pass
    StepRewardConfig.register_for_auto_class()
    StepRewardModel.register_for_auto_class("AutoModelForTokenClassification")


register()
