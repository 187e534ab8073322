"""InfoNCE with in-batch negatives: the contrastive loss that trains the encoder.

For a batch of B (read, fragment) pairs the similarity matrix S = reads @ [fragments; extra]^T / t
(cosines of unit vectors over temperature t) is scored with cross-entropy against the diagonal:
read i must pick its own fragment among the B fragments of the batch plus any extra unpaired
fragments (more negatives for free); a `mask` removes fragments that also contain the read. With `symmetric`, fragment i must also pick read i among the
B reads. The temperature is a parameter (log-parameterised, clamped to [min_t, 1]) when `learnable`,
initialised at 0.05 as in DNA-ESA. Random fragments of a few-megabase genome do contain a given read now and then once there are
hundreds of them (about a quarter of the time for a thousand on E. coli), so the trainer passes that
mask; partial overlaps (the store's neighbouring windows) stay negatives, as they are at search time.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class InfoNCELoss(nn.Module):
    """`loss(reads (B, d), fragments (B + E, d))` -> scalar; rows are L2-normalised embeddings."""

    def __init__(self, temperature: float = 0.05, learnable: bool = True, symmetric: bool = True, min_temperature: float = 0.01):
        super().__init__()
        if not min_temperature <= temperature <= 1.0:
            raise ValueError(f"temperature must be in [{min_temperature}, 1], got {temperature}")
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learnable)
        self.symmetric = symmetric
        self.min_log_t = math.log(min_temperature)

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.detach().clamp(self.min_log_t, 0.0).exp())

    def forward(self, reads: torch.Tensor, fragments: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`mask` (B, B + E) bool, optional: True where fragment j != i also contains read i (a
        second positive, left out of read i's negatives and of fragment j's)."""
        b = reads.shape[0]
        if fragments.shape[0] < b:
            raise ValueError(f"need at least one fragment per read: {b} reads, {fragments.shape[0]} fragments")
        t = self.log_temperature.clamp(self.min_log_t, 0.0).exp()
        logits = reads @ fragments.T / t
        if mask is not None:
            mask = mask.clone()
            mask[torch.arange(b), torch.arange(b)] = False
            logits = logits.masked_fill(mask, float("-inf"))
        target = torch.arange(b, device=reads.device)
        loss = F.cross_entropy(logits, target)
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits[:, :b].T, target))
        return loss

    @torch.no_grad()
    def accuracy(self, reads: torch.Tensor, fragments: torch.Tensor, mask: torch.Tensor | None = None) -> float:
        """Share of reads whose own fragment has the highest similarity in the batch (masked ones excluded)."""
        sims = reads @ fragments.T
        b = reads.shape[0]
        if mask is not None:
            mask = mask.clone()
            mask[torch.arange(b), torch.arange(b)] = False
            sims = sims.masked_fill(mask, float("-inf"))
        return float((sims.argmax(1) == torch.arange(b, device=reads.device)).float().mean())
