"""Retrieval evaluation: evaluation sets on disk, trec_eval metrics, the `docrag eval` runner, synthetic
evaluation sets from the user's PDFs, query synthesis (also used to build training pairs), comparisons."""

from .build import BuildReport, LLMUnavailable, QuestionWriter, build_eval_set, llm_question_writer, split_pages
from .compare import compare_results, paired_test
from .dataset import CorpusRow, DatasetError, EvalDataset, Query, load_dataset
from .metrics import METRICS, evaluate, per_query, rank
from .queries import QUERY_TYPES, SynthQuery, longest_shared_run, page_queries, repeated_lines, synthesize_queries
from .runner import EvalEvents, EvalResult, EvalRunner, ModeResult

__all__ = [
    "METRICS", "QUERY_TYPES", "BuildReport", "CorpusRow", "DatasetError", "EvalDataset", "EvalEvents", "EvalResult",
    "EvalRunner", "LLMUnavailable", "ModeResult", "Query", "QuestionWriter", "SynthQuery", "build_eval_set",
    "compare_results", "evaluate", "llm_question_writer", "load_dataset", "longest_shared_run", "page_queries",
    "paired_test", "per_query", "rank", "repeated_lines", "split_pages", "synthesize_queries",
]
