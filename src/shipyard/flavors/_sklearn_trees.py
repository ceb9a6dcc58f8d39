"""Bounds checks of the node arrays of tree models, run on every load of a skops artifact.

scikit-learn's tree code (``Tree`` for DecisionTree*, RandomForest*, ExtraTrees*, GradientBoosting*, and
``TreePredictor`` for HistGradientBoosting*) follows the child and feature indices stored in its node arrays
without checking them. skops rebuilds those arrays from the file as they are, so a crafted file could make
``predict`` read outside its memory or loop for ever. This module refuses, before any prediction, a tree
whose node arrays are not what scikit-learn itself builds: every split node's children come after it and
inside the array, every split feature is a column the estimator checks its input for, and every
categorical split points at a stored bitset of a categorical feature.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.errors import UntrustedArtifact

__all__ = ["check_tree_nodes"]

# attributes through which an ensemble hands its own (already checked) input to the trees it holds
_SAME_INPUT = frozenset({"tree_", "estimators_", "estimator_", "_predictors"})
_MAX_DEPTH = 64


def check_tree_nodes(model: Any, where: str) -> None:
    """Raise :class:`UntrustedArtifact` if a tree anywhere in ``model`` has node indices out of bounds.

    >>> from sklearn.tree import DecisionTreeClassifier
    >>> check_tree_nodes(DecisionTreeClassifier().fit([[0.0], [1.0]], [0, 1]), "the model")
    """
    _visit(model, None, None, where, set(), 0)


def _visit(value: Any, bound: int | None, categorical: Any, where: str, seen: set[int], depth: int) -> None:
    if depth > _MAX_DEPTH or id(value) in seen or isinstance(value, (str, bytes, int, float, type(None))):
        return
    seen.add(id(value))
    kind = type(value).__name__
    module = type(value).__module__
    if module == "sklearn.tree._tree" and kind == "Tree":
        _check_tree(value, bound, where)
        return
    if module.endswith("_hist_gradient_boosting.predictor") and kind == "TreePredictor":
        _check_predictor(value, bound, categorical, where)
        return
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            for item in value.ravel():
                _visit(item, bound, categorical, where, seen, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _visit(item, bound, categorical, where, seen, depth + 1)
        return
    if isinstance(value, dict):
        for item in value.values():
            _visit(item, None, None, where, seen, depth + 1)
        return
    attributes = getattr(value, "__dict__", None)
    if not isinstance(attributes, dict):
        return
    own = attributes.get("n_features_in_")
    here = bound
    if isinstance(own, (int, np.integer)):
        here = int(own) if bound is None else min(bound, int(own))
    # HistGradientBoosting numbers its categorical features first once they are remapped
    cats = attributes.get("_is_categorical_remapped", attributes.get("is_categorical_"))
    for name, item in attributes.items():
        if name in _SAME_INPUT:
            _visit(item, here, cats, where, seen, depth + 1)
        else:
            _visit(item, None, None, where, seen, depth + 1)


def _refuse(where: str, what: str) -> UntrustedArtifact:
    return UntrustedArtifact(
        f"{where} holds a tree whose {what}; scikit-learn never writes such a tree, so the file was crafted or "
        "damaged and will not be loaded. Register the model again from a trusted source"
    )


def _check_tree(tree: Any, bound: int | None, where: str) -> None:
    count = int(tree.node_count)
    if count < 1 or count > int(tree.capacity):
        raise _refuse(where, f"node count {count} does not fit its {int(tree.capacity)} stored nodes")
    left = np.asarray(tree.children_left)
    right = np.asarray(tree.children_right)
    feature = np.asarray(tree.feature)
    split = left != -1
    index = np.arange(count)
    if bool(np.any(right[~split] != -1)):
        raise _refuse(where, "leaves have children")
    if bool(np.any((left[split] <= index[split]) | (left[split] >= count))) or bool(
        np.any((right[split] <= index[split]) | (right[split] >= count))
    ):
        raise _refuse(where, "child indices point outside the tree or back up it")
    limit = int(tree.n_features) if bound is None else min(bound, int(tree.n_features))
    if bool(np.any((feature[split] < 0) | (feature[split] >= limit))):
        raise _refuse(where, f"split features are not among the {limit} input columns")


def _check_predictor(predictor: Any, bound: int | None, categorical: Any, where: str) -> None:
    nodes = np.asarray(predictor.nodes)
    count = len(nodes)
    if count < 1:
        raise _refuse(where, "node array is empty")
    split = nodes["is_leaf"] == 0
    index = np.arange(count)
    left = nodes["left"].astype(np.int64)
    right = nodes["right"].astype(np.int64)
    if bool(np.any((left[split] <= index[split]) | (left[split] >= count))) or bool(
        np.any((right[split] <= index[split]) | (right[split] >= count))
    ):
        raise _refuse(where, "child indices point outside the tree or back up it")
    feature = nodes["feature_idx"][split]
    if bool(np.any(feature < 0)) or (bound is not None and bool(np.any(feature >= bound))):
        raise _refuse(where, "split features are not among the input columns")
    cat_split = split & (nodes["is_categorical"] != 0)
    if bool(np.any(cat_split)):
        stored = min(len(predictor.raw_left_cat_bitsets), len(predictor.binned_left_cat_bitsets))
        if bool(np.any(nodes["bitset_idx"][cat_split] >= stored)):
            raise _refuse(where, "categorical splits point at missing bitsets")
        flags = None if categorical is None else np.asarray(categorical)
        features = nodes["feature_idx"][cat_split]
        if flags is None or bool(np.any(features >= len(flags))) or not bool(np.all(flags[features])):
            raise _refuse(where, "categorical splits are on features that are not categorical")
