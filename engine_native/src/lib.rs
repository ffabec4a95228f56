//! `engine_native`: a native (Rust, PyO3) twin of `engine.engine.Engine` (docs/engine.md, "Beyond mypyc").
//!
//! Invariants:
//! - `Engine.apply(seq, command)` returns exactly the events the Python engine returns for the same state and
//!   command: the same `engine.events` Struct classes, field values, order, `book_seq`, trade and fill ids.
//!   `snapshot()` is byte-for-byte the Python engine's (the `engine.state` Structs built here and encoded by
//!   a `msgspec.msgpack.Encoder`), so each engine restores from the other's snapshot.
//! - The Python engine stays the specification: `tests/engine/test_native_rust.py` gates this one on the
//!   seeded stream of `tests/engine/test_native.py` and on hypothesis-generated streams.
//! - A command the Python engine raises on raises a Python exception here too (never a crash: a panic
//!   becomes `PanicException`). Fields are type-checked when read (ints that fit in i64, str ids, the
//!   Literal strings of the command types), so some malformed commands the Python engine would let through
//!   raise `TypeError`/`ValueError` here instead (documented in docs/engine.md).

mod core;
mod glue;

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::core::{Core, OType, Order, Tif, NIL};
use crate::glue::{as_bool, as_i128, as_i64, as_pystr, boolp, call, int, int128, s, ustr, Glue, PyObj};

static GLUE: PyOnceLock<Glue> = PyOnceLock::new();

fn glue(py: Python<'_>) -> PyResult<&'static Glue> {
    GLUE.get_or_try_init(py, || Glue::load(py))
}

/// One engine per command-topic partition (the native twin of `engine.engine.Engine`).
#[pyclass(module = "engine_native")]
pub struct Engine {
    core: Core,
}

fn order_state(py: Python<'_>, core: &Core, i: u32) -> PyResult<PyObj> {
    let g = core.g;
    let o = &core.slab[i as usize];
    let children: Vec<Bound<'_, PyString>> = o.children.iter().map(|c| c.bind(py).clone()).collect();
    let children = PyTuple::new(py, children)?;
    call(
        py,
        &g.s_order,
        &[
            s(&o.oid),
            s(&o.account),
            s(&core.books[o.book as usize].symbol),
            boolp(o.is_buy),
            s(o.otype.name(g)),
            s(o.tif.name(g)),
            int128(py, o.qty),
            int(o.notional),
            int128(py, o.notional_left),
            int128(py, o.limit),
            int128(py, o.stop),
            int128(py, o.trail_price),
            int(o.trail_bps),
            int128(py, o.water),
            int128(py, o.leaves),
            int128(py, o.cum),
            int(o.arrival),
            int(o.state as i64),
            s(o.oco.as_ref().unwrap_or(&g.s.empty)),
            s(o.parent.as_ref().unwrap_or(&g.s.empty)),
            children.into_ptr(),
            boolp(o.extended),
        ],
    )
}

fn level_orders<'py>(py: Python<'py>, core: &Core, b: usize, is_buy: bool) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for p in core.books[b].prices_best_first(is_buy) {
        let ids: Vec<Bound<'_, PyString>> =
            core.level_ids(b, is_buy, p).into_iter().map(|i| core.slab[i as usize].oid.bind(py).clone()).collect();
        out.append((p, PyList::new(py, ids)?))?;
    }
    Ok(out)
}

fn ids_list<'py>(py: Python<'py>, core: &Core, v: &[u32]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, v.iter().map(|&i| core.slab[i as usize].oid.bind(py).clone()))
}

impl Engine {
    fn state(&self, py: Python<'_>) -> PyResult<PyObj> {
        let core = &self.core;
        let g = core.g;
        let books = PyList::empty(py);
        for b in core.books_sorted() {
            let b = b as usize;
            let bk = &core.books[b];
            let st = call(
                py,
                &g.s_book,
                &[
                    s(&bk.symbol),
                    int(bk.book_seq),
                    int(bk.arrival),
                    int128(py, bk.last_price),
                    int128(py, bk.ref_price),
                    boolp(bk.halted),
                    level_orders(py, core, b, true)?.into_ptr(),
                    level_orders(py, core, b, false)?.into_ptr(),
                    ids_list(py, core, &bk.trailing)?.into_ptr(),
                    ids_list(py, core, &bk.opg)?.into_ptr(),
                    ids_list(py, core, &bk.cls)?.into_ptr(),
                ],
            )?;
            books.append(st)?;
        }
        let orders = PyList::empty(py);
        for i in core.orders_in_order() {
            orders.append(order_state(py, core, i)?)?;
        }
        let head = [int(core.last_seq), s(&core.phase), orders.into_ptr(), books.into_ptr()];
        if core.splits.is_empty() {
            return call(py, &g.s_state, &[int(1), head[0], head[1], head[2], head[3]]);
        }
        let splits = PyList::new(py, core.splits.iter().map(|x| x.bind(py).clone()))?;
        if core.split_epochs.is_empty() {
            return call(py, &g.s_state_splits, &[int(2), head[0], head[1], head[2], head[3], splits.into_ptr()]);
        }
        let epochs = PyList::empty(py);
        for (k, v) in &core.split_epochs {
            epochs.append((k.as_str(), *v))?;
        }
        call(py, &g.s_state_epochs, &[int(3), head[0], head[1], head[2], head[3], splits.into_ptr(), epochs.into_ptr()])
    }

