"""InfoNCE with in-batch negatives: the contrastive loss that trains the encoder.

For a batch of B (read, fragment) pairs the similarity matrix S = reads @ [fragments; extra]^T / t
(cosines of unit vectors over temperature t) is scored with cross-entropy against the diagonal:
read i must pick its own fragment among the B fragments of the batch plus any extra unpaired
fragments (more negatives for free). With `symmetric`, fragment i must also pick read i among the
B reads. The temperature is a parameter (log-parameterised, clamped to [min_t, 1]) when `learnable`,
initialised at 0.05 as in DNA-ESA. Overlapping windows of one genome are never in the same batch
(fragments are drawn at random over megabases), so in-batch "negatives" are true negatives.
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

    def forward(self, reads: torch.Tensor, fragments: torch.Tensor) -> torch.Tensor:
        b = reads.shape[0]
        if fragments.shape[0] < b:
            raise ValueError(f"need at least one fragment per read: {b} reads, {fragments.shape[0]} fragments")
        t = self.log_temperature.clamp(self.min_log_t, 0.0).exp()
        logits = reads @ fragments.T / t
        target = torch.arange(b, device=reads.device)
        loss = F.cross_entropy(logits, target)
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits[:, :b].T, target))
        return loss

    @torch.no_grad()
    def accuracy(self, reads: torch.Tensor, fragments: torch.Tensor) -> float:
        """Share of reads whose own fragment has the highest similarity in the batch."""
        return float(((reads @ fragments.T).argmax(1) == torch.arange(reads.shape[0], device=reads.device)).float().mean())
