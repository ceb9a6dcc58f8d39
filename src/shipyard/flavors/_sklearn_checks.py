"""Checks of what a trusted type holds, run on every load of a skops artifact (and before storing one).

A trusted type can still be told to do harm by its data:

* scikit-learn's tree code (``Tree`` for DecisionTree*, RandomForest*, ExtraTrees*, GradientBoosting*, and
  ``TreePredictor`` for HistGradientBoosting*) follows the child and feature indices stored in its node
  arrays without checking them, so a crafted file could make ``predict`` read outside its memory or loop
  for ever. A tree is refused unless every split node's children come after it and inside the array, every
  split feature is a column the estimator checks its input for, and every categorical split points at a
  stored bitset of a categorical feature.
* the text vectorizers read the files (or file objects) their input names when ``input`` is ``"filename"``
  or ``"file"``: a request could then choose a file of the server to read. Only ``input="content"`` (the
  default) is accepted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.errors import UntrustedArtifact

__all__ = ["check_loaded", "file_reading_vectorizers"]

# attributes through which an ensemble hands its own (already checked) input to the trees it holds
_SAME_INPUT = frozenset({"tree_", "estimators_", "estimator_", "_predictors"})
_MAX_DEPTH = 64


_VECTORIZERS = frozenset({"CountVectorizer", "TfidfVectorizer", "HashingVectorizer"})


def check_loaded(model: Any, where: str) -> None:
    """Raise :class:`UntrustedArtifact` if a tree anywhere in ``model`` has node indices out of bounds, or a
    text vectorizer would read files.

    >>> from sklearn.tree import DecisionTreeClassifier
    >>> check_loaded(DecisionTreeClassifier().fit([[0.0], [1.0]], [0, 1]), "the model")
    """
    _visit(model, None, None, where, set(), 0)


def file_reading_vectorizers(model: Any) -> list[str]:
    """Descriptions of the text vectorizers in ``model``'s parameters whose ``input`` makes them read files.

    >>> from sklearn.feature_extraction.text import CountVectorizer
    >>> file_reading_vectorizers(CountVectorizer(input="filename"))
    ["CountVectorizer(input='filename')"]
    """
    found: list[str] = []
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    for value in (model, *params.values()):
        if _reads_files(value):
            found.append(f"{type(value).__name__}(input={value.input!r})")
    return found


def _reads_files(value: Any) -> bool:
    cls = type(value)
    return (
        cls.__name__ in _VECTORIZERS
        and cls.__module__ == "sklearn.feature_extraction.text"
        and getattr(value, "input", "content") != "content"
    )


def _refuse_vectorizer(value: Any, where: str) -> UntrustedArtifact:
    return UntrustedArtifact(
        f"{where} holds a {type(value).__name__} with input={value.input!r}, which reads the files its input "
        "names, so a request could read files of the server; use input='content' (the default) and pass the "
        "text itself"
    )


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
    if _reads_files(value):
        raise _refuse_vectorizer(value, where)
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
