"""The evaluation layer: reference profiles of training data, drift between them and live data, live accuracy.

Modules are imported directly (``shipyard.evaluation.profile``, ``.drift``, ``.accuracy``, ``.compare``); this
package imports nothing so that ``import shipyard`` stays fast.
"""