    fn from_state(py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<Engine> {
        let g = glue(py)?;
        let version: i64 = state.getattr("version")?.extract()?;
        if !(1..=3).contains(&version) {
            return Err(PyValueError::new_err(format!("unsupported snapshot version {version}")));
        }
        let mut core = Core::new(py, g);
        core.last_seq = as_i64(py, state.getattr("last_seq")?.as_ptr(), "last_seq")?;
        core.phase = as_pystr(py, state.getattr("phase")?.as_ptr(), "phase")?;
        let mut splits = Vec::new();
        for sid in state.getattr("splits")?.try_iter()? {
            splits.push(as_pystr(py, sid?.as_ptr(), "split id")?);
        }
        let epochs: Vec<(String, i64)> = state.getattr("epochs")?.extract()?;
        core.restore_splits(py, splits, epochs);
        let books: Vec<Bound<'_, PyAny>> = state.getattr("books")?.try_iter()?.collect::<PyResult<_>>()?;
        let mut idx = Vec::with_capacity(books.len());
        for bs in &books {
            let sym = as_pystr(py, bs.getattr("symbol")?.as_ptr(), "symbol")?;
            if core.book_map.contains_key(ustr(sym.as_ptr())) {
                return Err(PyValueError::new_err(format!("snapshot repeats book {}", ustr(sym.as_ptr()))));
            }
            idx.push(core.restore_book(py, &sym) as usize);
        }
        for os in state.getattr("orders")?.try_iter()? {
            let os = os?;
            let f = |n: &str| os.getattr(n);
            let i64f = |n: &str| -> PyResult<i64> { as_i64(py, f(n)?.as_ptr(), n) };
            let i128f = |n: &str| -> PyResult<i128> { as_i128(f(n)?, n) };
            let sym = as_pystr(py, f("symbol")?.as_ptr(), "symbol")?;
            let Some(&b) = core.book_map.get(ustr(sym.as_ptr())) else {
                return Err(PyValueError::new_err(format!("snapshot order in unknown book {}", ustr(sym.as_ptr()))));
            };
            let otype_s = as_pystr(py, f("otype")?.as_ptr(), "otype")?;
            let tif_s = as_pystr(py, f("tif")?.as_ptr(), "tif")?;
            let opt = |n: &str| -> PyResult<Option<Py<PyString>>> {
                let v = as_pystr(py, f(n)?.as_ptr(), n)?;
                Ok(if ustr(v.as_ptr()).is_empty() { None } else { Some(v) })
            };
            let mut children = Vec::new();
            for c in f("children")?.try_iter()? {
                children.push(as_pystr(py, c?.as_ptr(), "child id")?);
            }
            let state_v = i64f("state")?;
            let o = Order {
                key: core::IdKey::Inline(0, [0; 39]),
                h: 0,
                acct_h: 0,
                oid: as_pystr(py, f("order_id")?.as_ptr(), "order_id")?,
                account: as_pystr(py, f("account_id")?.as_ptr(), "account_id")?,
                book: b,
                is_buy: as_bool(f("is_buy")?.as_ptr(), "is_buy")?,
                otype: OType::parse(ustr(otype_s.as_ptr()))
                    .ok_or_else(|| PyValueError::new_err(format!("unknown order type {}", ustr(otype_s.as_ptr()))))?,
                tif: Tif::parse(ustr(tif_s.as_ptr()))
                    .ok_or_else(|| PyValueError::new_err(format!("unknown tif {}", ustr(tif_s.as_ptr()))))?,
                state: u8::try_from(state_v)
                    .ok()
                    .filter(|v| *v <= 5)
                    .ok_or_else(|| PyValueError::new_err(format!("unknown order state {state_v}")))?,
                extended: as_bool(f("extended_hours")?.as_ptr(), "extended_hours")?,
                qty: i128f("qty")?,
                notional: i64f("notional")?,
                notional_left: f("notional_left")?.extract()?,
                limit: i128f("limit")?,
                stop: i128f("stop")?,
                trail_price: i128f("trail_price")?,
                trail_bps: i64f("trail_bps")?,
                water: i128f("water")?,
                leaves: i128f("leaves")?,
                cum: i128f("cum")?,
                arrival: i64f("arrival")?,
                oco: opt("oco")?,
                parent: opt("parent")?,
                children,
                ins: 0,
                prev: NIL,
                next: NIL,
            }
            .with_keys();
            core.restore_order(py, o);
        }
        let lookup = |core: &Core, id: Bound<'_, PyAny>| -> PyResult<u32> {
            let id = as_pystr(py, id.as_ptr(), "order id")?;
            core.orders_get(ustr(id.as_ptr())).ok_or_else(|| PyKeyError::new_err(ustr(id.as_ptr()).to_owned()))
        };
        for (bs, &b) in books.iter().zip(&idx) {
            let mut lists: [Vec<u32>; 3] = Default::default();
            for (k, name) in ["trailing", "opg", "cls"].iter().enumerate() {
                for id in bs.getattr(*name)?.try_iter()? {
                    lists[k].push(lookup(&core, id?)?);
                }
            }
            core.book_set(
                b,
                as_i64(py, bs.getattr("book_seq")?.as_ptr(), "book_seq")?,
                as_i64(py, bs.getattr("arrival")?.as_ptr(), "arrival")?,
                as_i128(bs.getattr("last_price")?, "last_price")?,
                as_i128(bs.getattr("ref_price")?, "ref_price")?,
                as_bool(bs.getattr("halted")?.as_ptr(), "halted")?,
                lists,
            );
            for (is_buy, name) in [(true, "bids"), (false, "asks")] {
                let mut levels = Vec::new();
                for lv in bs.getattr(name)?.try_iter()? {
                    let lv = lv?;
                    let p = as_i128(lv.get_item(0)?, "level price")?;
                    let mut ids = Vec::new();
                    for id in lv.get_item(1)?.try_iter()? {
                        ids.push(lookup(&core, id?)?);
                    }
                    levels.push((p, ids));
                }
                core.restore_levels(b, is_buy, levels)?;
            }
            core.restore_stops(b);
        }
        Ok(Engine { core })
    }
}

