"""Node types the engine runs. Each takes its decoded config and the run's state, returns an output."""

from worker.nodes.base import NodeFailed, NodeRun
from worker.nodes.registry import NODE_RUNNERS

__all__ = ["NODE_RUNNERS", "NodeFailed", "NodeRun"]
