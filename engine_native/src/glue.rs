//! Python glue: the engine's own classes (commands, events, snapshot Structs) looked up once, the constant
//! strings of events created once, command fields read at their slot offsets and events built through
//! `PyObject_Vectorcall`.
//!
//! Invariants:
//! - Every class object is the one `engine.commands` / `engine.events` / `engine.state` define: the native
//!   engine returns the same msgspec Structs as the Python one, and dispatches on the exact command type.
//! - A command field is read at the offset of its member descriptor, valid because a command is dispatched
//!   on its exact type (a msgspec Struct stores each field in a fixed slot of its instance).
//! - Every string handed to Python (`PyStrKey`, ids, accounts) was checked to have a UTF-8 form when it
//!   entered the engine, so `ustr` never fails later.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ptr::null_mut;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyType};

pub type PyObj = Py<PyAny>;

/// The UTF-8 text of a Python str already known to have one (see the module invariants).
#[inline]
pub fn ustr<'a>(p: *mut ffi::PyObject) -> &'a str {
    unsafe {
        // Compact ASCII (every id and literal in practice): the text is the object's own bytes, read inline
        // instead of calling PyUnicode_AsUTF8AndSize for every probe.
        if ffi::PyUnicode_IS_READY(p) != 0 && ffi::PyUnicode_IS_COMPACT_ASCII(p) != 0 {
            let n = ffi::PyUnicode_GET_LENGTH(p) as usize;
            let d = ffi::PyUnicode_1BYTE_DATA(p) as *const u8;
            return std::str::from_utf8_unchecked(std::slice::from_raw_parts(d, n));
        }
        let mut n: ffi::Py_ssize_t = 0;
        let c = ffi::PyUnicode_AsUTF8AndSize(p, &mut n);
        if c.is_null() {
            ffi::PyErr_Clear();
            return "";
        }
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(c as *const u8, n as usize))
    }
}

/// A Python str as a hash-map key hashed and compared by its text, so maps can be probed with a `&str`.
pub struct PyStrKey(pub Py<PyString>);

impl PyStrKey {
    #[inline]
    pub fn as_str(&self) -> &str {
        ustr(self.0.as_ptr())
    }
}
impl Hash for PyStrKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}
impl PartialEq for PyStrKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_ptr() == other.0.as_ptr() || self.as_str() == other.as_str()
    }
}
impl Eq for PyStrKey {}
impl Borrow<str> for PyStrKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

#[inline]
pub fn str_eq(a: &Py<PyString>, b: &Py<PyString>) -> bool {
    a.as_ptr() == b.as_ptr() || ustr(a.as_ptr()) == ustr(b.as_ptr())
}

/// Borrowed pointer -> checked str (TypeError for anything else, the UTF-8 error for lone surrogates).
#[inline]
pub fn as_pystr(py: Python<'_>, p: *mut ffi::PyObject, what: &str) -> PyResult<Py<PyString>> {
    unsafe {
        if ffi::PyUnicode_Check(p) == 0 {
            return Err(type_err(what, "str"));
        }
        // A compact ASCII str is valid UTF-8 as it is; anything else must have a UTF-8 form (no lone surrogates).
        if ffi::PyUnicode_IS_READY(p) == 0 || ffi::PyUnicode_IS_COMPACT_ASCII(p) == 0 {
            let mut n: ffi::Py_ssize_t = 0;
            if ffi::PyUnicode_AsUTF8AndSize(p, &mut n).is_null() {
                return Err(PyErr::fetch(py));
            }
        }
        Ok(Bound::from_borrowed_ptr(py, p).cast_into_unchecked::<PyString>().unbind())
    }
}

// `as_i64` reads ints as C longs: 64-bit on every platform the engine runs on (Linux, LP64).
const _: () = assert!(std::mem::size_of::<std::os::raw::c_long>() == 8);

