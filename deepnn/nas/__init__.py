"""Neural architecture search with reinforcement learning: lecture item C20.

Zoph & Le 2016, "Neural architecture search with reinforcement learning": a recurrent controller
samples an architecture string; the child network it describes is trained and its validation
accuracy is the reward ``R``; the gradient of the sample's log-probability is scaled by ``R − b``
(REINFORCE, Williams 1992, "Simple statistical gradient-following algorithms for connectionist
reinforcement learning") and the controller takes a step. The paper's CNN space, shrunk for a CPU:
a few conv layers, each choosing a filter size and a number of filters.

====  ==================================================  ============================================
item  concept                                             code
====  ==================================================  ============================================
C20   search space; architecture string → child CNN       :class:`SearchSpace`, :func:`build_child`
C20   LSTM controller, one softmax per decision           :class:`Controller`
C20   REINFORCE with a moving-average baseline            :func:`reinforce_step`, :func:`search`
C20   reward: a child's validation accuracy               :func:`child_reward`
C20   Zoph & Le's CNN space: filter height/width, filters,  :class:`ChildSpace`, ``nas_child`` model
      stride, skip connections through anchor points      (:mod:`deepnn.models.nas_child`)
C20   crash-safe, resumable, parallel search; random       :func:`run_search` (:mod:`.runner`),
      search; report                                      :mod:`.report`
====  ==================================================  ============================================
"""

from __future__ import annotations

from .controller import ChildSpace, Controller, SearchSpace, build_child
from .runner import SearchSettings, child_seed, proxy_config, read_trials, run_search
from .search import SearchResult, Step, child_reward, reinforce_step, search

__all__ = [
    "ChildSpace", "Controller", "SearchResult", "SearchSettings", "SearchSpace", "Step", "build_child", "child_reward",
    "child_seed", "proxy_config", "read_trials", "reinforce_step", "run_search", "search",
]