#[pymethods]
impl Engine {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Engine> {
        Ok(Engine { core: Core::new(py, glue(py)?) })
    }

    /// Apply one command at input position `seq`; `[]` for an already-applied position.
    fn apply<'py>(
        &mut self,
        py: Python<'py>,
        seq: &Bound<'py, PyAny>,
        command: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let seq_v = as_i64(py, seq.as_ptr(), "seq")?;
        let res = self.core.apply(py, seq_v, seq, command);
        // `out` keeps its capacity across commands (drained, not taken): no Vec growth per command.
        let list = match res {
            Ok(()) => unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyList_New(self.core.out.len() as isize)) },
            Err(e) => Err(e),
        };
        let list = match list {
            Ok(l) => l,
            Err(e) => {
                self.core.out.clear();
                return Err(e);
            }
        };
        unsafe {
            for (k, ev) in self.core.out.drain(..).enumerate() {
                ffi::PyList_SET_ITEM(list.as_ptr(), k as ffi::Py_ssize_t, ev.into_ptr());
            }
            Ok(list.cast_into_unchecked::<PyList>())
        }
    }

    #[getter]
    fn last_seq(&self) -> i64 {
        self.core.last_seq
    }

    #[getter]
    fn phase(&self, py: Python<'_>) -> Py<PyString> {
        self.core.phase.clone_ref(py)
    }

    #[getter]
    fn splits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.core.splits.iter().map(|x| x.bind(py).clone()))
    }

    #[getter]
    fn split_epochs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.core.split_epochs {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Read-only view of the live orders (`len`, `in`, `[id]`/`get` -> `engine.state.OrderState`, iteration
    /// in acceptance order).
    #[getter]
    fn orders(slf: &Bound<'_, Self>) -> OrdersView {
        OrdersView { engine: slf.clone().unbind() }
    }

    /// `{symbol: book view}` in symbol order.
    #[getter]
    fn books<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let d = PyDict::new(py);
        let me = slf.borrow();
        for b in me.core.books_sorted() {
            let sym = me.core.books[b as usize].symbol.clone_ref(py);
            d.set_item(sym, BookView { engine: slf.clone().unbind(), book: b as usize })?;
        }
        Ok(d)
    }

    /// The book of `symbol` (None before its first command), live like `engine.book.OrderBook`.
    fn book(slf: &Bound<'_, Self>, symbol: &str) -> Option<BookView> {
        let b = *slf.borrow().core.book_map.get(symbol)?;
        Some(BookView { engine: slf.clone().unbind(), book: b as usize })
    }

    /// Canonical msgpack bytes of the whole engine: the Python engine's bytes for the same state.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let st = self.state(py)?;
        self.core.g.encode.bind(py).call1((st,))
    }

    fn state_hash(&self, py: Python<'_>) -> PyResult<String> {
        let data = self.snapshot(py)?;
        self.core.g.sha256.bind(py).call1((data,))?.call_method0("hexdigest")?.extract()
    }

    #[classmethod]
    fn restore(_cls: &Bound<'_, PyType>, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Engine> {
        let g = glue(py)?;
        let state = g.decode.bind(py).call1((data,))?;
        Engine::from_state(py, &state)
    }
}

