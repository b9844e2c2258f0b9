"""``deepnn.metrics``: the BLEU and chrF wrappers pass sacrebleu's standard options through (cased, 13a),
agree with sacrebleu called directly, and reject malformed corpora."""

from __future__ import annotations

import sys

import pytest

from deepnn.errors import UserError
from deepnn.metrics import corpus_bleu, corpus_chrf, translation_scores

sacrebleu = pytest.importorskip("sacrebleu")

REFERENCES = ["The cat sat on the mat in the sun.",
              "Hello, how are you doing today?",
              "Neural networks translate sentences one token at a time."]
HYPOTHESES = ["The cat sat on a mat in the sun.",
              "Hello, how are you today?",
              "Neural networks translate a sentence one word at a time."]


def test_identical_corpora_score_100() -> None:
    assert corpus_bleu(REFERENCES, REFERENCES) == pytest.approx(100.0)
    assert corpus_chrf(REFERENCES, REFERENCES) == pytest.approx(100.0)
    assert translation_scores(REFERENCES, REFERENCES) == pytest.approx({"bleu": 100.0, "chrf": 100.0})


def test_scores_equal_sacrebleu_with_the_standard_options() -> None:
    expected_bleu = sacrebleu.metrics.BLEU(tokenize="13a", lowercase=False).corpus_score(HYPOTHESES, [REFERENCES])
    expected_chrf = sacrebleu.metrics.CHRF(char_order=6, word_order=0, lowercase=False).corpus_score(
        HYPOTHESES, [REFERENCES])
    bleu, chrf = corpus_bleu(HYPOTHESES, REFERENCES), corpus_chrf(HYPOTHESES, REFERENCES)
    assert bleu == pytest.approx(expected_bleu.score) and chrf == pytest.approx(expected_chrf.score)
    assert 20 < bleu < 90 and 40 < chrf < 95  # partly right: between nothing and everything
    assert translation_scores(HYPOTHESES, REFERENCES) == {"bleu": bleu, "chrf": chrf}
    # corpus-level: n-gram counts summed over sentences, not a mean of sentence scores
    sentence_mean = sum(corpus_bleu([h], [r]) for h, r in zip(HYPOTHESES, REFERENCES)) / len(HYPOTHESES)
    assert bleu != pytest.approx(sentence_mean)


def test_casing_and_tokenisation_matter() -> None:
    lower = [line.lower() for line in REFERENCES]
    assert corpus_bleu(lower, REFERENCES) < 100 and corpus_chrf(lower, REFERENCES) < 100  # cased
    lowercased = sacrebleu.metrics.BLEU(lowercase=True).corpus_score(lower, [REFERENCES]).score
    assert lowercased == pytest.approx(100.0) and corpus_bleu(lower, REFERENCES) < lowercased
    assert corpus_bleu(["Hello there, my friend"], ["hello there, my friend"]) < 100
    # 13a splits punctuation off: "sun." matches "sun ." once tokenised, so a detokenised output loses nothing
    assert corpus_bleu(["The cat sat on the mat in the sun ."], ["The cat sat on the mat in the sun."]) \
        == pytest.approx(100.0)


def test_chrf_is_sensible() -> None:
    near = corpus_chrf(["The cats sat on the mats."], ["The cat sat on the mat."])
    far = corpus_chrf(["Completely unrelated words here."], ["The cat sat on the mat."])
    assert 0 <= far < near < 100
    # chrF credits the "cat" inside "cats", BLEU does not
    assert corpus_bleu(["The cats sat on the mats."], ["The cat sat on the mat."]) < near


def test_errors(monkeypatch) -> None:
    for hypotheses, references, match in [(["a"], ["a", "b"], "1 hypotheses but 2 references"),
                                          ([], [], "empty"),
                                          ("a sentence", ["a sentence"], "list of strings"),
                                          ([1, 2], ["a", "b"], "list of strings")]:
        for score in (corpus_bleu, corpus_chrf, translation_scores):
            with pytest.raises(UserError, match=match):
                score(hypotheses, references)
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # not installed
    monkeypatch.setitem(sys.modules, "sacrebleu.metrics", None)
    with pytest.raises(UserError, match="pip install sacrebleu"):
        corpus_bleu(["a"], ["a"])
