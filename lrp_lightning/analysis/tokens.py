"""Token runs in a fixed-length form: what SpRAy clusters and the findings test for text models.

The relevance of a token run is per token and of variable length (one value per token of a sample,
padding removed). SpRAy compares vectors of one length, and a shortcut in text is a *vocabulary item*
(a tag, a signature, a leaked label word) more than a position, so :class:`TokenForm` turns each
sample into two blocks:

* **bag of tokens** (``vocabulary_size + 1`` columns): the sample's relevance summed per token id over
  the epoch's vocabulary columns, the ``vocabulary_size`` token ids that carry the most relevance over
  all analysed samples (each sample's absolute relevance normalised to 1 first, so a few samples with
  large scores do not choose the vocabulary), plus one column for every other token. Two samples that
  rely on the same word wherever it stands are close here.
* **positions** (``position_bins`` columns): the relevance per position, sum-pooled to equal bins of
  ``[0, max_tokens)``; it tells apart samples that read the start of the text from those that read the
  end, whatever the words.

Each block holds absolute relevance by default (``sign``), is scaled to unit L2 norm per sample, and
the position block is weighted by ``position_weight`` (0.25: words first); the concatenation is what
neighbours, spectra, clusterings and layouts compare. Both defaults were chosen on the runs of
``examples/text_shortcut.py``: a trained text model puts sizeable relevance of either sign on filler
words, and a shortcut token stands anywhere in the text, so signed values and a heavier position block
split the samples that rely on the shortcut (their 10 nearest neighbours agreed on holding it 84% of
the time in the last epoch with signed values at weight 0.5, 92% with these defaults; the shortcut's
finding then held 97% to 100% of its texts in every epoch, at purity 1.00).

The *indicators and findings* use the bag block only, as the shares of each sample's absolute relevance
per vocabulary column (each sample's absolute relevance summed per token id, so a word's positive and
negative occurrences do not cancel), and as the inputs of evidence (b) the presence of each vocabulary
item in each sample (1 if the sample holds the token, else 0). A cluster's prototype is its mean signed
bag of tokens (unit L1 per sample).

A finding of a token run is therefore one token id: the cluster's relevance concentrates on it (its
share in the cluster against the rest of the class, evidence (a)), the members contain it (evidence
(b): one token id shared), and the permutation test with Benjamini-Hochberg control (c) is the one of
every modality (:mod:`~lrp_lightning.analysis.findings`).

The vocabulary is chosen per epoch from that epoch's relevance, so it is deterministic for a stored
epoch (its commit is part of the analysis key) and the findings name token ids, not columns: a finding
continues across epochs whose vocabularies differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .._validation import argument_error, check_choice, check_float, check_int
from .base import Step
from .regions import Region, token_regions

__all__ = ["TokenForm", "TokenMaps"]

SIGN_MODES = ("signed", "absolute", "positive")


@dataclass
class TokenMaps:
    """An epoch's token relevance in :class:`TokenForm`'s fixed-length form.

    Attributes
    ----------
    features : numpy.ndarray of float32, shape (N, vocabulary + 1 + position bins)
        What SpRAy compares (both blocks, see the module docstring).
    absolute : numpy.ndarray of float32, shape (N, vocabulary + 1)
        Shares of each sample's absolute relevance per vocabulary column (rows sum to 1; 0 for a sample
        without relevance); the last column is every other token.
    signed : numpy.ndarray of float32, shape (N, vocabulary + 1)
        Signed relevance per vocabulary column over the sample's absolute total (prototypes).
    presence : numpy.ndarray of float32, shape (N, vocabulary + 1)
        1 where the sample holds the column's token (the inputs of evidence (b)).
    vocabulary : numpy.ndarray of int64, shape (vocabulary,)
        The token id of each column.
    regions : list of Region
        One per vocabulary column, named by the token (:func:`~.regions.token_regions`).
    """

    features: np.ndarray
    absolute: np.ndarray
    signed: np.ndarray
    presence: np.ndarray
    vocabulary: np.ndarray
    regions: list[Region]

    @property
    def grid(self) -> tuple[int, int]:
        """The analysis grid of the bag block, ``(1, vocabulary + 1)``."""
        return 1, int(self.absolute.shape[1])

    def __len__(self) -> int:
        return int(self.features.shape[0])


def _flat(
    token_ids: Sequence[np.ndarray], relevance: Sequence[np.ndarray], owner: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated ids, relevance, row and position of every token; checks lengths and values."""
    if len(token_ids) != len(relevance):
        raise argument_error(
            owner, "relevance", f"one array per sample of token_ids ({len(token_ids)})", f"{len(relevance)} arrays"
        )
    ids = [np.asarray(t, dtype=np.int64).reshape(-1) for t in token_ids]
    values = [np.asarray(r, dtype=np.float64).reshape(-1) for r in relevance]
    for i, (t, r) in enumerate(zip(ids, values)):
        if t.shape != r.shape:
            raise argument_error(
                owner, f"relevance[{i}]", f"one value per token of the sample ({t.size} tokens)", f"{r.size} values"
            )
        if not np.isfinite(r).all():
            raise argument_error(owner, f"relevance[{i}]", "finite (no NaN or infinity)", "non-finite values")
    lengths = np.array([t.size for t in ids], dtype=np.int64)
    rows = np.repeat(np.arange(len(ids)), lengths)
    positions = np.concatenate([np.arange(n) for n in lengths]) if len(ids) else np.empty(0, np.int64)
    flat_ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
    flat_values = np.concatenate(values) if values else np.empty(0)
    return flat_ids, flat_values, rows, positions