/// `engine.orders` of the native engine: read-only, each order as an `engine.state.OrderState`.
#[pyclass(module = "engine_native")]
pub struct OrdersView {
    engine: Py<Engine>,
}

#[pymethods]
impl OrdersView {
    fn __len__(&self, py: Python<'_>) -> usize {
        self.engine.borrow(py).core.orders.len()
    }

    fn __contains__(&self, py: Python<'_>, oid: &Bound<'_, PyAny>) -> bool {
        match oid.cast::<PyString>() {
            Ok(s) => self.engine.borrow(py).core.orders_get(ustr(s.as_ptr())).is_some(),
            Err(_) => false,
        }
    }

    fn __getitem__(&self, py: Python<'_>, oid: &str) -> PyResult<PyObj> {
        let e = self.engine.borrow(py);
        let i = e.core.orders_get(oid).ok_or_else(|| PyKeyError::new_err(oid.to_owned()))?;
        order_state(py, &e.core, i)
    }

    #[pyo3(signature = (oid, default=None))]
    fn get(&self, py: Python<'_>, oid: &Bound<'_, PyAny>, default: Option<PyObj>) -> PyResult<Option<PyObj>> {
        let e = self.engine.borrow(py);
        let found = oid.cast::<PyString>().ok().and_then(|s| e.core.orders_get(ustr(s.as_ptr())));
        match found {
            Some(i) => Ok(Some(order_state(py, &e.core, i)?)),
            None => Ok(default),
        }
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let e = self.engine.borrow(py);
        ids_list(py, &e.core, &e.core.orders_in_order())
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let e = self.engine.borrow(py);
        let out = PyList::empty(py);
        for i in e.core.orders_in_order() {
            out.append(order_state(py, &e.core, i)?)?;
        }
        Ok(out)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.keys(py)?.try_iter()?.into_any())
    }
}

/// One symbol's book of the native engine, read live (the queries of `engine.book.OrderBook`).
#[pyclass(module = "engine_native")]
pub struct BookView {
    engine: Py<Engine>,
    book: usize,
}

#[pymethods]
impl BookView {
    #[getter]
    fn symbol(&self, py: Python<'_>) -> Py<PyString> {
        self.engine.borrow(py).core.books[self.book].symbol.clone_ref(py)
    }
    #[getter]
    fn ref_price(&self, py: Python<'_>) -> i128 {
        self.engine.borrow(py).core.books[self.book].ref_price
    }
    #[getter]
    fn last_price(&self, py: Python<'_>) -> i128 {
        self.engine.borrow(py).core.books[self.book].last_price
    }
    #[getter]
    fn halted(&self, py: Python<'_>) -> bool {
        self.engine.borrow(py).core.books[self.book].halted
    }
    #[getter]
    fn book_seq(&self, py: Python<'_>) -> i64 {
        self.engine.borrow(py).core.books[self.book].book_seq
    }
    #[getter]
    fn arrival(&self, py: Python<'_>) -> i64 {
        self.engine.borrow(py).core.books[self.book].arrival
    }

    fn best_bid(&self, py: Python<'_>) -> Option<i128> {
        self.engine.borrow(py).core.books[self.book].best_bid()
    }

    fn best_ask(&self, py: Python<'_>) -> Option<i128> {
        self.engine.borrow(py).core.books[self.book].best_ask()
    }

    /// (price, qty, count) per live level, best first.
    fn depth<'py>(&self, py: Python<'py>, is_buy: bool) -> PyResult<Bound<'py, PyList>> {
        let e = self.engine.borrow(py);
        let bk = &e.core.books[self.book];
        let side = if is_buy { &bk.bids } else { &bk.asks };
        let out = PyList::empty(py);
        for p in bk.prices_best_first(is_buy) {
            let l = &side.levels[&p];
            out.append((p, l.qty, l.count))?;
        }
        Ok(out)
    }

    /// Live order ids per level in priority order (the snapshot's canonical form).
    fn level_orders<'py>(&self, py: Python<'py>, is_buy: bool) -> PyResult<Bound<'py, PyList>> {
        let e = self.engine.borrow(py);
        level_orders(py, &e.core, self.book, is_buy)
    }
}

#[pymodule]
fn engine_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<OrdersView>()?;
    m.add_class::<BookView>()?;
    let _ = PyBytes::new(m.py(), b"");
    Ok(())
}
