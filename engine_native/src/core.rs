//! The matching engine, a line-for-line port of `engine/engine.py` + `engine/book.py` (the specification).
//!
//! Invariants (those of the Python engine, plus how this port keeps them):
//! - Same events, same order, same `book_seq`/`trade_id`/`fill_id`, same snapshot bytes as the Python engine for
//!   every command: each Python method has a twin here with the same control flow (the fast paths included,
//!   since they fix the event order), and every Python dict whose iteration order is observable is either an
//!   insertion-ordered `Vec` (`trailing`, `opg`, `cls`, dirty levels) or carries an insertion counter
//!   (`Order::ins` for the engine's `orders` dict: re-inserting a deleted id appends, overwriting a live one
//!   keeps its place, exactly as a Python dict).
//! - Orders live in a slab (`Vec<Order>`) indexed by `u32`; `orders` maps the live ids to it. A slot is freed
//!   when its order becomes DONE and reused only when a later command allocates: inside one command every
//!   allocation precedes every DONE transition, so the done orders a command still reads (as the Python code
//!   reads dead objects) keep their fields until the command ends.
//! - A price level's FIFO is an intrusive doubly linked list through the slab holding live orders only (the
//!   Python deque keeps dead orders until they reach the head; skipping them there or unlinking them at once
//!   shows the same live sequence). `Level::count` = orders linked, `Level::qty` = their leaves.
//! - Command fields are read as i64 (the decoder bounds them: engine/commands.py); every quantity and price
//!   the engine holds or computes from them (order qty/leaves/cum, limit/stop/trail price/water mark, last and
//!   reference prices, level prices and totals, notional in 1e-13 USD, fok and auction sums) is i128, with
//!   Python's floor division: splits take the domain's largest quantities and prices beyond 64 bits (two
//!   1000-for-1 splits: 1e23 qty_e9; two 1-for-1000: 1e21 price_e4), and so does a notional sweep's cum.
//!   Events and snapshots convert with `PyLong_FromLongLong` while a value fits in i64.
//! - Bound: a split cancels every order whose new terms would leave the domain and caps the last and reference
//!   prices at its top tick (`split_keeps`, `split_mark`, as `engine.book`), so what an order holds stays
//!   within the domain after any number of splits; the i128 sums (level and auction totals, notional in
//!   1e-13 USD) stay far inside it. Any overflow raises (release builds keep overflow checks), never wraps.
//! - Stop heaps hold `(stop, arrival, id)` like the Python heaps and look the id up when popped.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use hashbrown::HashTable;
use pyo3::exceptions::{PyIndexError, PyKeyError, PyTypeError, PyValueError, PyZeroDivisionError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use std::hash::Hasher;

use crate::glue::{
    as_bool, as_i64, as_opt_i64, as_pystr, call, field, int, int128, s, str_eq, ustr, Glue, PyObj, PyStrKey, SeqO,
};
use crate::glue::{ascii, int_from, put_i64};

pub const NIL: u32 = u32::MAX;
pub const HELD: u8 = 0; // bracket/OTO child waiting for its parent
pub const PENDING: u8 = 1; // stop / stop_limit / trailing_stop waiting for its trigger
pub const RESTING: u8 = 2; // in a price level
pub const AUCTION: u8 = 3; // opg / cls order waiting for the uncross
pub const ACTIVE: u8 = 4; // being matched as the incoming (taker) order
pub const DONE: u8 = 5; // terminal; removed from every structure
const BPS: i128 = 10_000;
const SHARE: i128 = 1_000_000_000;
/// `engine.commands.QTY_E9_MAX`: the most a notional order fills, the largest qty a split leaves an order
/// (`tests/engine/test_domain.py` pins both bounds).
const QTY_E9_MAX: i128 = 100_000_000_000_000_000;
/// `engine.commands.PRICE_E4_MAX`: the largest price a split leaves an order or a book.
const PRICE_E4_MAX: i128 = 1_000_000_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OType {
    Market,
    Limit,
    Stop,
    StopLimit,
    Trailing,
}

impl OType {
    pub fn parse(v: &str) -> Option<OType> {
        Some(match v {
            "market" => OType::Market,
            "limit" => OType::Limit,
            "stop" => OType::Stop,
            "stop_limit" => OType::StopLimit,
            "trailing_stop" => OType::Trailing,
            _ => return None,
        })
    }
    fn is_stop(self) -> bool {
        matches!(self, OType::Stop | OType::StopLimit | OType::Trailing)
    }
    pub fn name(self, g: &Glue) -> &Py<PyString> {
        match self {
            OType::Market => &g.s.market,
            OType::Limit => &g.s.limit,
            OType::Stop => &g.s.stop,
            OType::StopLimit => &g.s.stop_limit,
            OType::Trailing => &g.s.trailing_stop,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tif {
    Day,
    Gtc,
    Ioc,
    Fok,
    Opg,
    Cls,
}

impl Tif {
    pub fn parse(v: &str) -> Option<Tif> {
        Some(match v {
            "day" => Tif::Day,
            "gtc" => Tif::Gtc,
            "ioc" => Tif::Ioc,
            "fok" => Tif::Fok,
            "opg" => Tif::Opg,
            "cls" => Tif::Cls,
            _ => return None,
        })
    }
    fn continuous(self) -> bool {
        matches!(self, Tif::Day | Tif::Gtc | Tif::Ioc | Tif::Fok)
    }
    fn auction(self) -> bool {
        matches!(self, Tif::Opg | Tif::Cls)
    }
    pub fn name(self, g: &Glue) -> &Py<PyString> {
        match self {
            Tif::Day => &g.s.day,
            Tif::Gtc => &g.s.gtc,
            Tif::Ioc => &g.s.ioc,
            Tif::Fok => &g.s.fok,
            Tif::Opg => &g.s.opg,
            Tif::Cls => &g.s.cls,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Simple,
    Bracket,
    Oco,
    Oto,
}

/// An order id as map key, copied out of its Python str so that probing the map never touches a Python
/// object (those probes were the engine's cache misses on a deep book); ids up to 39 bytes (a UUID and its
/// leg suffix) stay inline.
#[derive(Clone)]
pub enum IdKey {
    Inline(u8, [u8; 39]),
    Heap(Box<str>),
}

impl IdKey {
    pub fn new(s: &str) -> IdKey {
        if s.len() <= 39 {
            let mut buf = [0u8; 39];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            IdKey::Inline(s.len() as u8, buf)
        } else {
            IdKey::Heap(s.into())
        }
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        match self {
            // Copied from a &str on a char boundary (the whole string): valid UTF-8.
            IdKey::Inline(n, buf) => unsafe { std::str::from_utf8_unchecked(&buf[..*n as usize]) },
            IdKey::Heap(s) => s,
        }
    }
}

/// New reference to an object we hold.
#[inline]
fn s_any(x: &PyObj) -> *mut ffi::PyObject {
    let p = x.as_ptr();
    unsafe { ffi::Py_INCREF(p) };
    p
}

/// A hint to fetch the cache line at `p` (no effect on results; a no-op off x86-64).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[inline]
pub fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.write_u8(0xff);
    h.finish()
}

/// Hot fields first (`repr(C)` keeps this order): matching and cancels read the first two cache lines. The
/// i128 amounts lead each group (16-byte aligned): `leaves`..`tif` fill the first 64 bytes without padding.
#[repr(C)]
pub struct Order {
    pub leaves: i128,
    pub cum: i128,
    pub limit: i128,
    pub book: u32,
    pub prev: u32,
    pub next: u32,
    pub state: u8,
    pub is_buy: bool,
    pub otype: OType,
    pub tif: Tif,
    pub acct_h: u64, // hash of `account`: accounts compare by hash first
    pub h: u64,      // hash of the id (`key`)
    pub oid: Py<PyString>,
    pub account: Py<PyString>,
    pub oco: Option<Py<PyString>>, // None = Python's ""
    pub children: Vec<Py<PyString>>,
    pub key: IdKey,
    pub parent: Option<Py<PyString>>,
    pub qty: i128,
    pub stop: i128,
    pub trail_price: i128,
    pub water: i128,
    pub notional_left: i128,
    pub notional: i64,
    pub trail_bps: i64,
    pub arrival: i64,
    pub ins: u64, // position in the engine's `orders` dict
    pub extended: bool,
}

const _: () = assert!(std::mem::offset_of!(Order, acct_h) == 64);

impl Order {
    /// Set the derived keys (`key`, `h`, `acct_h`) from `oid` and `account`.
    pub fn with_keys(mut self) -> Order {
        let id = ustr(self.oid.as_ptr());
        self.key = IdKey::new(id);
        self.h = hash_str(id);
        self.acct_h = hash_str(ustr(self.account.as_ptr()));
        self
    }

    #[inline]
    fn same_account(&self, acct_h: u64, acct: &Py<PyString>) -> bool {
        self.acct_h == acct_h && str_eq(&self.account, acct)
    }
}

pub struct Level {
    pub qty: i128,
    pub count: i64,
    pub head: u32,
    pub tail: u32,
    price_o: Option<PyObj>, // the price as an int, made once: every level event and fill at this level shares it
}

impl Level {
    fn new() -> Level {
        Level { qty: 0, count: 0, head: NIL, tail: NIL, price_o: None }
    }

    /// New reference to this level's price `p` as an int (NULL with the error set if it cannot be made).
    #[inline]
    fn price_obj(&mut self, py: Python<'_>, p: i128) -> *mut ffi::PyObject {
        let o = match &self.price_o {
            Some(o) => o.as_ptr(),
            None => {
                let o = int128(py, p);
                if o.is_null() {
                    return o;
                }
                self.price_o = Some(unsafe { Bound::from_owned_ptr(py, o).unbind() });
                o
            }
        };
        unsafe { ffi::Py_INCREF(o) };
        o
    }
}

#[derive(Default)]
pub struct Side {
    pub levels: FxHashMap<i128, Level>,
    pub keys: Vec<i128>, // sorted; bids by price, asks by negated price: the best level is last
}

type StopHeap = BinaryHeap<Reverse<(i128, i64, Box<str>)>>;

pub struct Book {
    pub symbol: Py<PyString>,
    pub bids: Side,
    pub asks: Side,
    buy_stops: StopHeap,  // (stop, arrival, id): triggers when last >= stop
    sell_stops: StopHeap, // (-stop, arrival, id): triggers when last <= stop
    pub trailing: Vec<u32>,
    pub opg: Vec<u32>,
    pub cls: Vec<u32>,
    pub last_price: i128,
    pub ref_price: i128,
    pub halted: bool,
    pub book_seq: i64,
    pub arrival: i64,
    // Per-command scratch state (kept across commands exactly like the Python book's).
    seq: i64,
    match_n: i64,
    prices: Vec<i128>,
    to_activate: Vec<u32>,
    dirty_bid: Vec<i128>,
    dirty_ask: Vec<i128>,
}

impl Book {
    fn new(symbol: Py<PyString>) -> Book {
        Book {
            symbol,
            bids: Side::default(),
            asks: Side::default(),
            buy_stops: BinaryHeap::new(),
            sell_stops: BinaryHeap::new(),
            trailing: Vec::new(),
            opg: Vec::new(),
            cls: Vec::new(),
            last_price: 0,
            ref_price: 0,
            halted: false,
            book_seq: 0,
            arrival: 0,
            seq: 0,
            match_n: 0,
            prices: Vec::new(),
            to_activate: Vec::new(),
            dirty_bid: Vec::new(),
            dirty_ask: Vec::new(),
        }
    }

    pub fn best_bid(&self) -> Option<i128> {
        self.bids.keys.last().copied()
    }

    pub fn best_ask(&self) -> Option<i128> {
        self.asks.keys.last().map(|k| -k)
    }

    /// Prices of live levels, best first.
    pub fn prices_best_first(&self, is_buy: bool) -> Vec<i128> {
        let side = if is_buy { &self.bids } else { &self.asks };
        let mut ps: Vec<i128> = side.levels.iter().filter(|(_, l)| l.count != 0).map(|(p, _)| *p).collect();
        ps.sort_unstable();
        if is_buy {
            ps.reverse();
        }
        ps
    }
}

#[inline]
fn mark(dirty: &mut Vec<i128>, p: i128) {
    if !dirty.contains(&p) {
        dirty.push(p);
    }
}

/// Python's `a // b` (rounds toward -inf).
#[inline]
fn floordiv(a: i128, b: i128) -> PyResult<i128> {
    if b == 0 {
        return Err(PyZeroDivisionError::new_err("integer division or modulo by zero"));
    }
    let q = a / b;
    Ok(if (a % b != 0) && ((a < 0) != (b < 0)) { q - 1 } else { q })
}

/// Python's `a % b` (sign of b).
#[inline]
fn pymod(a: i128, b: i128) -> PyResult<i128> {
    Ok(a - floordiv(a, b)? * b)
}

#[cold]
#[inline(never)]
fn overflow() -> PyErr {
    pyo3::exceptions::PyOverflowError::new_err("amount beyond the native engine's range (i128)")
}

fn mul(a: i128, b: i128) -> PyResult<i128> {
    a.checked_mul(b).ok_or_else(overflow)
}

fn trailing_stop_price(is_buy: bool, water: i128, trail_price: i128, trail_bps: i64) -> PyResult<i128> {
    if trail_price != 0 {
        let v = if is_buy { water.checked_add(trail_price) } else { water.checked_sub(trail_price) };
        return v.ok_or_else(overflow);
    }
    if is_buy {
        return Ok(-floordiv(mul(-water, BPS + trail_bps as i128)?, BPS)?);
    }
    floordiv(mul(water, BPS - trail_bps as i128)?, BPS)
}

fn split_price(value: i128, num: i64, den: i64, tick: i64, up: bool) -> PyResult<i128> {
    if value == 0 {
        return Ok(0);
    }
    let n = mul(value, den as i128)?;
    let d = num as i128 * tick as i128;
    let ticks = if up { -floordiv(-n, d)? } else { floordiv(n, d)? };
    mul(if ticks > 1 { ticks } else { 1 }, tick as i128)
}

fn split_qty(value: i128, num: i64, den: i64, whole: bool) -> PyResult<i128> {
    let q = floordiv(mul(value, num as i128)?, den as i128)?;
    Ok(if whole { q - pymod(q, SHARE)? } else { q })
}

/// `engine.book.split_keeps`: whether `o` stays live through the split (leaves that do not round to 0, terms
/// inside the domain).
fn split_keeps(o: &Order, num: i64, den: i64, tick: i64) -> PyResult<bool> {
    let whole = !o.is_buy || o.leaves % SHARE == 0;
    let leaves = split_qty(o.leaves, num, den, whole)?;
    if leaves == 0 || split_qty(o.cum, num, den, false)? + leaves > QTY_E9_MAX {
        return Ok(false);
    }
    if o.otype != OType::Trailing && split_price(o.stop, num, den, tick, o.is_buy)? > PRICE_E4_MAX {
        return Ok(false);
    }
    Ok(split_price(o.limit, num, den, tick, !o.is_buy)? <= PRICE_E4_MAX
        && split_price(o.trail_price, num, den, tick, false)? <= PRICE_E4_MAX
        && split_price(o.water, num, den, tick, false)? <= PRICE_E4_MAX)
}

/// `engine.book.split_mark`: a book's last or reference price through a split, at most the domain's top tick.
fn split_mark(value: i128, num: i64, den: i64, tick: i64) -> PyResult<i128> {
    Ok(split_price(value, num, den, tick, false)?.min(PRICE_E4_MAX - PRICE_E4_MAX % tick as i128))
}

fn link_tail(slab: &mut [Order], lvl: &mut Level, i: u32) {
    slab[i as usize].prev = lvl.tail;
    slab[i as usize].next = NIL;
    if lvl.tail != NIL {
        slab[lvl.tail as usize].next = i;
    } else {
        lvl.head = i;
    }
    lvl.tail = i;
}

fn unlink(slab: &mut [Order], lvl: &mut Level, i: u32) {
    let (p, n) = (slab[i as usize].prev, slab[i as usize].next);
    if p == NIL && lvl.head != i {
        return; // not linked in this level
    }
    if p != NIL {
        slab[p as usize].next = n;
    } else {
        lvl.head = n;
    }
    if n != NIL {
        slab[n as usize].prev = p;
    } else {
        lvl.tail = p;
    }
    slab[i as usize].prev = NIL;
    slab[i as usize].next = NIL;
}

fn key_err(k: impl std::fmt::Display) -> PyErr {
    PyKeyError::new_err(k.to_string())
}

/// Parameters of a new order as read from a `NewOrder`.
/// Quantities and prices as i128: a replace takes them from the old order, which a split may have widened.
struct Params {
    qty: Option<i128>,
    notional: Option<i64>,
    limit: Option<i128>,
    stop: Option<i128>,
    trail_price: Option<i128>,
    trail_bps: Option<i64>,
}

/// `engine.engine.validate_order`.
fn validate_order(otype: OType, tif: Tif, p: &Params, extended: bool) -> Option<Reason> {
    if p.qty.is_none() == p.notional.is_none() {
        return Some(Reason::InvalidQuantity);
    }
    if let Some(q) = p.qty {
        if q <= 0 {
            return Some(Reason::InvalidQuantity);
        }
    }
    if let Some(n) = p.notional {
        if n <= 0 || otype != OType::Market || matches!(tif, Tif::Fok | Tif::Opg | Tif::Cls) {
            return Some(Reason::InvalidQuantity);
        }
    }
    let needs_limit = matches!(otype, OType::Limit | OType::StopLimit);
    if needs_limit != p.limit.is_some() || p.limit.is_some_and(|l| l <= 0) {
        return Some(Reason::InvalidPrice);
    }
    let needs_stop = matches!(otype, OType::Stop | OType::StopLimit);
    if needs_stop != p.stop.is_some() || p.stop.is_some_and(|l| l <= 0) {
        return Some(Reason::InvalidPrice);
    }
    if otype == OType::Trailing {
        if p.trail_price.is_none() == p.trail_bps.is_none() {
            return Some(Reason::InvalidPrice);
        }
        if p.trail_price.is_some_and(|v| v <= 0) {
            return Some(Reason::InvalidPrice);
        }
        if p.trail_bps.is_some_and(|v| !(0 < v && v < 10_000)) {
            return Some(Reason::InvalidPrice);
        }
    } else if p.trail_price.is_some() || p.trail_bps.is_some() {
        return Some(Reason::InvalidPrice);
    }
    if otype.is_stop() && !matches!(tif, Tif::Day | Tif::Gtc) {
        return Some(Reason::InvalidOrder);
    }
    if tif.auction() && !matches!(otype, OType::Market | OType::Limit) {
        return Some(Reason::InvalidOrder);
    }
    if extended && (otype != OType::Limit || tif != Tif::Day) {
        return Some(Reason::InvalidOrder);
    }
    None
}

#[derive(Clone, Copy)]
enum Reason {
    InvalidQuantity,
    InvalidPrice,
    InvalidOrder,
    Duplicate,
    Unknown,
    NotReplaceable,
    AuctionClosed,
    Halted,
    Stale,
    Ahead,
}

impl Reason {
    fn name(self, g: &Glue) -> &Py<PyString> {
        match self {
            Reason::InvalidQuantity => &g.s.invalid_quantity,
            Reason::InvalidPrice => &g.s.invalid_price,
            Reason::InvalidOrder => &g.s.invalid_order,
            Reason::Duplicate => &g.s.duplicate_order_id,
            Reason::Unknown => &g.s.unknown_order,
            Reason::NotReplaceable => &g.s.not_replaceable,
            Reason::AuctionClosed => &g.s.auction_closed,
            Reason::Halted => &g.s.halted,
            Reason::Stale => &g.s.split_epoch_stale,
            Reason::Ahead => &g.s.split_epoch_ahead,
        }
    }
}

/// A take-profit / stop-loss leg as read from the command (`StopLoss.limit_price_e4` may be None).
struct Leg {
    limit: Option<i64>,
    stop: i64,
}

pub struct Core {
    pub g: &'static Glue,
    pub slab: Vec<Order>,
    free: Vec<u32>,
    pub orders: HashTable<u32>, // live orders by id (hash `Order::h`, key `Order::key`)
    ins: u64,
    sym_cache: Option<(Py<PyString>, u32)>, // the last symbol object seen -> its book
    pub books: Vec<Book>,
    pub book_map: FxHashMap<PyStrKey, u32>,
    pub out: Vec<PyObj>,
    seq_keep: Option<PyObj>, // the current command's seq object, shared by its events (`sq`)
    sq: SeqO,
    pub last_seq: i64,
    pub phase: Py<PyString>,
    pub splits: Vec<Py<PyString>>,
    split_ids: FxHashSet<String>,
    pub split_epochs: BTreeMap<String, i64>,
}

impl Core {
    pub fn new(py: Python<'_>, g: &'static Glue) -> Core {
        Core {
            g,
            slab: Vec::new(),
            free: Vec::new(),
            orders: HashTable::new(),
            ins: 0,
            sym_cache: None,
            books: Vec::new(),
            book_map: FxHashMap::default(),
            out: Vec::new(),
            seq_keep: None,
            sq: SeqO::NONE,
            last_seq: -1,
            phase: g.s.closed.clone_ref(py),
            splits: Vec::new(),
            split_ids: FxHashSet::default(),
            split_epochs: BTreeMap::new(),
        }
    }

    // ------------------------------------------------------------------ order storage
    fn alloc(&mut self, o: Order) -> u32 {
        if let Some(i) = self.free.pop() {
            self.slab[i as usize] = o;
            i
        } else {
            self.slab.push(o);
            (self.slab.len() - 1) as u32
        }
    }

    /// `o.state = DONE`; the slot is reusable from the next allocation on.
    #[inline]
    fn set_done(&mut self, i: u32) {
        let o = &mut self.slab[i as usize];
        if o.state != DONE {
            o.state = DONE;
            self.free.push(i);
            // The slot's next allocation (LIFO, usually a command or two later) drops its id and account strs:
            // on a deep book those objects were last touched when the order was accepted and are cold by now
            // (the account often not even in the last-level cache). Fetching them now overlaps that miss with
            // this command's remaining work instead of stalling the decref at reuse.
            prefetch(o.account.as_ptr());
            prefetch(o.oid.as_ptr());
        }
    }

    /// `orders[o.order_id] = o` with Python dict semantics (an existing key keeps its position).
    fn orders_insert(&mut self, _py: Python<'_>, i: u32) {
        let slab = &self.slab;
        let (h, key) = (slab[i as usize].h, slab[i as usize].key.as_str());
        if let Some(v) = self.orders.find_mut(h, |&j| slab[j as usize].key.as_str() == key) {
            let j = *v;
            *v = i;
            self.slab[i as usize].ins = self.slab[j as usize].ins;
        } else {
            self.orders.insert_unique(h, i, |&j| slab[j as usize].h);
            self.ins += 1;
            self.slab[i as usize].ins = self.ins;
        }
    }

    #[inline]
    pub fn orders_get(&self, key: &str) -> Option<u32> {
        let slab = &self.slab;
        self.orders.find(hash_str(key), |&j| slab[j as usize].key.as_str() == key).copied()
    }

    /// `del orders[o.order_id]` (KeyError when absent).
    #[inline]
    fn orders_del(&mut self, i: u32) -> PyResult<()> {
        let slab = &self.slab;
        let (h, key) = (slab[i as usize].h, slab[i as usize].key.as_str());
        match self.orders.find_entry(h, |&j| j == i || slab[j as usize].key.as_str() == key) {
            Ok(e) => {
                e.remove();
                Ok(())
            }
            Err(_) => Err(key_err(format!("'{key}'"))),
        }
    }

    /// Live order indices in the `orders` dict's order (acceptance order).
    pub fn orders_in_order(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.orders.iter().copied().collect();
        v.sort_unstable_by_key(|&i| self.slab[i as usize].ins);
        v
    }

    pub fn books_sorted(&self) -> Vec<u32> {
        let mut v: Vec<(&str, u32)> = self.book_map.iter().map(|(k, &b)| (k.as_str(), b)).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|(_, b)| b).collect()
    }

    fn book_for(&mut self, py: Python<'_>, symbol: &Py<PyString>) -> u32 {
        // Commands of one symbol usually share its str object; holding it keeps the address from being reused.
        if let Some((s, b)) = &self.sym_cache {
            if s.as_ptr() == symbol.as_ptr() {
                return *b;
            }
        }
        let b = match self.book_map.get(ustr(symbol.as_ptr())) {
            Some(&b) => b,
            None => {
                self.books.push(Book::new(symbol.clone_ref(py)));
                let b = (self.books.len() - 1) as u32;
                self.book_map.insert(PyStrKey(symbol.clone_ref(py)), b);
                b
            }
        };
        self.sym_cache = Some((symbol.clone_ref(py), b));
        b
    }

    #[inline]
    fn begin(&mut self, b: usize, seq: i64) {
        let bk = &mut self.books[b];
        bk.seq = seq;
        bk.match_n = 0;
    }

    // ------------------------------------------------------------------ events
    fn reject(&mut self, py: Python<'_>, b: Option<usize>, seq: i64, oid: &Py<PyString>, r: Reason) -> PyResult<()> {
        let g = self.g;
        let ev = match b {
            None => call(py, &g.e_rejected, &[s(&g.s.empty), int(0), self.sq.get(seq), s(oid), s(r.name(g))])?,
            Some(b) => {
                let bk = &mut self.books[b];
                bk.book_seq += 1;
                call(py, &g.e_rejected, &[s(&bk.symbol), int(bk.book_seq), self.sq.get(seq), s(oid), s(r.name(g))])?
            }
        };
        self.out.push(ev);
        Ok(())
    }

    fn emit_canceled(&mut self, py: Python<'_>, b: usize, i: u32, reason: &Py<PyString>) -> PyResult<()> {
        let g = self.g;
        let bk = &mut self.books[b];
        bk.book_seq += 1;
        let o = &self.slab[i as usize];
        let ev = call(
            py,
            &g.e_canceled,
            &[
                s(&bk.symbol),
                int(bk.book_seq),
                self.sq.get(bk.seq),
                s(&o.oid),
                s(reason),
                int128(py, o.cum),
                int128(py, o.leaves),
            ],
        )?;
        self.out.push(ev);
        Ok(())
    }

    fn accept(&mut self, py: Python<'_>, b: usize, i: u32, parent: Option<&Py<PyString>>) -> PyResult<()> {
        self.orders_insert(py, i);
        let g = self.g;
        let bk = &mut self.books[b];
        bk.book_seq += 1;
        let o = &self.slab[i as usize];
        let ev = call(
            py,
            &g.e_accepted,
            &[
                s(&bk.symbol),
                int(bk.book_seq),
                self.sq.get(bk.seq),
                s(&o.oid),
                s(&o.account),
                s(if o.is_buy { &g.s.buy } else { &g.s.sell }),
                s(o.otype.name(g)),
                s(o.tif.name(g)),
                int128(py, o.qty),
                int(o.notional),
                int128(py, o.limit),
                int128(py, o.stop),
                s(parent.unwrap_or(&g.s.empty)),
            ],
        )?;
        self.out.push(ev);
        Ok(())
    }

    // ------------------------------------------------------------------ command framing
    fn end(&mut self, py: Python<'_>, b: usize) -> PyResult<()> {
        let bk = &mut self.books[b];
        if !bk.to_activate.is_empty() {
            self.drain(py, b)?;
        } else if !bk.prices.is_empty() {
            if !bk.buy_stops.is_empty() || !bk.sell_stops.is_empty() || !bk.trailing.is_empty() {
                self.drain(py, b)?;
            } else {
                bk.prices.clear(); // no stop can trigger: drain would find nothing
            }
        }
        let bk = &self.books[b];
        if !bk.dirty_bid.is_empty() || !bk.dirty_ask.is_empty() {
            self.publish_levels(py, b)?;
        }
        Ok(())
    }

    fn publish_levels(&mut self, py: Python<'_>, b: usize) -> PyResult<()> {
        let g = self.g;
        let bk = &mut self.books[b];
        let mut bs = bk.book_seq;
        for is_buy in [true, false] {
            let dirty = std::mem::take(if is_buy { &mut bk.dirty_bid } else { &mut bk.dirty_ask });
            let levels = if is_buy { &mut bk.bids.levels } else { &mut bk.asks.levels };
            let side = if is_buy { &g.s.buy } else { &g.s.sell };
            for &p in &dirty {
                bs += 1;
                let (q, c, p_o) = match levels.get_mut(&p) {
                    Some(l) => (l.qty, l.count, l.price_obj(py, p)),
                    None => (0, 0, int128(py, p)),
                };
                let ev = call(
                    py,
                    &g.e_level,
                    &[s(&bk.symbol), int(bs), self.sq.get(bk.seq), s(side), p_o, int128(py, q), int(c)],
                );
                match ev {
                    Ok(ev) => self.out.push(ev),
                    Err(e) => {
                        bk.book_seq = bs;
                        return Err(e);
                    }
                }
            }
        }
        bk.book_seq = bs;
        Ok(())
    }

    // ------------------------------------------------------------------ book internals
    fn drop_level(&mut self, b: usize, is_buy: bool, p: i128) -> PyResult<()> {
        let side = if is_buy { &mut self.books[b].bids } else { &mut self.books[b].asks };
        if side.levels.remove(&p).is_none() {
            return Err(key_err(p));
        }
        let k = if is_buy { p } else { -p };
        let keys = &mut side.keys;
        if keys.last() == Some(&k) {
            keys.pop();
        } else {
            let i = keys.partition_point(|&x| x < k);
            if i >= keys.len() {
                return Err(PyIndexError::new_err("list assignment index out of range"));
            }
            keys.remove(i);
        }
        Ok(())
    }

    /// Take a live order out of whatever structure holds it and mark it DONE (no event).
    fn remove(&mut self, b: usize, i: u32) -> PyResult<()> {
        let (st, p, is_buy, leaves, tif) = {
            let o = &self.slab[i as usize];
            (o.state, o.limit, o.is_buy, o.leaves, o.tif)
        };
        let bk = &mut self.books[b];
        match st {
            RESTING => {
                let (side, dirty) =
                    if is_buy { (&mut bk.bids, &mut bk.dirty_bid) } else { (&mut bk.asks, &mut bk.dirty_ask) };
                let lvl = side.levels.get_mut(&p).ok_or_else(|| key_err(p))?;
                mark(dirty, p);
                lvl.qty -= leaves;
                lvl.count -= 1;
                unlink(&mut self.slab, lvl, i);
                if lvl.count == 0 {
                    self.drop_level(b, is_buy, p)?;
                }
            }
            PENDING => {
                if let Some(k) = bk.trailing.iter().position(|&x| x == i) {
                    bk.trailing.remove(k); // plain stops are dropped lazily from their heap
                }
            }
            AUCTION => {
                let v = if tif == Tif::Opg { &mut bk.opg } else { &mut bk.cls };
                if let Some(k) = v.iter().position(|&x| x == i) {
                    v.remove(k);
                }
            }
            _ => {}
        }
        self.set_done(i);
        self.orders_del(i)
    }

    fn cancel(&mut self, py: Python<'_>, b: usize, i: u32, reason: &Py<PyString>) -> PyResult<()> {
        self.remove(b, i)?;
        self.emit_canceled(py, b, i, reason)?;
        let o = &self.slab[i as usize];
        if o.oco.is_some() || !o.children.is_empty() {
            self.on_terminal(py, b, i, true)?;
        }
        Ok(())
    }

    fn expire(&mut self, py: Python<'_>, b: usize, i: u32) -> PyResult<()> {
        self.remove(b, i)?;
        let g = self.g;
        let bk = &mut self.books[b];
        bk.book_seq += 1;
        let o = &self.slab[i as usize];
        let ev = call(
            py,
            &g.e_expired,
            &[s(&bk.symbol), int(bk.book_seq), self.sq.get(bk.seq), s(&o.oid), int128(py, o.cum), int128(py, o.leaves)],
        )?;
        self.out.push(ev);
        self.on_terminal(py, b, i, false)
    }

    fn on_terminal(&mut self, py: Python<'_>, b: usize, i: u32, activate: bool) -> PyResult<()> {
        let g = self.g;
        if let Some(oco) = self.slab[i as usize].oco.take() {
            if let Some(sib) = self.orders_get(ustr(oco.as_ptr())) {
                self.slab[sib as usize].oco = None;
                self.cancel(py, b, sib, &g.s.oco_sibling)?;
            }
        }
        if !self.slab[i as usize].children.is_empty() {
            let kids: Vec<Py<PyString>> = self.slab[i as usize].children.iter().map(|c| c.clone_ref(py)).collect();
            for cid in &kids {
                let Some(child) = self.orders_get(ustr(cid.as_ptr())) else {
                    continue;
                };
                if self.slab[child as usize].state != HELD {
                    continue;
                }
                let cum = self.slab[i as usize].cum;
                if cum > 0 {
                    if activate {
                        let c = &mut self.slab[child as usize];
                        c.qty = cum;
                        c.leaves = cum;
                        self.books[b].to_activate.push(child);
                    }
                } else {
                    self.slab[child as usize].oco = None; // report parent_canceled for each leg, not oco_sibling
                    self.cancel(py, b, child, &g.s.parent_canceled)?;
                }
            }
        }
        Ok(())
    }

    fn first_fill_oco(&mut self, py: Python<'_>, b: usize, i: u32) -> PyResult<()> {
        let oco = self.slab[i as usize].oco.take();
        if let Some(oco) = oco {
            if let Some(sib) = self.orders_get(ustr(oco.as_ptr())) {
                self.slab[sib as usize].oco = None;
                let g = self.g;
                self.cancel(py, b, sib, &g.s.oco_sibling)?;
            }
        }
        Ok(())
    }

    fn rest(&mut self, b: usize, i: u32) {
        let (p, is_buy, leaves) = {
            let o = &self.slab[i as usize];
            (o.limit, o.is_buy, o.leaves)
        };
        let bk = &mut self.books[b];
        let (side, dirty) = if is_buy { (&mut bk.bids, &mut bk.dirty_bid) } else { (&mut bk.asks, &mut bk.dirty_ask) };
        let keys = &mut side.keys;
        let lvl = side.levels.entry(p).or_insert_with(|| {
            let k = if is_buy { p } else { -p };
            let at = keys.partition_point(|&x| x <= k);
            keys.insert(at, k);
            Level::new()
        });
        link_tail(&mut self.slab, lvl, i);
        lvl.qty += leaves;
        lvl.count += 1;
        self.slab[i as usize].state = RESTING;
        mark(dirty, p);
    }

    fn push_stop(bk: &mut Book, o: &Order) {
        let id: Box<str> = o.key.as_str().into();
        if o.is_buy {
            bk.buy_stops.push(Reverse((o.stop, o.arrival, id)));
        } else {
            bk.sell_stops.push(Reverse((-o.stop, o.arrival, id)));
        }
    }

    fn add_stop(&mut self, b: usize, i: u32) -> PyResult<()> {
        let bk = &mut self.books[b];
        let o = &mut self.slab[i as usize];
        o.state = PENDING;
        if o.otype == OType::Trailing {
            let base = if bk.last_price != 0 { bk.last_price } else { bk.ref_price };
            if base != 0 {
                o.water = base;
                o.stop = trailing_stop_price(o.is_buy, base, o.trail_price, o.trail_bps)?;
            }
            bk.trailing.push(i);
            return Ok(());
        }
        Self::push_stop(bk, o);
        if bk.last_price != 0 {
            // Re-evaluate against the current last price: a stop that is already through triggers now.
            bk.prices.push(bk.last_price);
        }
        Ok(())
    }

    /// Is there enough crossing, non-self liquidity to fill `o` completely? (no state change)
    fn fok_ok(&self, b: usize, i: u32) -> bool {
        let o = &self.slab[i as usize];
        let mut need = o.leaves;
        let is_buy = o.is_buy;
        let limit = if o.otype == OType::Limit { Some(o.limit) } else { None };
        let side = if is_buy { &self.books[b].asks } else { &self.books[b].bids };
        // Best first, stopping at the limit: the answer is a sum, so the Python dict order does not matter.
        for &k in side.keys.iter().rev() {
            let p = if is_buy { -k } else { k };
            if let Some(l) = limit {
                if if is_buy { p > l } else { p < l } {
                    break;
                }
            }
            let Some(lvl) = side.levels.get(&p) else {
                continue;
            };
            let mut m = lvl.head;
            while m != NIL {
                let mo = &self.slab[m as usize];
                if mo.state == RESTING && !mo.same_account(o.acct_h, &o.account) {
                    need -= mo.leaves;
                    if need <= 0 {
                        return true;
                    }
                }
                m = mo.next;
            }
        }
        false
    }

    fn take(&mut self, py: Python<'_>, b: usize, i: u32) -> PyResult<()> {
        let g = self.g;
        self.slab[i as usize].state = ACTIVE;
        if self.slab[i as usize].tif == Tif::Fok && !self.fok_ok(b, i) {
            return self.cancel(py, b, i, &g.s.fok_unfilled);
        }
        let exhausted = self.match_(py, b, i)?;
        let o = &self.slab[i as usize];
        if o.state != ACTIVE {
            return Ok(());
        }
        if o.notional != 0 {
            if exhausted || o.cum == 0 {
                self.cancel(py, b, i, &g.s.market_no_liquidity)
            } else {
                self.finish(py, b, i)
            }
        } else if o.leaves == 0 {
            self.finish(py, b, i)
        } else if o.otype == OType::Market {
            self.cancel(py, b, i, &g.s.market_no_liquidity)
        } else if matches!(o.tif, Tif::Ioc | Tif::Fok) {
            self.cancel(py, b, i, &g.s.ioc_remainder)
        } else {
            self.rest(b, i);
            Ok(())
        }
    }

    fn finish(&mut self, py: Python<'_>, b: usize, i: u32) -> PyResult<()> {
        self.set_done(i);
        self.orders_del(i)?;
        self.on_terminal(py, b, i, true)
    }

    /// Match incoming `o` against the opposite side; true when that side ran out (`OrderBook._match`).
    fn match_(&mut self, py: Python<'_>, b: usize, oi: u32) -> PyResult<bool> {
        let g = self.g;
        let (is_buy, limit, notional, acct, acct_h, oid) = {
            let o = &self.slab[oi as usize];
            let limit = if o.otype == OType::Limit { o.limit } else { 0 };
            (o.is_buy, limit, o.notional, o.account.clone_ref(py), o.acct_h, o.oid.clone_ref(py))
        };
        let (m_side, t_side, m_suf, t_suf, aggr) = if is_buy {
            (&g.s.sell, &g.s.buy, b":s", b":b", &g.s.buy)
        } else {
            (&g.s.buy, &g.s.sell, b":b", b":s", &g.s.sell)
        };
        let seq = self.books[b].seq;
        let sym = self.books[b].symbol.clone_ref(py);
        let mut tid_buf = [0u8; 48]; // "{seq}:{n}:b": at most 20 + 1 + 20 + 2 bytes
        let pre_len = put_i64(&mut tid_buf, 0, seq);
        tid_buf[pre_len] = b':';
        let pre_len = pre_len + 1;
        loop {
            let bk = &mut self.books[b];
            let side = if is_buy { &bk.asks } else { &bk.bids };
            let Some(&k) = side.keys.last() else {
                return Ok(true);
            };
            let p = if is_buy { -k } else { k };
            if limit != 0 && (if is_buy { p > limit } else { p < limit }) {
                return Ok(false);
            }
            let mut want: i128 = if notional != 0 {
                // A notional order fills at most the domain's largest quantity (as `OrderBook._match`).
                let w = floordiv(self.slab[oi as usize].notional_left, p)?;
                let room = QTY_E9_MAX - self.slab[oi as usize].cum;
                if w > room {
                    room
                } else {
                    w
                }
            } else {
                self.slab[oi as usize].leaves
            };
            if want == 0 {
                return Ok(false);
            }
            mark(if is_buy { &mut bk.dirty_ask } else { &mut bk.dirty_bid }, p);
            let p_o = {
                let side = if is_buy { &mut bk.asks } else { &mut bk.bids };
                let r = match side.levels.get_mut(&p) {
                    Some(l) => l.price_obj(py, p),
                    None => int128(py, p),
                };
                unsafe { Bound::from_owned_ptr_or_err(py, r)?.unbind() }
            };
            loop {
                let bk = &mut self.books[b];
                let side = if is_buy { &mut bk.asks } else { &mut bk.bids };
                // A level emptied by a self-trade cancel is dropped by it: Python's `lvl.count` is then 0.
                let Some(lvl) = side.levels.get_mut(&p) else {
                    break;
                };
                if want == 0 || lvl.count == 0 {
                    break;
                }
                let mi = lvl.head;
                if self.slab[mi as usize].same_account(acct_h, &acct) {
                    self.cancel(py, b, mi, &g.s.self_trade)?; // may drop the level
                    continue;
                }
                let ml0 = self.slab[mi as usize].leaves;
                let q = if want < ml0 { want } else { ml0 };
                want -= q;
                if notional != 0 {
                    self.slab[oi as usize].notional_left -= p * q;
                }
                let n = bk.match_n;
                bk.match_n = n + 1;
                let ml = ml0 - q;
                let mc = {
                    let m = &mut self.slab[mi as usize];
                    m.leaves = ml;
                    m.cum += q;
                    m.cum
                };
                lvl.qty -= q;
                let (tl, tc) = {
                    let o = &mut self.slab[oi as usize];
                    if notional == 0 {
                        o.leaves -= q;
                    }
                    o.cum += q;
                    (o.leaves, o.cum)
                };
                let bs = bk.book_seq;
                // trade_id "{seq}:{n}", fill ids trade_id + ":b"/":s": each one str built from a stack buffer.
                let tlen = put_i64(&mut tid_buf, pre_len, n);
                let own = |p: *mut ffi::PyObject| unsafe { Bound::from_owned_ptr_or_err(py, p).map(|b| b.unbind()) };
                let tid = own(ascii(&tid_buf[..tlen]))?;
                tid_buf[tlen..tlen + 2].copy_from_slice(m_suf);
                let m_fid = own(ascii(&tid_buf[..tlen + 2]))?;
                tid_buf[tlen..tlen + 2].copy_from_slice(t_suf);
                let t_fid = own(ascii(&tid_buf[..tlen + 2]))?;
                let q_o = unsafe { Bound::from_owned_ptr_or_err(py, int128(py, q))?.unbind() };
                let m = &self.slab[mi as usize];
                let (buy_id, sell_id) = if is_buy { (&oid, &m.oid) } else { (&m.oid, &oid) };
                let inc = |x: &PyObj| -> *mut ffi::PyObject {
                    let p = x.as_ptr();
                    unsafe { ffi::Py_INCREF(p) };
                    p
                };
                let e1 = call(
                    py,
                    &g.e_trade,
                    &[
                        s(&sym),
                        int(bs + 1),
                        self.sq.get(seq),
                        inc(&tid),
                        inc(&p_o),
                        inc(&q_o),
                        s(buy_id),
                        s(sell_id),
                        s(aggr),
                    ],
                )?;
                let e2 = call(
                    py,
                    &g.e_filled,
                    &[
                        s(&sym),
                        int(bs + 2),
                        self.sq.get(seq),
                        s(&m.oid),
                        s(&m.account),
                        s(m_side),
                        inc(&m_fid),
                        inc(&tid),
                        inc(&p_o),
                        inc(&q_o),
                        int128(py, ml),
                        int128(py, mc),
                        s(&g.s.maker),
                    ],
                )?;
                let e3 = call(
                    py,
                    &g.e_filled,
                    &[
                        s(&sym),
                        int(bs + 3),
                        self.sq.get(seq),
                        s(&oid),
                        s(&acct),
                        s(t_side),
                        inc(&t_fid),
                        inc(&tid),
                        inc(&p_o),
                        inc(&q_o),
                        int128(py, tl),
                        int128(py, tc),
                        s(&g.s.taker),
                    ],
                )?;
                self.out.push(e1);
                self.out.push(e2);
                self.out.push(e3);
                let bk = &mut self.books[b];
                bk.book_seq = bs + 3;
                bk.last_price = p;
                bk.prices.push(p);
                if ml == 0 {
                    let side = if is_buy { &mut bk.asks } else { &mut bk.bids };
                    let lvl = side.levels.get_mut(&p).expect("level of the maker");
                    lvl.count -= 1;
                    unlink(&mut self.slab, lvl, mi); // Python pops it after _on_terminal; unobservable
                    self.set_done(mi);
                    self.orders_del(mi)?;
                    let m = &self.slab[mi as usize];
                    if m.oco.is_some() || !m.children.is_empty() {
                        self.on_terminal(py, b, mi, true)?;
                    }
                } else if self.slab[mi as usize].oco.is_some() {
                    self.first_fill_oco(py, b, mi)?;
                }
                if self.slab[oi as usize].oco.is_some() {
                    self.first_fill_oco(py, b, oi)?;
                }
                if self.slab[oi as usize].state != ACTIVE {
                    break;
                }
            }
            let bk = &mut self.books[b];
            let side = if is_buy { &mut bk.asks } else { &mut bk.bids };
            if side.levels.get(&p).is_some_and(|l| l.count == 0) {
                // Emptied by fills (a self-trade cancel drops its level itself); it is the best level.
                side.levels.remove(&p);
                side.keys.pop();
            }
            if self.slab[oi as usize].state != ACTIVE {
                return Ok(false);
            }
        }
    }

    fn drain(&mut self, py: Python<'_>, b: usize) -> PyResult<()> {
        let g = self.g;
        loop {
            if !self.books[b].to_activate.is_empty() {
                let acts = std::mem::take(&mut self.books[b].to_activate);
                for child in acts {
                    if self.slab[child as usize].state != HELD {
                        continue;
                    }
                    let bk = &mut self.books[b];
                    bk.book_seq += 1;
                    let c = &self.slab[child as usize];
                    let ev = call(
                        py,
                        &g.e_activated,
                        &[
                            s(&bk.symbol),
                            int(bk.book_seq),
                            self.sq.get(bk.seq),
                            s(&c.oid),
                            s(c.parent.as_ref().unwrap_or(&g.s.empty)),
                            int128(py, c.qty),
                        ],
                    )?;
                    self.out.push(ev);
                    self.route(py, b, child)?;
                }
                continue;
            }
            if !self.books[b].prices.is_empty() {
                let prices = std::mem::take(&mut self.books[b].prices);
                for o in self.collect_triggers(b, &prices)? {
                    if self.slab[o as usize].state != ACTIVE {
                        continue; // canceled by an earlier trigger's fills (OCO)
                    }
                    let bk = &mut self.books[b];
                    bk.book_seq += 1;
                    let od = &mut self.slab[o as usize];
                    let new_type = if od.otype == OType::StopLimit { OType::Limit } else { OType::Market };
                    let ev = call(
                        py,
                        &g.e_triggered,
                        &[
                            s(&bk.symbol),
                            int(bk.book_seq),
                            self.sq.get(bk.seq),
                            s(&od.oid),
                            s(new_type.name(g)),
                            int128(py, od.stop),
                            int128(py, od.water),
                        ],
                    )?;
                    self.out.push(ev);
                    od.otype = new_type;
                    self.take(py, b, o)?;
                }
                continue;
            }
            return Ok(());
        }
    }

    /// Stops whose condition held at any of `prices` (in trade order); they are marked ACTIVE.
    fn collect_triggers(&mut self, b: usize, prices: &[i128]) -> PyResult<Vec<u32>> {
        let mut res = Vec::new();
        let hi = *prices.iter().max().expect("prices");
        let lo = *prices.iter().min().expect("prices");
        for buy in [true, false] {
            loop {
                let bk = &mut self.books[b];
                let heap = if buy { &mut bk.buy_stops } else { &mut bk.sell_stops };
                let Some(Reverse(top)) = heap.peek() else {
                    break;
                };
                if buy && top.0 > hi || !buy && -top.0 < lo {
                    break;
                }
                let Reverse((_, arrival, id)) = heap.pop().expect("peeked");
                if let Some(o) = self.orders_get(&id) {
                    let od = &mut self.slab[o as usize];
                    if od.state == PENDING && od.arrival == arrival {
                        od.state = ACTIVE;
                        res.push(o);
                    }
                }
            }
        }
        if !self.books[b].trailing.is_empty() {
            for &p in prices {
                let mut fired: Vec<u32> = Vec::new();
                for &t in &self.books[b].trailing {
                    let o = &mut self.slab[t as usize];
                    if o.is_buy {
                        if o.water == 0 || p < o.water {
                            o.water = p;
                            o.stop = trailing_stop_price(true, p, o.trail_price, o.trail_bps)?;
                        }
                        if p >= o.stop {
                            fired.push(t);
                        }
                    } else {
                        if p > o.water {
                            o.water = p;
                            o.stop = trailing_stop_price(false, p, o.trail_price, o.trail_bps)?;
                        }
                        if p <= o.stop {
                            fired.push(t);
                        }
                    }
                }
                for t in fired {
                    let tr = &mut self.books[b].trailing;
                    if let Some(k) = tr.iter().position(|&x| x == t) {
                        tr.remove(k);
                    }
                    self.slab[t as usize].state = ACTIVE;
                    res.push(t);
                }
            }
        }
        Ok(res)
    }

    /// Send an accepted (or activated, or replacement) order to the auction, the stop book or matching.
    fn route(&mut self, py: Python<'_>, b: usize, i: u32) -> PyResult<()> {
        let o = &mut self.slab[i as usize];
        if o.tif.auction() {
            o.state = AUCTION;
            let bk = &mut self.books[b];
            if o.tif == Tif::Opg {
                bk.opg.push(i)
            } else {
                bk.cls.push(i)
            }
            Ok(())
        } else if o.otype.is_stop() {
            self.add_stop(b, i)
        } else {
            self.take(py, b, i)
        }
    }

    // ------------------------------------------------------------------ auctions
    fn uncross(&mut self, py: Python<'_>, b: usize, opg: bool) -> PyResult<()> {
        let g = self.g;
        let pending: Vec<u32> = if opg { self.books[b].opg.clone() } else { self.books[b].cls.clone() };
        if self.books[b].halted {
            for o in pending {
                self.cancel(py, b, o, &g.s.halted)?;
            }
            return Ok(());
        }
        let bk = &self.books[b];
        let refp = if bk.ref_price != 0 { bk.ref_price } else { bk.last_price };
        let price = self.auction_price(&pending, refp);
        if price != 0 {
            let mkt = |o: &Order| o.otype != OType::Market;
            let mut buys: Vec<u32> = pending.iter().copied().filter(|&o| self.slab[o as usize].is_buy).collect();
            buys.sort_by_key(|&o| {
                let od = &self.slab[o as usize];
                (mkt(od), -od.limit, od.arrival)
            });
            let mut sells: Vec<u32> = pending.iter().copied().filter(|&o| !self.slab[o as usize].is_buy).collect();
            sells.sort_by_key(|&o| {
                let od = &self.slab[o as usize];
                (mkt(od), od.limit, od.arrival)
            });
            let (mut bi, mut si) = (0, 0);
            while bi < buys.len() && si < sells.len() {
                let (bo, so) = (buys[bi], sells[si]);
                let (bd, sd) = (&self.slab[bo as usize], &self.slab[so as usize]);
                if bd.state != AUCTION {
                    bi += 1;
                    continue;
                }
                if sd.state != AUCTION {
                    si += 1;
                    continue;
                }
                if (bd.otype == OType::Limit && bd.limit < price) || (sd.otype == OType::Limit && sd.limit > price) {
                    break;
                }
                if bd.same_account(sd.acct_h, &sd.account) {
                    let later = if bd.arrival > sd.arrival { bo } else { so };
                    self.cancel(py, b, later, &g.s.self_trade)?;
                    continue;
                }
                let q = bd.leaves.min(sd.leaves);
                self.auction_fill(py, b, bo, so, price, q)?;
            }
        }
        let left: Vec<u32> = if opg { self.books[b].opg.clone() } else { self.books[b].cls.clone() };
        for o in left {
            self.cancel(py, b, o, &g.s.auction_unfilled)?;
        }
        Ok(())
    }

    /// Max executed volume, then min imbalance, then closest to `refp`, then lower. 0 = no cross.
    fn auction_price(&self, pending: &[u32], refp: i128) -> i128 {
        let mut cands: Vec<i128> = pending
            .iter()
            .map(|&o| &self.slab[o as usize])
            .filter(|o| o.otype == OType::Limit)
            .map(|o| o.limit)
            .collect();
        if refp != 0 {
            cands.push(refp);
        }
        cands.sort_unstable();
        cands.dedup();
        let mut best: Option<(i128, i128, i128, i128)> = None;
        for &p in &cands {
            let (mut bv, mut sv) = (0i128, 0i128);
            for &o in pending {
                let o = &self.slab[o as usize];
                if o.is_buy && (o.otype == OType::Market || o.limit >= p) {
                    bv += o.leaves;
                }
                if !o.is_buy && (o.otype == OType::Market || o.limit <= p) {
                    sv += o.leaves;
                }
            }
            let key = (-bv.min(sv), (bv - sv).abs(), if refp != 0 { (p - refp).abs() } else { 0 }, p);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        match best {
            Some(b) if b.0 != 0 => b.3,
            _ => 0,
        }
    }

    fn auction_fill(&mut self, py: Python<'_>, b: usize, bo: u32, so: u32, p: i128, q: i128) -> PyResult<()> {
        let g = self.g;
        let bk = &mut self.books[b];
        let n = bk.match_n;
        bk.match_n = n + 1;
        let tid_s = format!("{}:{}", bk.seq, n);
        let tid = PyString::new(py, &tid_s).unbind();
        bk.book_seq += 1;
        let ev = call(
            py,
            &g.e_trade,
            &[
                s(&bk.symbol),
                int(bk.book_seq),
                self.sq.get(bk.seq),
                s(&tid),
                int128(py, p),
                int128(py, q),
                s(&self.slab[bo as usize].oid),
                s(&self.slab[so as usize].oid),
                s(&g.s.auction),
            ],
        )?;
        self.out.push(ev);
        for (o, side, suf) in [(bo, &g.s.buy, ":b"), (so, &g.s.sell, ":s")] {
            let od = &mut self.slab[o as usize];
            od.leaves -= q;
            od.cum += q;
            bk.book_seq += 1;
            let fid = PyString::new(py, &format!("{tid_s}{suf}")).unbind();
            let ev = call(
                py,
                &g.e_filled,
                &[
                    s(&bk.symbol),
                    int(bk.book_seq),
                    self.sq.get(bk.seq),
                    s(&od.oid),
                    s(&od.account),
                    s(side),
                    s(&fid),
                    s(&tid),
                    int128(py, p),
                    int128(py, q),
                    int128(py, od.leaves),
                    int128(py, od.cum),
                    s(&g.s.auction),
                ],
            )?;
            self.out.push(ev);
        }
        bk.last_price = p;
        bk.prices.push(p);
        for o in [bo, so] {
            if self.slab[o as usize].leaves == 0 {
                let bk = &mut self.books[b];
                let v = if self.slab[o as usize].tif == Tif::Opg { &mut bk.opg } else { &mut bk.cls };
                if let Some(k) = v.iter().position(|&x| x == o) {
                    v.remove(k);
                }
                self.finish(py, b, o)?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ splits
    fn split_book(
        &mut self,
        py: Python<'_>,
        b: usize,
        split_id: &Py<PyString>,
        num: i64,
        den: i64,
        tick: i64,
    ) -> PyResult<()> {
        let g = self.g;
        let bk = &mut self.books[b];
        bk.book_seq += 1;
        let ev = call(
            py,
            &g.e_split_applied,
            &[s(&bk.symbol), int(bk.book_seq), self.sq.get(bk.seq), s(split_id), int(num), int(den), int(tick)],
        )?;
        self.out.push(ev);
        let mut ps: Vec<i128> = bk.bids.levels.keys().copied().collect();
        ps.sort_unstable_by(|a, b| b.cmp(a));
        for p in ps {
            mark(&mut bk.dirty_bid, p);
        }
        let mut ps: Vec<i128> = bk.asks.levels.keys().copied().collect();
        ps.sort_unstable();
        for p in ps {
            mark(&mut bk.dirty_ask, p);
        }
        let bu = b as u32;
        let first: Vec<u32> =
            self.orders_in_order().into_iter().filter(|&o| self.slab[o as usize].book == bu).collect();
        for o in first {
            let od = &self.slab[o as usize];
            if od.state == DONE || od.notional != 0 {
                continue; // canceled by an earlier cancel's cascade; notional orders never rest
            }
            if !split_keeps(od, num, den, tick)? {
                self.cancel(py, b, o, &g.s.split)?;
            }
        }
        let mine: Vec<u32> = self.orders_in_order().into_iter().filter(|&o| self.slab[o as usize].book == bu).collect();
        for &o in &mine {
            let od = &mut self.slab[o as usize];
            if od.notional == 0 {
                let leaves = split_qty(od.leaves, num, den, !od.is_buy || od.leaves % SHARE == 0)?;
                od.cum = split_qty(od.cum, num, den, false)?;
                od.leaves = leaves;
                od.qty = od.cum.checked_add(leaves).ok_or_else(overflow)?;
            }
            od.limit = split_price(od.limit, num, den, tick, !od.is_buy)?;
            od.stop = split_price(od.stop, num, den, tick, od.is_buy)?;
            od.trail_price = split_price(od.trail_price, num, den, tick, false)?;
            od.water = split_price(od.water, num, den, tick, false)?;
            let bk = &mut self.books[b];
            bk.book_seq += 1;
            let ev = call(
                py,
                &g.e_adjusted,
                &[
                    s(&bk.symbol),
                    int(bk.book_seq),
                    self.sq.get(bk.seq),
                    s(&od.oid),
                    s(&od.account),
                    s(split_id),
                    int128(py, od.qty),
                    int128(py, od.leaves),
                    int128(py, od.cum),
                    int128(py, od.limit),
                    int128(py, od.stop),
                    int128(py, od.trail_price),
                    int128(py, od.water),
                ],
            )?;
            self.out.push(ev);
        }
        let bk = &mut self.books[b];
        bk.last_price = split_mark(bk.last_price, num, den, tick)?;
        bk.ref_price = split_mark(bk.ref_price, num, den, tick)?;
        let mut resting: Vec<u32> = mine.iter().copied().filter(|&o| self.slab[o as usize].state == RESTING).collect();
        resting.sort_by_key(|&o| self.slab[o as usize].arrival);
        bk.bids = Side::default();
        bk.asks = Side::default();
        for &o in &resting {
            self.slab[o as usize].prev = NIL;
            self.slab[o as usize].next = NIL;
        }
        for &o in &resting {
            self.rest(b, o);
        }
        let bk = &mut self.books[b];
        bk.buy_stops.clear();
        bk.sell_stops.clear();
        for &o in &mine {
            let od = &self.slab[o as usize];
            if od.state == PENDING && od.otype != OType::Trailing {
                Self::push_stop(bk, od);
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ the fast paths of OrderBook
}

#[allow(clippy::too_many_arguments)]
fn make_order(
    py: Python<'_>,
    oid: &Py<PyString>,
    account: &Py<PyString>,
    b: u32,
    is_buy: bool,
    otype: OType,
    tif: Tif,
    qty: i128,
    notional: i64,
    limit: i128,
    stop: i128,
    trail_price: i128,
    trail_bps: i64,
    arrival: i64,
    state: u8,
) -> Order {
    Order {
        key: IdKey::Inline(0, [0; 39]),
        h: 0,
        acct_h: 0,
        oid: oid.clone_ref(py),
        account: account.clone_ref(py),
        book: b,
        is_buy,
        otype,
        tif,
        state,
        extended: false,
        qty,
        notional,
        notional_left: notional as i128 * SHARE,
        limit,
        stop,
        trail_price,
        trail_bps,
        water: 0,
        leaves: qty,
        cum: 0,
        arrival,
        oco: None,
        parent: None,
        children: Vec::new(),
        ins: 0,
        prev: NIL,
        next: NIL,
    }
    .with_keys()
}

impl Core {
    /// `OrderBook.submit_plain`: accept + route + end of a validated simple limit/market order by quantity.
    #[allow(clippy::too_many_arguments)]
    fn submit_plain(
        &mut self,
        py: Python<'_>,
        b: usize,
        oid: &Py<PyString>,
        account: &Py<PyString>,
        is_buy: bool,
        otype: OType,
        tif: Tif,
        qty: i64,
        p: i64,
        (qty_p, p_p): (*mut ffi::PyObject, *mut ffi::PyObject),
    ) -> PyResult<()> {
        let g = self.g;
        let bk = &mut self.books[b];
        bk.arrival += 1;
        let arrival = bk.arrival;
        let seq = bk.seq;
        let p_o = unsafe { Bound::from_owned_ptr_or_err(py, int_from(p_p, p))?.unbind() };
        let qty_o = unsafe { Bound::from_owned_ptr_or_err(py, int_from(qty_p, qty))?.unbind() };
        let (qty, p) = (qty as i128, p as i128);
        let inc = |x: &PyObj| -> *mut ffi::PyObject {
            let p = x.as_ptr();
            unsafe { ffi::Py_INCREF(p) };
            p
        };
        let bs = bk.book_seq + 1;
        let side = if is_buy { &g.s.buy } else { &g.s.sell };
        let ev = call(
            py,
            &g.e_accepted,
            &[
                s(&bk.symbol),
                int(bs),
                self.sq.get(seq),
                s(oid),
                s(account),
                s(side),
                s(otype.name(g)),
                s(tif.name(g)),
                inc(&qty_o),
                int(0),
                inc(&p_o),
                int(0),
                s(&g.s.empty),
            ],
        )?;
        self.out.push(ev);
        if p != 0 && tif != Tif::Fok {
            let crosses = if is_buy {
                bk.asks.keys.last().is_some_and(|&k| -k <= p)
            } else {
                bk.bids.keys.last().is_some_and(|&k| k >= p)
            };
            if !crosses {
                bk.book_seq = bs + 1;
                if tif == Tif::Ioc {
                    let ev = call(
                        py,
                        &g.e_canceled,
                        &[
                            s(&bk.symbol),
                            int(bs + 1),
                            self.sq.get(seq),
                            s(oid),
                            s(&g.s.ioc_remainder),
                            int(0),
                            inc(&qty_o),
                        ],
                    )?;
                    self.out.push(ev);
                    return Ok(());
                }
                let o =
                    make_order(py, oid, account, b as u32, is_buy, otype, tif, qty, 0, p, 0, 0, 0, arrival, RESTING);
                let i = self.alloc(o);
                self.orders_insert(py, i);
                let bk = &mut self.books[b];
                let side_s = if is_buy { &mut bk.bids } else { &mut bk.asks };
                let keys = &mut side_s.keys;
                let lvl = side_s.levels.entry(p).or_insert_with(|| {
                    let k = if is_buy { p } else { -p };
                    let at = keys.partition_point(|&x| x <= k);
                    keys.insert(at, k);
                    Level::new()
                });
                if lvl.price_o.is_none() {
                    lvl.price_o = Some(p_o.clone_ref(py));
                }
                link_tail(&mut self.slab, lvl, i);
                lvl.qty += qty;
                lvl.count += 1;
                let (lq, lc) = (lvl.qty, lvl.count);
                let ev = call(
                    py,
                    &g.e_level,
                    &[s(&bk.symbol), int(bs + 1), self.sq.get(seq), s(side), inc(&p_o), int128(py, lq), int(lc)],
                )?;
                self.out.push(ev);
                return Ok(());
            }
        }
        let o = make_order(py, oid, account, b as u32, is_buy, otype, tif, qty, 0, p, 0, 0, 0, arrival, HELD);
        let i = self.alloc(o);
        self.orders_insert(py, i);
        self.books[b].book_seq = bs;
        self.take(py, b, i)?;
        self.end(py, b)
    }

    /// `OrderBook.cancel_resting`: a user cancel of a resting order without class links, begin..end inlined.
    fn cancel_resting(&mut self, py: Python<'_>, b: usize, i: u32, seq: i64) -> PyResult<()> {
        let g = self.g;
        let (p, leaves, is_buy) = {
            let o = &self.slab[i as usize];
            (o.limit, o.leaves, o.is_buy)
        };
        let bk = &mut self.books[b];
        let side = if is_buy { &mut bk.bids } else { &mut bk.asks };
        let lvl = side.levels.get_mut(&p).ok_or_else(|| key_err(p))?;
        lvl.qty -= leaves;
        lvl.count -= 1;
        unlink(&mut self.slab, lvl, i);
        let (mut qty, count) = (lvl.qty, lvl.count);
        let p_o: PyObj = unsafe { Bound::from_owned_ptr_or_err(py, lvl.price_obj(py, p))?.unbind() };
        if count == 0 {
            self.drop_level(b, is_buy, p)?;
            qty = 0;
        }
        self.set_done(i);
        self.orders_del(i)?;
        let bk = &mut self.books[b];
        let bs = bk.book_seq;
        bk.book_seq = bs + 2;
        let o = &self.slab[i as usize];
        let e1 = call(
            py,
            &g.e_canceled,
            &[
                s(&bk.symbol),
                int(bs + 1),
                self.sq.get(seq),
                s(&o.oid),
                s(&g.s.user),
                int128(py, o.cum),
                int128(py, leaves),
            ],
        )?;
        let e2 = call(
            py,
            &g.e_level,
            &[
                s(&bk.symbol),
                int(bs + 2),
                self.sq.get(seq),
                s(if is_buy { &g.s.buy } else { &g.s.sell }),
                s_any(&p_o),
                int128(py, qty),
                int(count),
            ],
        )?;
        self.out.push(e1);
        self.out.push(e2);
        Ok(())
    }

    /// `OrderBook.replace`: cancel-and-new; `new` takes a fresh arrival and inherits old's class links.
    fn replace(&mut self, py: Python<'_>, b: usize, old: u32, new: u32) -> PyResult<()> {
        let g = self.g;
        self.remove(b, old)?;
        let bk = &mut self.books[b];
        bk.book_seq += 1;
        let (od, nd) = (&self.slab[old as usize], &self.slab[new as usize]);
        let ev = call(
            py,
            &g.e_replaced,
            &[s(&bk.symbol), int(bk.book_seq), self.sq.get(bk.seq), s(&od.oid), s(&nd.oid), int128(py, od.cum)],
        )?;
        self.out.push(ev);
        if let Some(oco) = self.slab[old as usize].oco.as_ref().map(|x| x.clone_ref(py)) {
            if let Some(sib) = self.orders_get(ustr(oco.as_ptr())) {
                let new_id = self.slab[new as usize].oid.clone_ref(py);
                let sib_id = self.slab[sib as usize].oid.clone_ref(py);
                self.slab[sib as usize].oco = Some(new_id);
                self.slab[new as usize].oco = Some(sib_id);
            }
        }
        let kids: Vec<Py<PyString>> = self.slab[old as usize].children.iter().map(|c| c.clone_ref(py)).collect();
        for cid in &kids {
            if let Some(child) = self.orders_get(ustr(cid.as_ptr())) {
                self.slab[child as usize].parent = Some(self.slab[new as usize].oid.clone_ref(py));
            }
        }
        self.slab[new as usize].children = kids;
        let parent = self.slab[old as usize].parent.as_ref().map(|x| x.clone_ref(py));
        self.slab[new as usize].parent = parent.as_ref().map(|x| x.clone_ref(py));
        self.accept(py, b, new, parent.as_ref())?;
        self.route(py, b, new)
    }

    /// `OrderBook.replace_plain`: a resting plain limit replaced by a day/gtc limit (rests at once if it does
    /// not cross), `replace` + `end` otherwise.
    #[allow(clippy::too_many_arguments)]
    fn replace_plain(
        &mut self,
        py: Python<'_>,
        b: usize,
        old: u32,
        new_id: &Py<PyString>,
        qty: i128,
        p: i128,
        tif: Tif,
    ) -> PyResult<()> {
        let g = self.g;
        let bk = &mut self.books[b];
        bk.arrival += 1;
        let arrival = bk.arrival;
        let (is_buy, account, parent) = {
            let o = &self.slab[old as usize];
            (o.is_buy, o.account.clone_ref(py), o.parent.as_ref().map(|x| x.clone_ref(py)))
        };
        let mut o =
            make_order(py, new_id, &account, b as u32, is_buy, OType::Limit, tif, qty, 0, p, 0, 0, 0, arrival, HELD);
        o.parent = parent;
        let new = self.alloc(o);
        let bk = &self.books[b];
        let crosses = if is_buy {
            bk.asks.keys.last().is_some_and(|&k| -k <= p)
        } else {
            bk.bids.keys.last().is_some_and(|&k| k >= p)
        };
        if crosses {
            self.replace(py, b, old, new)?;
            return self.end(py, b);
        }
        self.remove(b, old)?;
        let bk = &mut self.books[b];
        let bs = bk.book_seq;
        let od = &self.slab[old as usize];
        let e1 = call(
            py,
            &g.e_replaced,
            &[s(&bk.symbol), int(bs + 1), self.sq.get(bk.seq), s(&od.oid), s(new_id), int128(py, od.cum)],
        )?;
        self.out.push(e1);
        self.orders_insert(py, new);
        let bk = &mut self.books[b];
        let nd = &self.slab[new as usize];
        let e2 = call(
            py,
            &g.e_accepted,
            &[
                s(&bk.symbol),
                int(bs + 2),
                self.sq.get(bk.seq),
                s(new_id),
                s(&nd.account),
                s(if is_buy { &g.s.buy } else { &g.s.sell }),
                s(&g.s.limit),
                s(tif.name(g)),
                int128(py, qty),
                int(0),
                int128(py, p),
                int(0),
                s(nd.parent.as_ref().unwrap_or(&g.s.empty)),
            ],
        )?;
        self.out.push(e2);
        bk.book_seq = bs + 2;
        self.rest(b, new);
        self.publish_levels(py, b)
    }

    // ------------------------------------------------------------------ Engine commands
    pub fn apply(
        &mut self,
        py: Python<'_>,
        seq: i64,
        seq_o: &Bound<'_, PyAny>,
        cmd: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.out.clear();
        if seq <= self.last_seq {
            return Ok(());
        }
        self.last_seq = seq;
        // Events carry the caller's seq object itself (as the Python engine's do) when it is an exact int.
        self.sq = if unsafe { ffi::PyLong_CheckExact(seq_o.as_ptr()) } != 0 {
            self.seq_keep = Some(seq_o.clone().unbind());
            SeqO { v: seq, p: seq_o.as_ptr() }
        } else {
            SeqO::NONE
        };
        let g = self.g;
        let t = unsafe { ffi::Py_TYPE(cmd.as_ptr()) } as *mut ffi::PyObject;
        let c = cmd.as_ptr();
        if t == g.t_new.as_ptr() {
            return self.new_order(py, seq, c);
        }
        if t == g.t_cancel.as_ptr() {
            return self.cancel_cmd(py, seq, c);
        }
        if t == g.t_replace.as_ptr() {
            return self.replace_cmd(py, seq, c);
        }
        if t == g.t_open.as_ptr() {
            return self.session(py, seq, true);
        }
        if t == g.t_close.as_ptr() {
            return self.session(py, seq, false);
        }
        if t == g.t_halt.as_ptr() || t == g.t_resume.as_ptr() {
            let halted = t == g.t_halt.as_ptr();
            let sym = as_pystr(py, field(c, if halted { &g.off_halt } else { &g.off_resume }, 0)?, "symbol")?;
            return self.halt(py, seq, &sym, halted);
        }
        if t == g.t_ref.as_ptr() {
            let sym = as_pystr(py, field(c, &g.off_ref, 0)?, "symbol")?;
            let price = as_i64(py, field(c, &g.off_ref, 1)?, "price_e4")?;
            let b = self.book_for(py, &sym) as usize;
            self.books[b].ref_price = price as i128;
            return Ok(());
        }
        if t == g.t_split.as_ptr() {
            return self.split_cmd(py, seq, c);
        }
        let name = cmd.get_type().name()?;
        Err(PyTypeError::new_err(format!("unknown command {name}")))
    }

    fn epoch_reason(&self, symbol: &Py<PyString>, epoch: i64) -> Reason {
        if epoch < self.split_epochs.get(ustr(symbol.as_ptr())).copied().unwrap_or(0) {
            Reason::Stale
        } else {
            Reason::Ahead
        }
    }

    fn epoch_ok(&self, symbol: &Py<PyString>, epoch: Option<i64>) -> bool {
        match epoch {
            None => true,
            Some(e) => e == self.split_epochs.get(ustr(symbol.as_ptr())).copied().unwrap_or(0),
        }
    }

    fn new_order(&mut self, py: Python<'_>, seq: i64, c: *mut ffi::PyObject) -> PyResult<()> {
        let g = self.g;
        let f = |i: usize| field(c, &g.off_new, i);
        let order_id = as_pystr(py, f(0)?, "order_id")?;
        let symbol = as_pystr(py, f(2)?, "symbol")?;
        if ustr(symbol.as_ptr()).is_empty() || ustr(order_id.as_ptr()).is_empty() {
            return self.reject(py, None, seq, &order_id, Reason::InvalidOrder);
        }
        let b = self.book_for(py, &symbol) as usize;
        self.begin(b, seq);
        if self.orders_get(ustr(order_id.as_ptr())).is_some() {
            return self.reject(py, Some(b), seq, &order_id, Reason::Duplicate);
        }
        if self.books[b].halted {
            return self.reject(py, Some(b), seq, &order_id, Reason::Halted);
        }
        let epoch = as_opt_i64(py, f(16)?, "split_epoch")?;
        if !self.epoch_ok(&symbol, epoch) {
            let r = self.epoch_reason(&symbol, epoch.unwrap_or(0));
            return self.reject(py, Some(b), seq, &order_id, r);
        }
        let account = as_pystr(py, f(1)?, "account_id")?;
        let s = &g.s;
        let is_buy = literal(py, f(3)?, "side", &[(&s.buy, true), (&s.sell, false)])?;
        let otype = literal(
            py,
            f(4)?,
            "type",
            &[
                (&s.limit, OType::Limit),
                (&s.market, OType::Market),
                (&s.stop, OType::Stop),
                (&s.stop_limit, OType::StopLimit),
                (&s.trailing_stop, OType::Trailing),
            ],
        )?;
        let tif = literal(
            py,
            f(5)?,
            "tif",
            &[
                (&s.gtc, Tif::Gtc),
                (&s.day, Tif::Day),
                (&s.ioc, Tif::Ioc),
                (&s.fok, Tif::Fok),
                (&s.opg, Tif::Opg),
                (&s.cls, Tif::Cls),
            ],
        )?;
        let prm = Params {
            qty: as_opt_i64(py, f(6)?, "qty_e9")?.map(i128::from),
            notional: as_opt_i64(py, f(7)?, "notional_e4")?,
            limit: as_opt_i64(py, f(8)?, "limit_price_e4")?.map(i128::from),
            stop: as_opt_i64(py, f(9)?, "stop_price_e4")?.map(i128::from),
            trail_price: as_opt_i64(py, f(10)?, "trail_price_e4")?.map(i128::from),
            trail_bps: as_opt_i64(py, f(11)?, "trail_percent_bps")?,
        };
        let extended = as_bool(f(12)?, "extended_hours")?;
        let class = literal(
            py,
            f(13)?,
            "order_class",
            &[(&s.simple, Class::Simple), (&s.bracket, Class::Bracket), (&s.oco, Class::Oco), (&s.oto, Class::Oto)],
        )?;
        if class == Class::Simple
            && prm.qty.is_some_and(|q| q > 0)
            && tif.continuous()
            && prm.notional.is_none()
            && prm.stop.is_none()
            && prm.trail_price.is_none()
            && prm.trail_bps.is_none()
            && !extended
            && ((otype == OType::Limit && prm.limit.is_some_and(|l| l > 0))
                || (otype == OType::Market && prm.limit.is_none()))
        {
            // Fast path: a plain limit/market order by quantity that validate_order would accept.
            let qty = prm.qty.unwrap_or(0) as i64; // read as i64 above
            let nums = (f(6)?, f(8)?); // the command's qty and limit ints, shared by the events
            let limit = prm.limit.unwrap_or(0) as i64;
            return self.submit_plain(py, b, &order_id, &account, is_buy, otype, tif, qty, limit, nums);
        }
        let mut reason = validate_order(otype, tif, &prm, extended);
        if reason.is_none() && tif == Tif::Opg && ustr(self.phase.as_ptr()) == "open" {
            reason = Some(Reason::AuctionClosed);
        }
        let (mut tp, mut sl) = (None, None);
        if reason.is_none() && class != Class::Simple {
            tp = self.read_tp(py, f(14)?)?;
            sl = self.read_sl(py, f(15)?)?;
            reason = validate_class(class, tif, &prm, extended, otype, is_buy, &tp, &sl);
            if reason.is_none() && self.leg_id_taken(&order_id, class, tp.is_some(), sl.is_some()) {
                reason = Some(Reason::Duplicate);
            }
        }
        if let Some(r) = reason {
            return self.reject(py, Some(b), seq, &order_id, r);
        }
        self.books[b].arrival += 1;
        let arrival = self.books[b].arrival;
        let mut o = make_order(
            py,
            &order_id,
            &account,
            b as u32,
            is_buy,
            otype,
            tif,
            prm.qty.unwrap_or(0),
            prm.notional.unwrap_or(0),
            prm.limit.unwrap_or(0),
            prm.stop.unwrap_or(0),
            prm.trail_price.unwrap_or(0),
            prm.trail_bps.unwrap_or(0),
            arrival,
            HELD,
        );
        o.extended = extended;
        let i = self.alloc(o);
        self.accept(py, b, i, None)?;
        if class == Class::Simple {
            self.route(py, b, i)?;
        } else {
            self.new_complex(py, b, i, class, tp, sl)?;
        }
        self.end(py, b)
    }

    /// `Engine._leg_id_taken`: would a leg (`<id>:tp`, `<id>:sl`) reuse the id of a live order?
    fn leg_id_taken(&self, order_id: &Py<PyString>, class: Class, tp: bool, sl: bool) -> bool {
        let id = ustr(order_id.as_ptr());
        if tp && class != Class::Oco && self.orders_get(&format!("{id}:tp")).is_some() {
            return true;
        }
        sl && self.orders_get(&format!("{id}:sl")).is_some()
    }

    fn read_tp(&self, py: Python<'_>, p: *mut ffi::PyObject) -> PyResult<Option<i64>> {
        if p == unsafe { ffi::Py_None() } {
            return Ok(None);
        }
        let obj = unsafe { Bound::from_borrowed_ptr(py, p) };
        Ok(Some(as_i64(py, obj.getattr("limit_price_e4")?.as_ptr(), "take_profit.limit_price_e4")?))
    }

    fn read_sl(&self, py: Python<'_>, p: *mut ffi::PyObject) -> PyResult<Option<Leg>> {
        if p == unsafe { ffi::Py_None() } {
            return Ok(None);
        }
        let obj = unsafe { Bound::from_borrowed_ptr(py, p) };
        Ok(Some(Leg {
            stop: as_i64(py, obj.getattr("stop_price_e4")?.as_ptr(), "stop_loss.stop_price_e4")?,
            limit: as_opt_i64(py, obj.getattr("limit_price_e4")?.as_ptr(), "stop_loss.limit_price_e4")?,
        }))
    }

    /// bracket/oto: entry + held exit legs (opposite side); oco: this limit + a live stop-loss sibling.
    fn new_complex(
        &mut self,
        py: Python<'_>,
        b: usize,
        o: u32,
        class: Class,
        tp: Option<i64>,
        sl: Option<Leg>,
    ) -> PyResult<()> {
        let g = self.g;
        let is_buy = self.slab[o as usize].is_buy;
        let legs_buy = if class != Class::Oco { !is_buy } else { is_buy };
        let mut legs: Vec<u32> = Vec::new();
        if let (Some(tpl), true) = (tp, class != Class::Oco) {
            legs.push(self.leg(py, b, o, &g.s.suf_tp, legs_buy, OType::Limit, tpl, 0)?);
        }
        if let Some(sl) = sl {
            let otype = if sl.limit.is_none() { OType::Stop } else { OType::StopLimit };
            legs.push(self.leg(py, b, o, &g.s.suf_sl, legs_buy, otype, sl.limit.unwrap_or(0), sl.stop)?);
        }
        let oid = self.slab[o as usize].oid.clone_ref(py);
        if class == Class::Oco {
            let leg = *legs.first().ok_or_else(|| PyIndexError::new_err("list index out of range"))?;
            let leg_id = self.slab[leg as usize].oid.clone_ref(py);
            self.slab[leg as usize].oco = Some(oid.clone_ref(py));
            self.slab[o as usize].oco = Some(leg_id);
            self.accept(py, b, leg, Some(&oid))?;
            self.route(py, b, o)?;
            if self.slab[leg as usize].state == HELD {
                // the limit did not fill on entry
                self.route(py, b, leg)?;
            }
            return Ok(());
        }
        if legs.len() == 2 {
            let (a, c) = (legs[0], legs[1]);
            self.slab[a as usize].oco = Some(self.slab[c as usize].oid.clone_ref(py));
            self.slab[c as usize].oco = Some(self.slab[a as usize].oid.clone_ref(py));
        }
        self.slab[o as usize].children = legs.iter().map(|&l| self.slab[l as usize].oid.clone_ref(py)).collect();
        for &leg in &legs {
            self.slab[leg as usize].parent = Some(oid.clone_ref(py));
            self.accept(py, b, leg, Some(&oid))?;
        }
        self.route(py, b, o)
    }

    #[allow(clippy::too_many_arguments)]
    fn leg(
        &mut self,
        py: Python<'_>,
        b: usize,
        parent: u32,
        suffix: &Py<PyString>,
        is_buy: bool,
        otype: OType,
        limit: i64,
        stop: i64,
    ) -> PyResult<u32> {
        let (limit, stop) = (limit as i128, stop as i128);
        let (pid, account, qty, tif) = {
            let p = &self.slab[parent as usize];
            (p.oid.clone_ref(py), p.account.clone_ref(py), p.qty, p.tif)
        };
        let id = PyString::new(py, &format!("{}{}", ustr(pid.as_ptr()), ustr(suffix.as_ptr()))).unbind();
        self.books[b].arrival += 1;
        let arrival = self.books[b].arrival;
        let o = make_order(py, &id, &account, b as u32, is_buy, otype, tif, qty, 0, limit, stop, 0, 0, arrival, HELD);
        Ok(self.alloc(o))
    }

    fn cancel_cmd(&mut self, py: Python<'_>, seq: i64, c: *mut ffi::PyObject) -> PyResult<()> {
        let g = self.g;
        let oid = as_pystr(py, field(c, &g.off_cancel, 0)?, "order_id")?;
        let Some(i) = self.orders_get(ustr(oid.as_ptr())) else {
            return self.reject(py, None, seq, &oid, Reason::Unknown);
        };
        let b = self.slab[i as usize].book as usize;
        let o = &self.slab[i as usize];
        if o.state == RESTING && o.oco.is_none() && o.children.is_empty() {
            return self.cancel_resting(py, b, i, seq);
        }
        self.begin(b, seq);
        self.cancel(py, b, i, &g.s.user)?;
        self.end(py, b)
    }

    fn replace_cmd(&mut self, py: Python<'_>, seq: i64, c: *mut ffi::PyObject) -> PyResult<()> {
        let g = self.g;
        let f = |i: usize| field(c, &g.off_replace, i);
        let old_id = as_pystr(py, f(0)?, "order_id")?;
        let new_id = as_pystr(py, f(1)?, "new_order_id")?;
        let Some(old) = self.orders_get(ustr(old_id.as_ptr())) else {
            return self.reject(py, None, seq, &new_id, Reason::Unknown);
        };
        let b = self.slab[old as usize].book as usize;
        self.begin(b, seq);
        if self.orders_get(ustr(new_id.as_ptr())).is_some() {
            return self.reject(py, Some(b), seq, &new_id, Reason::Duplicate);
        }
        if self.books[b].halted {
            return self.reject(py, Some(b), seq, &new_id, Reason::Halted);
        }
        let epoch = as_opt_i64(py, f(8)?, "split_epoch")?;
        let symbol = self.books[b].symbol.clone_ref(py);
        if !self.epoch_ok(&symbol, epoch) {
            let r = self.epoch_reason(&symbol, epoch.unwrap_or(0));
            return self.reject(py, Some(b), seq, &new_id, r);
        }
        let od = &self.slab[old as usize];
        if !matches!(od.state, RESTING | PENDING | AUCTION) || od.notional != 0 {
            return self.reject(py, Some(b), seq, &new_id, Reason::NotReplaceable);
        }
        let c_qty = as_opt_i64(py, f(2)?, "qty_e9")?.map(i128::from);
        let c_limit = as_opt_i64(py, f(3)?, "limit_price_e4")?.map(i128::from);
        let c_stop = as_opt_i64(py, f(4)?, "stop_price_e4")?.map(i128::from);
        let c_trail_price = as_opt_i64(py, f(5)?, "trail_price_e4")?.map(i128::from);
        let c_trail_bps = as_opt_i64(py, f(6)?, "trail_percent_bps")?;
        let tif_p = f(7)?;
        let c_tif = if tif_p == unsafe { ffi::Py_None() } {
            None
        } else {
            let t = as_pystr(py, tif_p, "tif")?;
            let txt = ustr(t.as_ptr());
            if txt.is_empty() {
                None // `c.tif or old.tif`
            } else {
                Some(Tif::parse(txt).ok_or_else(|| PyValueError::new_err(format!("unknown tif {txt:?}")))?)
            }
        };
        let trail_given = c_trail_price.is_some() || c_trail_bps.is_some();
        let nz = |v: i128| if v != 0 { Some(v) } else { None };
        let qty = c_qty.unwrap_or(od.leaves);
        let limit = c_limit.or(nz(od.limit));
        let mut stop = c_stop.or(nz(od.stop));
        let (trail_price, trail_bps);
        if od.otype == OType::Trailing {
            stop = None;
            trail_price = if trail_given { c_trail_price } else { nz(od.trail_price) };
            trail_bps = if trail_given { c_trail_bps } else { (od.trail_bps != 0).then_some(od.trail_bps) };
        } else {
            trail_price = c_trail_price;
            trail_bps = c_trail_bps;
        }
        let tif = c_tif.unwrap_or(od.tif);
        let reason;
        if od.otype == OType::Limit
            && stop.is_none()
            && trail_price.is_none()
            && trail_bps.is_none()
            && !od.extended
            && tif.continuous()
            && od.tif.continuous()
            && qty > 0
            && limit.is_some_and(|l| l > 0)
        {
            // A plain continuous limit (what validate_order would say), so `old` is RESTING.
            if matches!(tif, Tif::Gtc | Tif::Day) && od.oco.is_none() && od.children.is_empty() {
                return self.replace_plain(py, b, old, &new_id, qty, limit.unwrap_or(0), tif);
            }
            reason = None;
        } else {
            let prm = Params { qty: Some(qty), notional: None, limit, stop, trail_price, trail_bps };
            let mut r = validate_order(od.otype, tif, &prm, od.extended);
            if r.is_none() && tif.auction() != od.tif.auction() {
                r = Some(Reason::InvalidOrder);
            }
            reason = r;
        }
        if let Some(r) = reason {
            return self.reject(py, Some(b), seq, &new_id, r);
        }
        let (account, is_buy, otype, extended) = (od.account.clone_ref(py), od.is_buy, od.otype, od.extended);
        self.books[b].arrival += 1;
        let arrival = self.books[b].arrival;
        let mut o = make_order(
            py,
            &new_id,
            &account,
            b as u32,
            is_buy,
            otype,
            tif,
            qty,
            0,
            limit.unwrap_or(0),
            stop.unwrap_or(0),
            trail_price.unwrap_or(0),
            trail_bps.unwrap_or(0),
            arrival,
            HELD,
        );
        o.extended = extended;
        let new = self.alloc(o);
        self.replace(py, b, old, new)?;
        self.end(py, b)
    }

    fn session(&mut self, py: Python<'_>, seq: i64, opening: bool) -> PyResult<()> {
        let g = self.g;
        self.phase = if opening { g.s.open.clone_ref(py) } else { g.s.closed.clone_ref(py) };
        let order = self.books_sorted();
        for &b in &order {
            let b = b as usize;
            self.begin(b, seq);
            let bk = &mut self.books[b];
            bk.book_seq += 1;
            let ev = call(py, &g.e_session, &[s(&bk.symbol), int(bk.book_seq), self.sq.get(seq), s(&self.phase)])?;
            self.out.push(ev);
            self.uncross(py, b, opening)?;
            self.end(py, b)?;
        }
        if !opening {
            let day: Vec<u32> =
                self.orders_in_order().into_iter().filter(|&o| self.slab[o as usize].tif == Tif::Day).collect();
            for o in day {
                if self.slab[o as usize].state != DONE {
                    let b = self.slab[o as usize].book as usize;
                    self.begin(b, seq);
                    self.expire(py, b, o)?;
                }
            }
            for &b in &order {
                self.end(py, b as usize)?;
            }
        }
        Ok(())
    }

    fn split_cmd(&mut self, py: Python<'_>, seq: i64, c: *mut ffi::PyObject) -> PyResult<()> {
        let g = self.g;
        let f = |i: usize| field(c, &g.off_split, i);
        let split_id = as_pystr(py, f(1)?, "split_id")?;
        if self.split_ids.contains(ustr(split_id.as_ptr())) {
            return Ok(()); // already applied: the books are on these terms
        }
        let num = as_i64(py, f(2)?, "numerator")?;
        let den = as_i64(py, f(3)?, "denominator")?;
        let tick = as_i64(py, f(4)?, "tick_e4")?;
        if num <= 0 || den <= 0 || tick <= 0 {
            return Ok(()); // unreachable from the topic (decoding refuses it); never divide by zero
        }
        let symbol = as_pystr(py, f(0)?, "symbol")?;
        let epoch = as_opt_i64(py, f(5)?, "split_epoch")?;
        let b = self.book_for(py, &symbol) as usize;
        self.splits.push(split_id.clone_ref(py));
        self.split_ids.insert(ustr(split_id.as_ptr()).to_owned());
        if let Some(e) = epoch {
            self.split_epochs.insert(ustr(symbol.as_ptr()).to_owned(), e);
        }
        self.begin(b, seq);
        self.split_book(py, b, &split_id, num, den, tick)?;
        self.end(py, b)
    }

    fn halt(&mut self, py: Python<'_>, seq: i64, symbol: &Py<PyString>, halted: bool) -> PyResult<()> {
        let g = self.g;
        let b = self.book_for(py, symbol) as usize;
        self.begin(b, seq);
        let bk = &mut self.books[b];
        bk.halted = halted;
        bk.book_seq += 1;
        let ev = call(
            py,
            &g.e_session,
            &[s(&bk.symbol), int(bk.book_seq), self.sq.get(seq), s(if halted { &g.s.halted } else { &g.s.resumed })],
        )?;
        self.out.push(ev);
        self.end(py, b)
    }

    // ------------------------------------------------------------------ restore
    pub fn restore_book(&mut self, py: Python<'_>, symbol: &Py<PyString>) -> u32 {
        self.sym_cache = None;
        self.books.push(Book::new(symbol.clone_ref(py)));
        let b = (self.books.len() - 1) as u32;
        self.book_map.insert(PyStrKey(symbol.clone_ref(py)), b);
        b
    }

    pub fn restore_order(&mut self, py: Python<'_>, o: Order) {
        let i = self.alloc(o);
        self.orders_insert(py, i);
    }

    /// `OrderBook.rebuild` of one side: levels in the snapshot's order.
    pub fn restore_levels(&mut self, b: usize, is_buy: bool, levels: Vec<(i128, Vec<u32>)>) -> PyResult<()> {
        for (p, ids) in levels {
            let bk = &mut self.books[b];
            let side = if is_buy { &mut bk.bids } else { &mut bk.asks };
            if side.levels.contains_key(&p) {
                return Err(PyValueError::new_err(format!("snapshot repeats level {p}")));
            }
            let mut lvl = Level::new();
            for i in ids {
                let o = &self.slab[i as usize];
                if o.prev != NIL || lvl.head == i || lvl.tail == i {
                    return Err(PyValueError::new_err("snapshot lists an order twice in a level"));
                }
                lvl.qty += o.leaves;
                lvl.count += 1;
                link_tail(&mut self.slab, &mut lvl, i);
            }
            side.levels.insert(p, lvl);
            side.keys.push(if is_buy { p } else { -p });
        }
        let bk = &mut self.books[b];
        let side = if is_buy { &mut bk.bids } else { &mut bk.asks };
        side.keys.sort_unstable();
        Ok(())
    }

    pub fn restore_stops(&mut self, b: usize) {
        let bu = b as u32;
        for i in self.orders_in_order() {
            let o = &self.slab[i as usize];
            if o.book != bu || o.state != PENDING || o.otype == OType::Trailing {
                continue;
            }
            Self::push_stop(&mut self.books[b], o);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn book_set(
        &mut self,
        b: usize,
        book_seq: i64,
        arrival: i64,
        last: i128,
        refp: i128,
        halted: bool,
        lists: [Vec<u32>; 3],
    ) {
        let bk = &mut self.books[b];
        bk.book_seq = book_seq;
        bk.arrival = arrival;
        bk.last_price = last;
        bk.ref_price = refp;
        bk.halted = halted;
        let [t, o, c] = lists;
        bk.trailing = t;
        bk.opg = o;
        bk.cls = c;
    }

    pub fn restore_splits(&mut self, py: Python<'_>, splits: Vec<Py<PyString>>, epochs: Vec<(String, i64)>) {
        for sid in &splits {
            self.split_ids.insert(ustr(sid.as_ptr()).to_owned());
        }
        self.splits = splits.iter().map(|x| x.clone_ref(py)).collect();
        for (k, v) in epochs {
            self.split_epochs.insert(k, v);
        }
    }

    /// The live order ids of a level in priority order (`OrderBook.level_orders`).
    pub fn level_ids(&self, b: usize, is_buy: bool, p: i128) -> Vec<u32> {
        let bk = &self.books[b];
        let side = if is_buy { &bk.bids } else { &bk.asks };
        let mut v = Vec::new();
        if let Some(l) = side.levels.get(&p) {
            let mut m = l.head;
            while m != NIL {
                if self.slab[m as usize].state == RESTING {
                    v.push(m);
                }
                m = self.slab[m as usize].next;
            }
        }
        v
    }
}

/// One of a Literal field's values: by identity first (the interned literals of commands built in Python
/// or decoded by msgspec), else by text; any other value is a ValueError.
#[inline]
fn literal<T: Copy>(py: Python<'_>, p: *mut ffi::PyObject, what: &str, values: &[(&Py<PyString>, T)]) -> PyResult<T> {
    for (s, v) in values {
        if s.as_ptr() == p {
            return Ok(*v);
        }
    }
    literal_text(py, p, what, values)
}

/// `literal` for a str that is not one of the interned literals (built at run time): compared by text.
#[cold]
#[inline(never)]
fn literal_text<T: Copy>(
    py: Python<'_>,
    p: *mut ffi::PyObject,
    what: &str,
    values: &[(&Py<PyString>, T)],
) -> PyResult<T> {
    let text = ustr(as_pystr(py, p, what)?.as_ptr());
    for (s, v) in values {
        if ustr(s.as_ptr()) == text {
            return Ok(*v);
        }
    }
    Err(PyValueError::new_err(format!("unknown {what} {text:?}")))
}

/// `Engine._validate_class` (the command's fields already read).
#[allow(clippy::too_many_arguments)]
fn validate_class(
    class: Class,
    tif: Tif,
    p: &Params,
    extended: bool,
    otype: OType,
    is_buy: bool,
    tp: &Option<i64>,
    sl: &Option<Leg>,
) -> Option<Reason> {
    if !matches!(tif, Tif::Day | Tif::Gtc) || p.qty.is_none() || extended {
        return Some(Reason::InvalidOrder);
    }
    if class == Class::Oto {
        if tp.is_none() == sl.is_none() {
            return Some(Reason::InvalidOrder);
        }
    } else if tp.is_none() || sl.is_none() {
        return Some(Reason::InvalidOrder);
    }
    if class == Class::Oco && (otype != OType::Limit || tp.is_none() || tp.map(i128::from) != p.limit) {
        return Some(Reason::InvalidOrder);
    }
    if tp.is_some_and(|l| l <= 0) {
        return Some(Reason::InvalidPrice);
    }
    if let Some(sl) = sl {
        if sl.stop <= 0 || sl.limit.is_some_and(|l| l <= 0) {
            return Some(Reason::InvalidPrice);
        }
    }
    if let (Some(tpl), Some(sl)) = (tp, sl) {
        // The exit legs must bracket: for a long position (buy entry, sell exits) take-profit above stop.
        let long_exit = if class != Class::Oco { is_buy } else { !is_buy };
        if long_exit && *tpl <= sl.stop {
            return Some(Reason::InvalidPrice);
        }
        if !long_exit && *tpl >= sl.stop {
            return Some(Reason::InvalidPrice);
        }
    }
    None
}
