"""The transformers ``Trainer`` pieces: dynamic-padding collation, the seeded length-grouped sampler and the
Trainer subclass (that sampler, loss computed only where a labelled token is predicted)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rait.chat import IGNORE_INDEX


@dataclass
class PaddingCollator:
    """Right-pads a batch to its longest example: ``input_ids`` with the pad id, ``labels`` with -100."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[row, :n] = torch.tensor(feature["input_ids"])
            labels[row, :n] = torch.tensor(feature["labels"])
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Orders examples so that each batch holds conversations of similar length (transformers' grouping:
    shuffle, sort within mega-batches, longest batch first), with a per-epoch seed so that a resumed run
    sees exactly the order an uninterrupted run would (the Trainer calls ``set_epoch``)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def _trainer_class(group_by_length: bool):
    from transformers import Trainer

    class RaitTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if not group_by_length:
                return super()._get_train_sampler(train_dataset)
            group = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            return LengthGroupedSampler([len(e["input_ids"]) for e in dataset], group, self.args.seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """The model's causal-LM loss, with the vocabulary projection computed only at the positions
            that predict a labelled token (assistant turns are a fraction of each conversation)."""
            labels = inputs["labels"]
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
            features = {k: v for k, v in inputs.items() if k != "labels"}
            outputs = model(**features, logits_to_keep=keep)
            loss = torch.nn.functional.cross_entropy(
                outputs.logits.float(), labels[:, 1:][keep[:, :-1]], reduction="sum"
            )
            if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
                loss = loss / num_items_in_batch  # the Trainer then skips its division by accumulation
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes
            else:
                loss = loss / keep.sum().clamp(min=1)
            return (loss, outputs) if return_outputs else loss

    return RaitTrainer