/// Borrowed pointer -> int (TypeError for None and non-integers, OverflowError beyond i64).
#[inline]
pub fn as_i64(py: Python<'_>, p: *mut ffi::PyObject, what: &str) -> PyResult<i64> {
    unsafe {
        if ffi::PyLong_Check(p) == 0 {
            return Err(type_err(what, "int"));
        }
        // PyLong_AsLongAndOverflow walks the digits in place; PyLong_AsLongLong (3.11) goes through
        // _PyLong_AsByteArray for every int above 2**30, which qty_e9 and price_e4 values usually are.
        let mut overflow: std::os::raw::c_int = 0;
        let v = ffi::PyLong_AsLongAndOverflow(p, &mut overflow);
        if overflow != 0 {
            return Err(pyo3::exceptions::PyOverflowError::new_err("int too big to convert"));
        }
        if v == -1 && !ffi::PyErr_Occurred().is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(v as i64)
    }
}

/// An int of a snapshot that may exceed i64 (amounts after splits): TypeError for non-ints, OverflowError
/// beyond i128.
pub fn as_i128(v: Bound<'_, PyAny>, what: &str) -> PyResult<i128> {
    if unsafe { ffi::PyLong_Check(v.as_ptr()) } == 0 {
        return Err(type_err(what, "int"));
    }
    v.extract()
}

#[inline]
pub fn as_opt_i64(py: Python<'_>, p: *mut ffi::PyObject, what: &str) -> PyResult<Option<i64>> {
    if p == unsafe { ffi::Py_None() } {
        return Ok(None);
    }
    as_i64(py, p, what).map(Some)
}

#[inline]
pub fn as_bool(p: *mut ffi::PyObject, what: &str) -> PyResult<bool> {
    unsafe {
        if p == ffi::Py_True() {
            Ok(true)
        } else if p == ffi::Py_False() {
            Ok(false)
        } else {
            Err(type_err(what, "bool"))
        }
    }
}

/// New reference to an int.
#[inline]
pub fn int(v: i64) -> *mut ffi::PyObject {
    unsafe { ffi::PyLong_FromLongLong(v) }
}

/// New reference to an int from an i128 amount: `PyLong_FromLongLong` when it fits in i64 (every amount of a
/// book that never split beyond 64 bits), the general conversion otherwise.
#[inline]
pub fn int128(py: Python<'_>, v: i128) -> *mut ffi::PyObject {
    if let Ok(x) = i64::try_from(v) {
        return int(x);
    }
    int128_wide(py, v)
}

#[cold]
#[inline(never)]
fn int128_wide(py: Python<'_>, v: i128) -> *mut ffi::PyObject {
    match v.into_pyobject(py) {
        Ok(b) => b.into_ptr(),
        Err(e) => match e {},
    }
}

/// New reference to the int object `p` (borrowed, from a command) when it is exactly an int of value `v`,
/// else a new int: events then share the command's int, as the Python engine's do.
#[inline]
pub fn int_from(p: *mut ffi::PyObject, v: i64) -> *mut ffi::PyObject {
    unsafe {
        if !p.is_null() && ffi::PyLong_CheckExact(p) != 0 {
            ffi::Py_INCREF(p);
            return p;
        }
    }
    int(v)
}

/// The current command's `seq` as the caller's int object (every event of a command carries it).
#[derive(Clone, Copy)]
pub struct SeqO {
    pub v: i64,
    pub p: *mut ffi::PyObject, // borrowed from `Core::seq_keep`, or null
}

// The pointer is only dereferenced by engine methods, which hold the GIL (as every `Py` in the engine
// needs), and `Core::seq_keep` owns a reference to it.
unsafe impl Send for SeqO {}
unsafe impl Sync for SeqO {}

impl SeqO {
    pub const NONE: SeqO = SeqO { v: 0, p: null_mut() };

    /// New reference to an int equal to `v`: the shared object when `v` is the current seq.
    #[inline]
    pub fn get(self, v: i64) -> *mut ffi::PyObject {
        if v == self.v && !self.p.is_null() {
            unsafe { ffi::Py_INCREF(self.p) };
            return self.p;
        }
        int(v)
    }
}

