"""Corpus-level translation metrics (lecture T4): BLEU and chrF through ``sacrebleu``, never re-implemented.

- :func:`corpus_bleu`: BLEU (Papineni et al. 2002, "BLEU: a method for automatic evaluation of machine
  translation"): the geometric mean of the modified 1- to 4-gram precisions over the whole corpus, times a
  brevity penalty; 0–100.
- :func:`corpus_chrf`: chrF (Popović 2015, "chrF: character n-gram F-score for automatic MT evaluation"):
  the F-score (β = 2, recall weighted twice) of character 1- to 6-grams; 0–100.
- :func:`translation_scores`: both, as ``{"bleu": ..., "chrf": ...}``.

All three take detokenised, cased text, one hypothesis and one reference per sentence, and use sacrebleu's
standard settings (Post 2018, "A call for clarity in reporting BLEU scores"): BLEU with the ``13a``
tokeniser, cased, exponential smoothing; chrF with character order 6, no word n-grams, cased. Scores are
corpus-level: n-gram counts are summed over all sentences before the precisions are taken, which is not the
mean of sentence scores. ``sacrebleu`` is imported only when a score is asked for (``pip install sacrebleu``).

    >>> round(corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 6)
    100.0
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from .errors import UserError

__all__ = ["corpus_bleu", "corpus_chrf", "translation_scores"]


def _sacrebleu_metrics() -> ModuleType:
    """``sacrebleu.metrics``, imported on first use."""
    try:
        import sacrebleu.metrics
    except ImportError:
        raise UserError("translation metrics need sacrebleu, which is not installed; run `pip install sacrebleu`") \
            from None
    return sacrebleu.metrics


def _check_corpora(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    """The two corpora as lists, checked to be non-empty lists of strings of the same length."""
    for name, corpus in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(corpus, str) or not isinstance(corpus, Sequence) \
                or not all(isinstance(line, str) for line in corpus):
            raise UserError(f"{name} must be a list of strings, one sentence each; got {type(corpus).__name__}"
                            + ("" if isinstance(corpus, str) else " with non-string items")
                            + " (wrap a single sentence in a list)")
    if not hypotheses:
        raise UserError("hypotheses and references are empty; pass at least one sentence of each")
    if len(hypotheses) != len(references):
        raise UserError(f"{len(hypotheses)} hypotheses but {len(references)} references; pass one reference per "
                        "hypothesis, in the same order")
    return list(hypotheses), list(references)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (Papineni et al. 2002) of ``hypotheses`` against one reference each, 0–100.

    sacrebleu's ``BLEU(tokenize="13a", lowercase=False)``: cased, detokenised input.

    Args:
        hypotheses: ``N ≥ 1`` system outputs, detokenised strings.
        references: the ``N`` reference translations, in the same order.
    """
    hypotheses, references = _check_corpora(hypotheses, references)
    bleu = _sacrebleu_metrics().BLEU(tokenize="13a", lowercase=False)
    return float(bleu.corpus_score(hypotheses, [references]).score)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (Popović 2015) of ``hypotheses`` against one reference each, 0–100.

    sacrebleu's ``CHRF()``: character 6-grams, β = 2, no word n-grams (chrF, not chrF++), cased.

    Args:
        hypotheses: ``N ≥ 1`` system outputs, detokenised strings.
        references: the ``N`` reference translations, in the same order.
    """
    hypotheses, references = _check_corpora(hypotheses, references)
    chrf = _sacrebleu_metrics().CHRF(lowercase=False)
    return float(chrf.corpus_score(hypotheses, [references]).score)


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``{"bleu": corpus_bleu(...), "chrf": corpus_chrf(...)}`` for one corpus."""
    return {"bleu": corpus_bleu(hypotheses, references), "chrf": corpus_chrf(hypotheses, references)}
