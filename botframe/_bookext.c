/*
 * botframe._bookext: the book's per-level loop and the bps-weighted sum, in C.
 *
 * Optional speedups for botframe.book and botframe.signals. They work on the very same Python
 * structures the pure-Python code uses (a dict price -> size and a sorted list of prices per side),
 * so every reader of the book is unchanged and the pure-Python code stays the reference: the tests
 * run both and require identical books and bit-identical band sums (same operations, same order, no
 * fast-math). Set BOTFRAME_NO_EXTENSIONS=1 to run without this module.
 *
 * apply_side(sizes, prices, levels, negate, edges) -> None | tuple
 *     Set the absolute size of each (price, size) of ``levels`` in list order; size 0 deletes (a
 *     delete of an absent level is a no-op). Keys are the price, or its negation when ``negate``
 *     (asks are kept under negated prices, see botframe.book). ``edges`` is a tuple of band edges in
 *     key space; for each edge the change of (quantity, notional, level count) of the keys >= edge is
 *     returned, three numbers per edge (None when ``edges`` is empty). Notional uses the real price.
 *
 * exp_weighted(prices, sizes, mid, k, negated) -> float
 *     sum(exp(k * (mid - p)) * s) over pairs in order (negated: prices are -price and the term is
 *     exp(-k * (q + mid)) * s), exactly the expression botframe.signals evaluates per level.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

static inline int
as_double(PyObject *o, double *out)
{
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    *out = v;
    return 0;
}

/* First index whose item is >= x in a list sorted ascending (bisect.bisect_left). */
static Py_ssize_t
bisect_left(PyListObject *list, double x, int *err)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(list);
    PyObject **items = list->ob_item;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        PyObject *o = items[mid];
        double v;
        if (PyFloat_CheckExact(o)) {
            v = PyFloat_AS_DOUBLE(o);
        }
        else if (as_double(o, &v) < 0) {
            *err = 1;
            return 0;
        }
        if (v < x) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

/* Index just past the items <= x (bisect.bisect_right), where bisect.insort puts a new item. */
static Py_ssize_t
bisect_right(PyListObject *list, double x, int *err)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(list);
    PyObject **items = list->ob_item;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        PyObject *o = items[mid];
        double v;
        if (PyFloat_CheckExact(o)) {
            v = PyFloat_AS_DOUBLE(o);
        }
        else if (as_double(o, &v) < 0) {
            *err = 1;
            return 0;
        }
        if (x < v) {
            hi = mid;
        }
        else {
            lo = mid + 1;
        }
    }
    return lo;
}

#define MAX_EDGES 16