/// New reference to a str of ASCII bytes, built in one allocation (no UTF-8 decoding).
#[inline]
pub fn ascii(b: &[u8]) -> *mut ffi::PyObject {
    debug_assert!(b.is_ascii());
    unsafe {
        let o = ffi::PyUnicode_New(b.len() as ffi::Py_ssize_t, 127);
        if !o.is_null() {
            std::ptr::copy_nonoverlapping(b.as_ptr(), ffi::PyUnicode_1BYTE_DATA(o), b.len());
        }
        o
    }
}

/// Decimal digits of `v` appended at `buf[at..]`; returns the new end.
#[inline]
pub fn put_i64(buf: &mut [u8], at: usize, v: i64) -> usize {
    let mut tmp = [0u8; 20];
    let mut n = 0;
    let neg = v < 0;
    let mut u = v.unsigned_abs();
    loop {
        tmp[n] = b'0' + (u % 10) as u8;
        n += 1;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    let mut k = at;
    if neg {
        buf[k] = b'-';
        k += 1;
    }
    while n > 0 {
        n -= 1;
        buf[k] = tmp[n];
        k += 1;
    }
    k
}

/// New reference to a str object we hold.
#[inline]
pub fn s(x: &Py<PyString>) -> *mut ffi::PyObject {
    let p = x.as_ptr();
    unsafe { ffi::Py_INCREF(p) };
    p
}

#[inline]
pub fn boolp(v: bool) -> *mut ffi::PyObject {
    unsafe {
        let p = if v { ffi::Py_True() } else { ffi::Py_False() };
        ffi::Py_INCREF(p);
        p
    }
}

/// `cls(*args)` through vectorcall; consumes the new references in `args` (a NULL one is a pending error).
#[inline]
pub fn call(py: Python<'_>, cls: &PyObj, args: &[*mut ffi::PyObject]) -> PyResult<PyObj> {
    unsafe {
        let ok = args.iter().all(|a| !a.is_null());
        let r =
            if ok { ffi::PyObject_Vectorcall(cls.as_ptr(), args.as_ptr(), args.len(), null_mut()) } else { null_mut() };
        for &a in args {
            if !a.is_null() {
                ffi::Py_DECREF(a);
            }
        }
        Ok(Bound::from_owned_ptr_or_err(py, r)?.unbind())
    }
}

/// The error paths stay out of line: the checks above are inlined into every field read.
#[cold]
#[inline(never)]
fn type_err(what: &str, t: &str) -> PyErr {
    PyTypeError::new_err(format!("{what} must be {t}"))
}

#[cold]
#[inline(never)]
fn unset_err() -> PyErr {
    PyTypeError::new_err("command field not set")
}

/// Read borrowed field `i` of a command whose exact type owns `offs`.
#[inline(always)]
pub fn field(cmd: *mut ffi::PyObject, offs: &[isize], i: usize) -> PyResult<*mut ffi::PyObject> {
    let p = unsafe { *((cmd as *const u8).offset(offs[i]) as *const *mut ffi::PyObject) };
    if p.is_null() {
        return Err(unset_err());
    }
    Ok(p)
}

fn offsets(py: Python<'_>, cls: &Bound<'_, PyAny>, names: &[&str]) -> PyResult<Vec<isize>> {
    let fields: Vec<String> = cls.getattr("__struct_fields__")?.extract()?;
    if fields != names {
        return Err(PyRuntimeError::new_err(format!("{cls}: fields {fields:?}, engine_native expects {names:?}")));
    }
    let dict = cls.getattr("__dict__")?;
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let d = dict.get_item(n)?;
        unsafe {
            if ffi::Py_TYPE(d.as_ptr()) != std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type) {
                return Err(PyRuntimeError::new_err(format!("{cls}.{n} is not a slot")));
            }
            let m = &*(d.as_ptr() as *const ffi::PyMemberDescrObject);
            let def = &*m.d_member;
            if def.type_code != ffi::Py_T_OBJECT_EX && def.type_code != 6
            /* T_OBJECT */
            {
                return Err(PyRuntimeError::new_err(format!("{cls}.{n} is not an object slot")));
            }
            out.push(def.offset);
        }
    }
    let _ = py;
    Ok(out)
}

