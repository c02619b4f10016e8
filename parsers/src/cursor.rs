//! A cursor for recursive-descent parsing of a construct over text that may still grow.
//!
//! Every step either succeeds, fails for good (`Stop::Fail`), or cannot decide yet because
//! the text ends where more output could change the answer (`Stop::More`). At end of
//! output (`eof`) nothing is undecided: what would have been `More` is a failure
//! (`Reason::Truncated`). Decisions are monotonic: a success or failure reached on a prefix
//! stays the same when text is appended, which is what makes chunking irrelevant.

use crate::json::{self, CallRules, RawCall};
use crate::types::Reason;
use serde_json::{Map, Value};

/// Why parsing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The text ends before the construct can be decided.
    More,
    /// The construct is not valid, whatever follows.
    Fail(Reason),
}

pub type P<T> = Result<T, Stop>;

/// A position in the undecided text.
pub struct Cur<'a> {
    pub s: &'a str,
    pub i: usize,
    pub eof: bool,
    /// Scratch for the JSON scanner's open-container list.
    pub open: &'a mut Vec<usize>,
}

impl<'a> Cur<'a> {
    pub fn new(s: &'a str, eof: bool, open: &'a mut Vec<usize>) -> Self {
        Cur { s, i: 0, eof, open }
    }

    pub fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    /// `More`, or `Fail(Truncated)` at end of output.
    pub fn more<T>(&self) -> P<T> {
        if self.eof {
            Err(Stop::Fail(Reason::Truncated))
        } else {
            Err(Stop::More)
        }
    }

    /// Skips JSON whitespace (space, tab, CR, LF).
    pub fn ws(&mut self) {
        let rest = self.rest().as_bytes();
        let n = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        self.i += n;
    }

    /// The next character; `More` (or truncation) at the end of the text.
    pub fn peek(&self) -> P<char> {
        match self.rest().chars().next() {
            Some(c) => Ok(c),
            None => self.more(),
        }
    }

    pub fn at_end(&self) -> bool {
        self.i == self.s.len()
    }

    /// Consumes `lit` if the text continues with it: `Ok(true)`; `Ok(false)` if it
    /// certainly does not; `More` if the text ends inside a prefix of `lit`.
    pub fn try_lit(&mut self, lit: &str) -> P<bool> {
        let rest = self.rest();
        if rest.starts_with(lit) {
            self.i += lit.len();
            Ok(true)
        } else if !self.eof && lit.starts_with(rest) {
            Err(Stop::More)
        } else {
            Ok(false)
        }
    }

    /// Consumes `lit` or fails with `Malformed`.
    pub fn lit(&mut self, lit: &str) -> P<()> {
        match self.try_lit(lit)? {
            true => Ok(()),
            false if self.eof && lit.starts_with(self.rest()) => Err(Stop::Fail(Reason::Truncated)),
            false => Err(Stop::Fail(Reason::Malformed)),
        }
    }

    /// The text up to `delim` (exclusive); the cursor moves past `delim`.
    pub fn until(&mut self, delim: &str) -> P<&'a str> {
        let rest = self.rest();
        match rest.find(delim) {
            Some(at) => {
                self.i += at + delim.len();
                Ok(&rest[..at])
            }
            None => self.more(),
        }
    }

    /// A complete JSON container at the cursor (which must be `{` or `[`).
    pub fn json(&mut self) -> P<Value> {
        let rest = self.rest();
        if !rest.starts_with(['{', '[']) {
            return match rest.is_empty() {
                true => self.more(),
                false => Err(Stop::Fail(Reason::InvalidJson)),
            };
        }
        match json::value_at(rest, self.open) {
            Ok(Some((v, end))) => {
                self.i += end;
                Ok(v)
            }
            Ok(None) => self.more(),
            Err(r) => Err(Stop::Fail(r)),
        }
    }

    /// A JSON object (the arguments of a call).
    pub fn object(&mut self) -> P<Map<String, Value>> {
        match self.json()? {
            Value::Object(m) => Ok(m),
            _ => Err(Stop::Fail(Reason::NotACall)),
        }
    }

    /// A JSON call payload: call objects and/or call lists separated by whitespace,
    /// optionally with one `,` or `;` between two items. Stops before anything else.
    pub fn payload(&mut self, rules: CallRules<'_>) -> P<Vec<RawCall>> {
        let mut calls = Vec::new();
        loop {
            let v = self.json()?;
            calls.extend(json::calls_from_value(&v, rules).map_err(Stop::Fail)?);
            let after = self.i;
            self.ws();
            if matches!(self.rest().as_bytes().first(), Some(b',' | b';')) {
                self.i += 1;
                self.ws();
            }
            match self.rest().as_bytes().first() {
                Some(b'{' | b'[') => continue,
                Some(_) => {}
                None if !self.eof => return Err(Stop::More),
                None => {}
            }
            self.i = after;
            return Ok(calls);
        }
    }
}