static PyObject *
apply_side(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "apply_side(sizes, prices, levels, negate, edges) takes 5 arguments");
        return NULL;
    }
    PyObject *sizes = args[0];
    PyObject *prices_obj = args[1];
    PyObject *levels = args[2];
    int negate = PyObject_IsTrue(args[3]);
    PyObject *edges_obj = args[4];
    if (negate < 0) {
        return NULL;
    }
    if (!PyDict_CheckExact(sizes) || !PyList_CheckExact(prices_obj) || !PyTuple_CheckExact(edges_obj)) {
        PyErr_SetString(PyExc_TypeError, "apply_side expects (dict, list, levels, bool, tuple)");
        return NULL;
    }
    PyListObject *prices = (PyListObject *)prices_obj;
    Py_ssize_t nedges = PyTuple_GET_SIZE(edges_obj);
    if (nedges > MAX_EDGES) {
        PyErr_SetString(PyExc_ValueError, "apply_side: at most 16 band edges");
        return NULL;
    }
    double edges[MAX_EDGES];
    double dq[MAX_EDGES], dn[MAX_EDGES];
    long dc[MAX_EDGES];
    for (Py_ssize_t e = 0; e < nedges; e++) {
        if (as_double(PyTuple_GET_ITEM(edges_obj, e), &edges[e]) < 0) {
            return NULL;
        }
        dq[e] = dn[e] = 0.0;
        dc[e] = 0;
    }

    PyObject *seq = PySequence_Fast(levels, "apply_side: levels must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *level = items[i];
        PyObject *p_obj, *s_obj;
        if (PyTuple_CheckExact(level) && PyTuple_GET_SIZE(level) == 2) {
            p_obj = PyTuple_GET_ITEM(level, 0);
            s_obj = PyTuple_GET_ITEM(level, 1);
        }
        else if (PyList_CheckExact(level) && PyList_GET_SIZE(level) == 2) {
            p_obj = PyList_GET_ITEM(level, 0);
            s_obj = PyList_GET_ITEM(level, 1);
        }
        else {
            PyErr_Format(PyExc_TypeError, "apply_side: level %zd is not a (price, size) pair", i);
            goto fail;
        }
        double p, s;
        if (as_double(p_obj, &p) < 0 || as_double(s_obj, &s) < 0) {
            goto fail;
        }
        double key = negate ? -p : p;
        PyObject *key_obj;
        if (!negate && PyFloat_CheckExact(p_obj)) {
            key_obj = Py_NewRef(p_obj);
        }
        else {
            key_obj = PyFloat_FromDouble(key);
            if (key_obj == NULL) {
                goto fail;
            }
        }
        PyObject *old = PyDict_GetItemWithError(sizes, key_obj); /* borrowed */
        if (old == NULL && PyErr_Occurred()) {
            Py_DECREF(key_obj);
            goto fail;
        }
        double old_s = 0.0;
        if (old != NULL && as_double(old, &old_s) < 0) {
            Py_DECREF(key_obj);
            goto fail;
        }
        int err = 0;
        if (s != 0.0) { /* NaN is truthy in Python too */
            PyObject *s_store;
            if (PyFloat_CheckExact(s_obj)) {
                s_store = Py_NewRef(s_obj);
            }
            else if ((s_store = PyFloat_FromDouble(s)) == NULL) {
                Py_DECREF(key_obj);
                goto fail;
            }
            if (old == NULL) {
                Py_ssize_t at = bisect_right(prices, key, &err);
                if (err || PyList_Insert((PyObject *)prices, at, key_obj) < 0) {
                    Py_DECREF(s_store);
                    Py_DECREF(key_obj);
                    goto fail;
                }
            }
            int rc = PyDict_SetItem(sizes, key_obj, s_store);
            Py_DECREF(s_store);
            if (rc < 0) {
                Py_DECREF(key_obj);
                goto fail;
            }
            if (old == NULL) {
                for (Py_ssize_t e = 0; e < nedges; e++) {
                    if (key >= edges[e]) {
                        dq[e] += s;
                        dn[e] += p * s;
                        dc[e] += 1;
                    }
                }
            }
            else {
                double d = s - old_s;
                for (Py_ssize_t e = 0; e < nedges; e++) {
                    if (key >= edges[e]) {
                        dq[e] += d;
                        dn[e] += p * d;
                    }
                }
            }
        }
        else if (old != NULL) {
            if (PyDict_DelItem(sizes, key_obj) < 0) {
                Py_DECREF(key_obj);
                goto fail;
            }
            Py_ssize_t at = bisect_left(prices, key, &err);
            if (err || PyList_SetSlice((PyObject *)prices, at, at + 1, NULL) < 0) {
                Py_DECREF(key_obj);
                goto fail;
            }
            for (Py_ssize_t e = 0; e < nedges; e++) {
                if (key >= edges[e]) {
                    dq[e] -= old_s;
                    dn[e] -= p * old_s;
                    dc[e] -= 1;
                }
            }
        }
        Py_DECREF(key_obj);
    }
    Py_DECREF(seq);
    if (nedges == 0) {
        Py_RETURN_NONE;
    }
    PyObject *out = PyTuple_New(3 * nedges);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t e = 0; e < nedges; e++) {
        PyObject *a = PyFloat_FromDouble(dq[e]);
        PyObject *b = PyFloat_FromDouble(dn[e]);
        PyObject *c = PyLong_FromLong(dc[e]);
        if (a == NULL || b == NULL || c == NULL) {
            Py_XDECREF(a);
            Py_XDECREF(b);
            Py_XDECREF(c);
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, 3 * e, a);
        PyTuple_SET_ITEM(out, 3 * e + 1, b);
        PyTuple_SET_ITEM(out, 3 * e + 2, c);
    }
    return out;

fail:
    Py_DECREF(seq);
    return NULL;
}

static PyObject *
exp_weighted(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "exp_weighted(prices, sizes, mid, k, negated) takes 5 arguments");
        return NULL;
    }
    double mid, k;
    if (as_double(args[2], &mid) < 0 || as_double(args[3], &k) < 0) {
        return NULL;
    }
    int negated = PyObject_IsTrue(args[4]);
    if (negated < 0) {
        return NULL;
    }
    PyObject *ps = PySequence_Fast(args[0], "exp_weighted: prices must be a sequence");
    if (ps == NULL) {
        return NULL;
    }
    PyObject *ss = PySequence_Fast(args[1], "exp_weighted: sizes must be a sequence");
    if (ss == NULL) {
        Py_DECREF(ps);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(ps);
    if (PySequence_Fast_GET_SIZE(ss) != n) {
        PyErr_SetString(PyExc_ValueError, "exp_weighted: prices and sizes differ in length");
        goto fail;
    }
    PyObject **pi = PySequence_Fast_ITEMS(ps);
    PyObject **si = PySequence_Fast_ITEMS(ss);
    double total = 0.0;
    double nk = -k;
    for (Py_ssize_t i = 0; i < n; i++) {
        double p, s;
        if (as_double(pi[i], &p) < 0 || as_double(si[i], &s) < 0) {
            goto fail;
        }
        double w = negated ? exp(nk * (p + mid)) : exp(k * (mid - p));
        total += w * s;
    }
    Py_DECREF(ps);
    Py_DECREF(ss);
    return PyFloat_FromDouble(total);

fail:
    Py_DECREF(ps);
    Py_DECREF(ss);
    return NULL;
}

static PyMethodDef methods[] = {
    {"apply_side", (PyCFunction)(void (*)(void))apply_side, METH_FASTCALL,
     "apply_side(sizes, prices, levels, negate, edges): apply one side of a delta; band changes per edge."},
    {"exp_weighted", (PyCFunction)(void (*)(void))exp_weighted, METH_FASTCALL,
     "exp_weighted(prices, sizes, mid, k, negated): sum of exp-weighted sizes, as botframe.signals computes it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    "botframe._bookext",
    "C speedups for botframe.book and botframe.signals (optional; pure Python is the reference).",
    0,
    methods,
};

PyMODINIT_FUNC
PyInit__bookext(void)
{
    return PyModuleDef_Init(&moduledef);
}
