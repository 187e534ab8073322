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


class ZScoreLoss(nn.Module):
    """Cross-entropy over per-read standardised similarities (a recall-shaped alternative to InfoNCE).

    For read i, z_ij = (s_ij - mean_i) / std_i, with mean_i and std_i over read i's negatives (its
    fragments other than its own, masked ones left out); loss = CE(z_i / tau, own fragment). Genome-wide
    recall asks whether the positive beats the largest of millions of negatives, which lies about
    5-6 standard deviations above their mean, so what matters is the positive's margin in units of
    the negatives' spread. InfoNCE at t = 0.05 scores raw cosines: it rewards raising every positive's
    cosine, and barely sees the spread (MODEL.md, "Why InfoNCE drove the spaced-seed scale to 0").
    Here shrinking the spread counts as much as raising the positive. Same call signature as InfoNCELoss."""

    def __init__(self, tau: float = 1.0):
        super().__init__()
        self.tau = tau
        self.log_temperature = nn.Parameter(torch.tensor(0.0), requires_grad=False)  # trainer interface

    @property
    def temperature(self) -> float:
        return self.tau

    def forward(self, reads: torch.Tensor, fragments: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b = reads.shape[0]
        sims = reads @ fragments.T
        eye = torch.zeros_like(sims, dtype=torch.bool)
        eye[torch.arange(b), torch.arange(b)] = True
        drop = eye if mask is None else (mask | eye)
        if mask is not None:
            drop = drop.clone()
            drop[torch.arange(b), torch.arange(b)] = True
        keep = (~drop).float()
        count = keep.sum(1, keepdim=True).clamp_min(2.0)
        mean = (sims * keep).sum(1, keepdim=True) / count
        var = (((sims - mean) ** 2) * keep).sum(1, keepdim=True) / (count - 1)
        z = (sims - mean) / var.clamp_min(1e-12).sqrt()
        other = drop & ~eye  # second positives: out of the softmax
        logits = (z / self.tau).masked_fill(other, float("-inf"))
        return F.cross_entropy(logits, torch.arange(b, device=reads.device))

    @torch.no_grad()
    def accuracy(self, reads, fragments, mask=None) -> float:
        return InfoNCELoss.accuracy(self, reads, fragments, mask)