/// The offsets of a command with a known field count (checked by `offsets`) as an array: constant bounds.
fn fixed<const N: usize>(v: Vec<isize>) -> [isize; N] {
    let mut out = [0; N];
    out.copy_from_slice(&v);
    out
}

pub const NEW_ORDER_FIELDS: [&str; 17] = [
    "order_id",
    "account_id",
    "symbol",
    "side",
    "type",
    "tif",
    "qty_e9",
    "notional_e4",
    "limit_price_e4",
    "stop_price_e4",
    "trail_price_e4",
    "trail_percent_bps",
    "extended_hours",
    "order_class",
    "take_profit",
    "stop_loss",
    "split_epoch",
];
pub const REPLACE_FIELDS: [&str; 9] = [
    "order_id",
    "new_order_id",
    "qty_e9",
    "limit_price_e4",
    "stop_price_e4",
    "trail_price_e4",
    "trail_percent_bps",
    "tif",
    "split_epoch",
];

macro_rules! strings {
    ($($name:ident = $text:expr),* $(,)?) => {
        /// Interned constant strings of events, states and reasons.
        pub struct Strs { $(pub $name: Py<PyString>,)* }
        impl Strs {
            fn new(py: Python<'_>) -> Self {
                Strs { $($name: PyString::intern(py, $text).unbind(),)* }
            }
        }
    };
}

strings! {
    empty = "", buy = "buy", sell = "sell", maker = "maker", taker = "taker", auction = "auction",
    market = "market", limit = "limit", stop = "stop", stop_limit = "stop_limit", trailing_stop = "trailing_stop",
    day = "day", gtc = "gtc", ioc = "ioc", fok = "fok", opg = "opg", cls = "cls",
    simple = "simple", bracket = "bracket", oco = "oco", oto = "oto",
    user = "user", ioc_remainder = "ioc_remainder", fok_unfilled = "fok_unfilled", self_trade = "self_trade",
    oco_sibling = "oco_sibling", market_no_liquidity = "market_no_liquidity", halted = "halted",
    parent_canceled = "parent_canceled", auction_unfilled = "auction_unfilled", split = "split",
    invalid_quantity = "invalid_quantity", invalid_price = "invalid_price", invalid_order = "invalid_order",
    duplicate_order_id = "duplicate_order_id", unknown_order = "unknown_order", not_replaceable = "not_replaceable",
    auction_closed = "auction_closed", split_epoch_stale = "split_epoch_stale", split_epoch_ahead = "split_epoch_ahead",
    open = "open", closed = "closed", resumed = "resumed",
    suf_tp = ":tp", suf_sl = ":sl",
}

/// Everything Python the engine calls, looked up once per process.
pub struct Glue {
    pub t_new: PyObj,
    pub t_cancel: PyObj,
    pub t_replace: PyObj,
    pub t_open: PyObj,
    pub t_close: PyObj,
    pub t_halt: PyObj,
    pub t_resume: PyObj,
    pub t_ref: PyObj,
    pub t_split: PyObj,
    pub off_new: [isize; 17],
    pub off_cancel: [isize; 1],
    pub off_replace: [isize; 9],
    pub off_halt: Vec<isize>,
    pub off_resume: Vec<isize>,
    pub off_ref: Vec<isize>,
    pub off_split: Vec<isize>,
    pub e_accepted: PyObj,
    pub e_rejected: PyObj,
    pub e_filled: PyObj,
    pub e_trade: PyObj,
    pub e_canceled: PyObj,
    pub e_expired: PyObj,
    pub e_replaced: PyObj,
    pub e_triggered: PyObj,
    pub e_activated: PyObj,
    pub e_split_applied: PyObj,
    pub e_adjusted: PyObj,
    pub e_level: PyObj,
    pub e_session: PyObj,
    pub s_order: PyObj,
    pub s_book: PyObj,
    pub s_state: PyObj,
    pub s_state_splits: PyObj,
    pub s_state_epochs: PyObj,
    pub encode: PyObj,
    pub decode: PyObj,
    pub sha256: PyObj,
    pub s: Strs,
}

