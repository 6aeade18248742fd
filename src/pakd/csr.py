"""Rows of a CSR matrix as (row, column) index pairs, in torch: the user histories EASE
scores from, the train items the distillation leaves out, the items top-K excludes."""
from __future__ import annotations

import numpy as np
import torch


def csr_entries(indptr, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(position in ``rows``, index into the stored entries) of every stored entry of the
    chosen rows, row by row - for arrays stored beside the column indices."""
    indptr = torch.as_tensor(np.asarray(indptr) if not torch.is_tensor(indptr) else indptr).long()
    start = indptr[rows]
    lens = indptr[rows + 1] - start
    row = torch.repeat_interleave(torch.arange(len(rows)), lens)
    offs = torch.arange(int(lens.sum())) - torch.repeat_interleave(lens.cumsum(0) - lens, lens)
    return row, torch.repeat_interleave(start, lens) + offs


def csr_take(indptr, indices, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(position in ``rows``, column) of every stored entry of the chosen rows, row by row.
    ``indptr``/``indices`` may be numpy arrays (a scipy matrix's) or tensors."""
    indices = torch.as_tensor(np.asarray(indices) if not torch.is_tensor(indices) else indices)
    row, entry = csr_entries(indptr, rows)
    return row, indices[entry].long()


def csr_mask(matrix, n_cols: int) -> torch.Tensor:
    """The scipy CSR ``matrix`` as a dense bool tensor [rows, n_cols] of its stored entries."""
    n_rows = len(matrix.indptr) - 1
    row, col = csr_take(matrix.indptr, matrix.indices, torch.arange(n_rows))
    out = torch.zeros(n_rows, n_cols, dtype=torch.bool)
    out[row, col] = True
    return out


class CsrRows:
    """A users x items bool matrix kept sparse (scipy CSR) that hands out dense rows:
    ``mask[users]`` is the [len(users), n_cols] bool block a dense matrix would give, without
    a users x items matrix ever being held whole."""

    def __init__(self, matrix):
        self.matrix = matrix
        self.shape = matrix.shape
        self.indptr = torch.from_numpy(np.asarray(matrix.indptr, dtype=np.int64))
        self.indices = torch.from_numpy(np.asarray(matrix.indices, dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def pairs(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(position in ``rows``, column) of every stored entry of ``rows``."""
        return csr_take(self.indptr, self.indices, rows)

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        rows = torch.as_tensor(rows).long().reshape(-1)
        out = torch.zeros(len(rows), self.shape[1], dtype=torch.bool)
        r, c = self.pairs(rows)
        out[r, c] = True
        return out

    def row_counts(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]