def _per_row(rows: np.ndarray, columns: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    flat = np.bincount(rows * shape[1] + columns, weights=values, minlength=shape[0] * shape[1])
    return flat.reshape(shape)


def _unit_l2(block: np.ndarray) -> np.ndarray:
    norms = np.sqrt((block**2).sum(axis=1, keepdims=True))
    return np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)


class TokenForm(Step):
    """Token relevance of variable length → a bag-of-tokens block and a position block (module docstring).

    Parameters
    ----------
    vocabulary_size : int, default 256
        Vocabulary columns of the bag block: the token ids with the most relevance in the epoch (fewer
        when the epoch holds fewer distinct tokens); every other token shares one more column.
    position_bins : int, default 16
        Bins of the position block (at most ``max_tokens``); 0 leaves positions out.
    position_weight : float, default 0.25
        Weight of the (unit-norm) position block against the (unit-norm) bag block.
    sign : {"signed", "absolute", "positive"}, default "absolute"
        The relevance the clustering compares: signed, absolute, or positive values (the findings
        always measure absolute shares).

    Examples
    --------
    >>> import numpy as np
    >>> form = TokenForm(vocabulary_size=2, position_bins=0)
    >>> maps = form.transform([np.array([5, 7, 5]), np.array([9])], [np.array([1.0, 2.0, 1.0]), np.array([1.0])])
    >>> maps.vocabulary.tolist(), maps.absolute.round(2).tolist()
    ([9, 5], [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    """

    def __init__(
        self,
        vocabulary_size: int = 256,
        position_bins: int = 16,
        position_weight: float = 0.25,
        sign: str = "absolute",
    ) -> None:
        owner = "TokenForm"
        self.vocabulary_size = check_int(vocabulary_size, "vocabulary_size", owner, 1)
        self.position_bins = check_int(position_bins, "position_bins", owner, 0)
        self.position_weight = check_float(position_weight, "position_weight", owner, 0.0)
        self.sign = check_choice(sign, "sign", owner, SIGN_MODES)

    def vocabulary(self, token_ids: Sequence[np.ndarray], relevance: Sequence[np.ndarray]) -> np.ndarray:
        """The token ids of the vocabulary columns: most relevance first (ties: smaller id first).

        Each sample's absolute relevance is normalised to sum 1 before it is summed per token id.
        """
        ids, values, rows, _ = _flat(token_ids, relevance, "TokenForm.vocabulary")
        if ids.size == 0:
            return np.empty(0, np.int64)
        magnitude = np.abs(values)
        totals = np.bincount(rows, weights=magnitude, minlength=len(token_ids))
        weight = np.divide(magnitude, totals[rows], out=np.zeros_like(magnitude), where=totals[rows] > 0)
        unique, inverse = np.unique(ids, return_inverse=True)
        mass = np.bincount(inverse, weights=weight, minlength=unique.size)
        keep = mass > 0
        unique, mass = unique[keep], mass[keep]
        order = np.lexsort((unique, -mass))[: self.vocabulary_size]
        return unique[order].astype(np.int64)

    def transform(
        self,
        token_ids: Sequence[np.ndarray],
        relevance: Sequence[np.ndarray],
        *,
        vocabulary: Sequence[int] | None = None,
        names: Mapping[int, str] | None = None,
        max_tokens: int | None = None,
    ) -> TokenMaps:
        """The fixed-length form of an epoch's (or a category's) token relevance.

        Parameters
        ----------
        token_ids : sequence of int arrays
            Per sample, its token ids (padding removed).
        relevance : sequence of float arrays
            Per sample, one relevance value per token (same lengths as ``token_ids``; finite).
        vocabulary : sequence of int, optional
            The vocabulary columns. Default: :meth:`vocabulary` of these samples.
        names : mapping of int to str, optional
            Token strings by id, for the regions' names.
        max_tokens : int, optional
            The length the position bins cover. Default: the longest sample.

        Returns
        -------
        TokenMaps
        """
        owner = "TokenForm.transform"
        ids, values, rows, positions = _flat(token_ids, relevance, owner)
        vocab = self.vocabulary(token_ids, relevance) if vocabulary is None else np.asarray(vocabulary, np.int64)
        n, k = len(token_ids), int(vocab.size)
        order = np.argsort(vocab, kind="stable")
        where = np.searchsorted(vocab[order], ids)
        found = where < k
        found[found] &= vocab[order][where[found]] == ids[found]
        columns = np.where(found, order[np.minimum(where, max(k - 1, 0))], k)
        magnitude = np.abs(values)
        absolute = _per_row(rows, columns, magnitude, (n, k + 1))
        signed = _per_row(rows, columns, values, (n, k + 1))
        presence = (_per_row(rows, columns, np.ones_like(values), (n, k + 1)) > 0).astype(np.float32)
        totals = absolute.sum(axis=1, keepdims=True)
        absolute = np.divide(absolute, totals, out=np.zeros_like(absolute), where=totals > 0)
        signed = np.divide(signed, totals, out=np.zeros_like(signed), where=totals > 0)
        compared = {"signed": values, "absolute": magnitude, "positive": np.maximum(values, 0.0)}[self.sign]
        blocks = [_unit_l2(_per_row(rows, columns, compared, (n, k + 1)))]
        longest = int(max((len(t) for t in token_ids), default=1))
        length = longest if max_tokens is None else check_int(max_tokens, "max_tokens", owner, 1)
        bins = min(self.position_bins, length)
        if bins > 0:
            inside = positions < length
            position_bin = positions[inside] * bins // length
            block = _per_row(rows[inside], position_bin, compared[inside], (n, bins))
            blocks.append(self.position_weight * _unit_l2(block))
        return TokenMaps(
            features=np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32),
            absolute=absolute.astype(np.float32),
            signed=signed.astype(np.float32),
            presence=presence,
            vocabulary=vocab,
            regions=token_regions(vocab.tolist(), names),
        )