impl Glue {
    pub fn load(py: Python<'_>) -> PyResult<Glue> {
        let cmds = py.import("engine.commands")?;
        let evs = py.import("engine.events")?;
        let st = py.import("engine.state")?;
        let msgpack = py.import("msgspec.msgpack")?;
        let c = |n: &str| -> PyResult<Bound<'_, PyAny>> { cmds.getattr(n) };
        let e = |n: &str| -> PyResult<PyObj> { Ok(evs.getattr(n)?.unbind()) };
        let t_new = c("NewOrder")?;
        let t_cancel = c("CancelOrder")?;
        let t_replace = c("ReplaceOrder")?;
        let t_halt = c("Halt")?;
        let t_resume = c("Resume")?;
        let t_ref = c("SetReferencePrice")?;
        let t_split = c("SplitApply")?;
        for t in [&t_new, &t_cancel, &t_replace, &t_halt, &t_resume, &t_ref, &t_split] {
            t.cast::<PyType>().map_err(|_| PyValueError::new_err("command is not a class"))?;
        }
        let epochs = st.getattr("EngineStateEpochs")?;
        let decoder = msgpack.getattr("Decoder")?.call1((epochs.clone(),))?;
        let encoder = msgpack.getattr("Encoder")?.call0()?;
        Ok(Glue {
            off_new: fixed(offsets(py, &t_new, &NEW_ORDER_FIELDS)?),
            off_cancel: fixed(offsets(py, &t_cancel, &["order_id"])?),
            off_replace: fixed(offsets(py, &t_replace, &REPLACE_FIELDS)?),
            off_halt: offsets(py, &t_halt, &["symbol"])?,
            off_resume: offsets(py, &t_resume, &["symbol"])?,
            off_ref: offsets(py, &t_ref, &["symbol", "price_e4"])?,
            off_split: offsets(
                py,
                &t_split,
                &["symbol", "split_id", "numerator", "denominator", "tick_e4", "split_epoch"],
            )?,
            t_new: t_new.unbind(),
            t_cancel: t_cancel.unbind(),
            t_replace: t_replace.unbind(),
            t_open: c("SessionOpen")?.unbind(),
            t_close: c("SessionClose")?.unbind(),
            t_halt: t_halt.unbind(),
            t_resume: t_resume.unbind(),
            t_ref: t_ref.unbind(),
            t_split: t_split.unbind(),
            e_accepted: e("OrderAccepted")?,
            e_rejected: e("OrderRejected")?,
            e_filled: e("OrderFilled")?,
            e_trade: e("TradeExecuted")?,
            e_canceled: e("OrderCanceled")?,
            e_expired: e("OrderExpired")?,
            e_replaced: e("OrderReplaced")?,
            e_triggered: e("OrderTriggered")?,
            e_activated: e("OrderActivated")?,
            e_split_applied: e("SplitApplied")?,
            e_adjusted: e("OrderAdjusted")?,
            e_level: e("BookLevelChanged")?,
            e_session: e("SessionChanged")?,
            s_order: st.getattr("OrderState")?.unbind(),
            s_book: st.getattr("BookState")?.unbind(),
            s_state: st.getattr("EngineState")?.unbind(),
            s_state_splits: st.getattr("EngineStateSplits")?.unbind(),
            s_state_epochs: epochs.unbind(),
            encode: encoder.getattr("encode")?.unbind(),
            decode: decoder.getattr("decode")?.unbind(),
            sha256: py.import("hashlib")?.getattr("sha256")?.unbind(),
            s: Strs::new(py),
        })
    }
}
