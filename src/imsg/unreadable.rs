//! Rows imsg cannot read: finding one, so it can be stepped over.
//!
//! On protocol v1 a failing `messages.after` page is narrowed down one row at a time
//! ([`narrow_after`]) with the [`Edge`] search; the supervisor decides what to report and
//! where to resume.

use std::future::Future;

use serde_json::{json, Value};

use super::client::{Client, RpcError};

/// How many doublings a search may take before giving up: 2^40 covers any rowid gap.
const MAX_DOUBLINGS: u32 = 40;

/// A failure of one read that another read may not share (a row imsg cannot decode), as
/// opposed to the connection or the database being down, or imsg being busy.
pub(super) fn row_level(e: &RpcError) -> bool {
    use super::client::{DATABASE_UNAVAILABLE, MUTATION_LANE_BLOCKED};
    match e {
        RpcError::Remote { code, .. } => !matches!(
            *code,
            DATABASE_UNAVAILABLE | MUTATION_LANE_BLOCKED | -32000 | -32601
        ),
        _ => false,
    }
}

/// The search for the edge above `lo` where a property that holds at `lo` first stops
/// holding, over values too sparse to walk one by one (rowids with gaps, milliseconds):
/// steps that double until one does not hold, then bisection. Found means the property
/// holds at `x - 1` and not at `x`.
#[derive(Debug, Clone)]
pub(super) struct Edge {
    lo: i64,
    /// The lowest value known not to hold, once one is.
    hi: Option<i64>,
    step: i64,
    doublings: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Try(i64),
    Found(i64),
    GaveUp,
}

impl Edge {
    /// The property holds at `lo`; nothing is known above it.
    pub(super) fn above(lo: i64) -> Edge {
        Edge {
            lo,
            hi: None,
            step: 1,
            doublings: 0,
        }
    }

    pub(super) fn next(&self) -> Next {
        match self.hi {
            None if self.doublings >= MAX_DOUBLINGS => Next::GaveUp,
            None => Next::Try(self.lo.saturating_add(self.step)),
            Some(hi) if hi - self.lo <= 1 => Next::Found(hi),
            Some(hi) => Next::Try(self.lo + (hi - self.lo) / 2),
        }
    }

    pub(super) fn record(&mut self, x: i64, holds: bool) {
        if !holds {
            self.hi = Some(x);
        } else {
            self.lo = x;
            if self.hi.is_none() {
                self.step = self.step.saturating_mul(2);
                self.doublings += 1;
            }
        }
    }

    /// Runs the search with `holds` answering each try; `None` when it gave up.
    async fn find<F, Fut>(mut self, mut holds: F) -> Result<Option<i64>, String>
    where
        F: FnMut(i64) -> Fut,
        Fut: Future<Output = Result<bool, String>>,
    {
        loop {
            match self.next() {
                Next::Try(x) => {
                    let h = holds(x).await?;
                    self.record(x, h);
                }
                Next::Found(x) => return Ok(Some(x)),
                Next::GaveUp => return Ok(None),
            }
        }
    }
}

/// v1 `messages.after {since_rowid, limit}` with the catch-up's options.
pub(super) async fn messages_after(
    client: &Client,
    since: i64,
    limit: u32,
    attachments: bool,
) -> Result<Value, RpcError> {
    client
        .request(
            "messages.after",
            json!({"since_rowid": since, "limit": limit,
                   "attachments": attachments, "include_reactions": true}),
        )
        .await
}

/// v1: `messages.after {since_rowid: since, limit: 1}` fails, so the first row after `since`
/// is unreadable; rowids have gaps, so it is the `x` whose one-row page reads (or is empty)
/// while `x - 1`'s fails.
pub(super) async fn narrow_after(
    client: &Client,
    since: i64,
    attachments: bool,
) -> Result<i64, String> {
    let fails = |x: i64| async move {
        match messages_after(client, x, 1, attachments).await {
            Ok(_) => Ok(false),
            Err(e) if row_level(&e) => Ok(true),
            Err(e) => Err(format!("messages.after failed: {e}")),
        }
    };
    Edge::above(since).find(fails).await?.ok_or_else(|| {
        format!("imsg cannot read the rows after rowid {since} and no readable row was found")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a plain predicate, counting the tries.
    fn search(mut edge: Edge, holds: impl Fn(i64) -> bool) -> (Next, usize) {
        let mut tries = 0;
        loop {
            match edge.next() {
                Next::Try(x) => {
                    tries += 1;
                    edge.record(x, holds(x));
                }
                done => return (done, tries),
            }
        }
    }

    #[test]
    fn the_edge_is_found_across_any_gap_in_few_tries() {
        for (lo, edge) in [(0, 1), (10, 11), (10, 12), (5, 1_000), (7, 1 << 38)] {
            let (found, tries) = search(Edge::above(lo), |x| x < edge);
            assert_eq!(found, Next::Found(edge), "lo {lo}, edge {edge}");
            assert!(tries <= 2 * 40, "{tries} tries for edge {edge}");
        }
    }

    #[test]
    fn a_missing_edge_is_given_up() {
        assert_eq!(search(Edge::above(0), |_| true).0, Next::GaveUp);
    }
}
