"""Analysis tools: what a network costs, layer by layer, and how the zoo compares.

* :mod:`deepnn.analysis.summary`: per-layer shapes, parameters, FLOPs/MACs, receptive
  field and activation memory (lecture items C12, C14, C16).
* :mod:`deepnn.analysis.chart`: the accuracy vs FLOPs vs parameters bubble chart (C19).
"""

from .summary import LastLayer, LayerRow, Summary, compare_markdown, summarize_model, summary

__all__ = ["LastLayer", "LayerRow", "Summary", "compare_markdown", "summarize_model", "summary"]
