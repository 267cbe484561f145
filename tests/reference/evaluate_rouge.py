# Vendored from huggingface/evaluate, metrics/rouge/rouge.py, commit
# a7dd338386a4fae9a1767e05eb9ef9479513d9e8 (the script `evaluate.load("rouge")` fetches from the hub).
# Copyright 2020 The HuggingFace Evaluate Authors. Licensed under the Apache License, Version 2.0.
#
# Changed: only `Tokenizer` and the body of `Rouge._compute` are kept, the latter as the `compute`
# method of a plain class (no `evaluate.Metric` base, whose `compute` only stores the inputs as
# strings and calls `_compute`). `evaluate.load("rouge")` downloads this script from the Hugging Face
# hub, which tests cannot reach.
"""ROUGE metric from Google Research github repo."""

from rouge_score import rouge_scorer, scoring


class Tokenizer:
    """Helper class to wrap a callable into a class with a `tokenize` method as used by rouge-score."""

    def __init__(self, tokenizer_func):
        self.tokenizer_func = tokenizer_func

    def tokenize(self, text):
        return self.tokenizer_func(text)


class Rouge:
    def compute(
        self, predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=False, tokenizer=None
    ):
        if rouge_types is None:
            rouge_types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]

        multi_ref = isinstance(references[0], list)

        if tokenizer is not None:
            tokenizer = Tokenizer(tokenizer)

        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer, tokenizer=tokenizer)
        if use_aggregator:
            aggregator = scoring.BootstrapAggregator()
        else:
            scores = []

        for ref, pred in zip(references, predictions):
            if multi_ref:
                score = scorer.score_multi(ref, pred)
            else:
                score = scorer.score(ref, pred)
            if use_aggregator:
                aggregator.add_scores(score)
            else:
                scores.append(score)

        if use_aggregator:
            result = aggregator.aggregate()
            for key in result:
                result[key] = result[key].mid.fmeasure

        else:
            result = {}
            for key in scores[0]:
                result[key] = list(score[key].fmeasure for score in scores)

        return result
