"""The type stubs match the module, and everything public has a docstring."""

import ast
import inspect
import os

import hnsw_batch as hb
import hnsw_batch._hnsw_batch as native


def stub_tree():
    path = os.path.join(os.path.dirname(hb.__file__), "_hnsw_batch.pyi")
    with open(path) as f:
        return ast.parse(f.read())


def test_stubs_match_the_extension():
    tree = stub_tree()
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    assert set(classes) == {"Index", "DurableIndex", "BatchReport", "ProgressEvent"}
    for name, node in classes.items():
        runtime = getattr(native, name)
        stubbed = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
        public = {m for m in dir(runtime) if not m.startswith("_")}
        assert public == stubbed - {m for m in stubbed if m.startswith("_")}, name
        for m in stubbed:
            assert hasattr(runtime, m), f"{name}.{m}"
    constants = {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    assert {"MISSING_ID", "MAX_DIM", "MAX_EF", "MAX_M"} <= constants
    assert hb.MISSING_ID == 2**64 - 1


def test_everything_public_has_a_docstring():
    for name in hb.__all__:
        obj = getattr(hb, name)
        if inspect.isclass(obj):
            assert obj.__doc__, name
            for m, v in vars(obj).items():
                if not m.startswith("_") and (
                    inspect.isroutine(v) or inspect.isdatadescriptor(v) or isinstance(v, staticmethod)
                ):
                    assert getattr(v, "__doc__", None), f"{name}.{m}"


def test_exception_hierarchy():
    for cls in (hb.DimensionMismatchError, hb.InvalidVectorError, hb.DuplicateIdError,
                hb.CapacityExceededError, hb.CancelledError):
        assert issubclass(cls, hb.BatchError) and issubclass(cls, ValueError)
    e = hb.DuplicateIdError("x", 3, 7)
    assert (e.position, e.id, str(e)) == (3, 7, "x")


def test_refused_error():
    assert issubclass(hb.RefusedError, ValueError) and not issubclass(hb.RefusedError, hb.BatchError)
    index = hb.Index("l2", 1)
    index.add_items([[0.0], [1.0]], metadata=[{"a": 1}, {"a": 1}])
    try:
        index.delete_where({"a": 1}, confirm_count=1)
    except hb.RefusedError as e:
        assert (e.found, e.expected, e.limit) == (2, 1, None)
        assert "nothing was changed" in str(e)
    else:
        raise AssertionError("not refused")
    assert len(index) == 2
