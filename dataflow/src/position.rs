//! Per (trader, symbol) accounting over the live fills, in (TransactTime, ExecID) order.

use serde::{Deserialize, Serialize};

use crate::model::Text;
use crate::money::div_round_half_even;

/// One live fill as the position logic needs it. Field order gives the required
/// (TransactTime, ExecID) processing order when sorted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Execution {
    pub transact_time: i64,
    pub exec_id: Text,
    pub qty: i64,
    pub price: i64,
}

#[cfg(test)]
impl Execution {
    /// An execution at `time` named `E<time>`.
    pub(crate) fn for_test(time: i64, qty: i64, price: i64) -> Execution {
        Execution {
            transact_time: time,
            exec_id: format!("E{time}").into(),
            qty,
            price,
        }
    }
}

/// The latest trade of a position, candidate for the symbol's last traded price.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LastTrade {
    pub transact_time: i64,
    pub exec_id: Text,
    pub price: i64,
}

/// Everything about a position that does not depend on the mark.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PositionCore {
    pub net_qty: i128,
    pub trades: u64,
    /// Sum of -signed qty x price, 10^-8.
    pub cash: i128,
    /// Realised P&L by the average-cost method, 10^-8.
    pub realized: i128,
    /// Average cost of the open position (10^-8, rounded half-even); `None` when flat.
    pub avg_cost: Option<i128>,
    pub last: LastTrade,
}

/// Average-cost state machine. Kept separate from the dataflow so that both its position
/// operator (`position_operator.rs`) and the HashMap baseline run the very same arithmetic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AverageCost {
    pub open_qty: i128,
    /// 10^-8; meaningful only while `open_qty != 0`.
    pub avg_cost: i128,
    pub realized: i128,
}

impl AverageCost {
    pub fn apply(&mut self, qty: i64, price: i64) {
        let qty = i128::from(qty);
        let price = i128::from(price);
        if qty == 0 {
            return;
        }
        if self.open_qty == 0 || (self.open_qty > 0) == (qty > 0) {
            let held = self.open_qty.abs();
            let added = qty.abs();
            self.avg_cost = div_round_half_even(self.avg_cost * held + price * added, held + added);
            self.open_qty += qty;
            return;
        }
        let closed = qty.abs().min(self.open_qty.abs());
        let direction = self.open_qty.signum();
        self.realized += closed * (price - self.avg_cost) * direction;
        self.open_qty += qty;
        if self.open_qty == 0 {
            self.avg_cost = 0;
        } else if self.open_qty.signum() != direction {
            // The fill flipped the position: the remainder opens at the fill price.
            self.avg_cost = price;
        }
    }
}

/// A running fold of one position's executions in (TransactTime, ExecID) order: the one piece of
/// arithmetic behind both the dataflow operator and the benchmark baseline.
#[derive(Clone, Debug, Default)]
pub struct PositionFold {
    net_qty: i128,
    trades: u64,
    cash: i128,
    cost: AverageCost,
    last: Option<LastTrade>,
}

impl PositionFold {
    /// Applies `copies` (normally 1) of the next execution; must not be earlier than the last.
    pub fn push(&mut self, execution: &Execution, copies: i64) {
        for _ in 0..copies.max(0) {
            self.net_qty += i128::from(execution.qty);
            self.trades += 1;
            self.cash -= i128::from(execution.qty) * i128::from(execution.price);
            self.cost.apply(execution.qty, execution.price);
        }
        if copies > 0 {
            self.last = Some(LastTrade {
                transact_time: execution.transact_time,
                exec_id: execution.exec_id.clone(),
                price: execution.price,
            });
        }
    }

    /// The position so far; `None` before any execution.
    pub fn core(&self) -> Option<PositionCore> {
        let last = self.last.clone()?;
        Some(PositionCore {
            net_qty: self.net_qty,
            trades: self.trades,
            cash: self.cash,
            realized: self.cost.realized,
            avg_cost: (self.cost.open_qty != 0).then_some(self.cost.avg_cost),
            last,
        })
    }
}

impl PositionCore {
    /// Folds executions that are already sorted by (TransactTime, ExecID). `copies` is the
    /// multiplicity of each (normally 1). Returns `None` for an empty position.
    pub fn from_sorted<'a, I>(executions: I) -> Option<PositionCore>
    where
        I: IntoIterator<Item = (&'a Execution, i64)>,
    {
        let mut fold = PositionFold::default();
        for (execution, copies) in executions {
            fold.push(execution, copies);
        }
        fold.core()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(t: i64, qty: i64, price: i64) -> Execution {
        Execution::for_test(t, qty, price)
    }

    fn fold(executions: &[Execution]) -> PositionCore {
        PositionCore::from_sorted(executions.iter().map(|e| (e, 1))).unwrap()
    }

    #[test]
    fn averages_up_then_realizes_on_close() {
        // Buy 100 @ 10, buy 100 @ 12 -> avg 11; sell 150 @ 13 -> realize 150 x 2 = 300.
        let p = fold(&[ex(1, 100, 10), ex(2, 100, 12), ex(3, -150, 13)]);
        assert_eq!(p.net_qty, 50);
        assert_eq!(p.avg_cost, Some(11));
        assert_eq!(p.realized, 300);
        assert_eq!(p.cash, -1000 - 1200 + 1950);
        assert_eq!(p.trades, 3);
        assert_eq!(p.last.price, 13);
    }

    #[test]
    fn flip_opens_remainder_at_fill_price() {
        // Long 100 @ 10, sell 250 @ 8: realize 100 x -2 = -200, short 150 @ 8.
        let p = fold(&[ex(1, 100, 10), ex(2, -250, 8)]);
        assert_eq!(p.net_qty, -150);
        assert_eq!(p.realized, -200);
        assert_eq!(p.avg_cost, Some(8));
    }

    #[test]
    fn short_side_realizes_with_position_sign() {
        // Short 100 @ 10, buy back 40 @ 7: realize 40 x (7 - 10) x -1 = 120.
        let p = fold(&[ex(1, -100, 10), ex(2, 40, 7)]);
        assert_eq!(p.realized, 120);
        assert_eq!(p.net_qty, -60);
        assert_eq!(p.avg_cost, Some(10));
    }

    #[test]
    fn flat_position_has_no_average_cost() {
        let p = fold(&[ex(1, 10, 5), ex(2, -10, 6)]);
        assert_eq!(p.net_qty, 0);
        assert_eq!(p.avg_cost, None);
        assert_eq!(p.realized, 10);
    }

    #[test]
    fn average_rounds_half_even() {
        // (1 x 1 + 1 x 2) / 2 = 1.5 -> 2 (even); (1 x 2 + 1 x 3) / 2 = 2.5 -> 2.
        assert_eq!(fold(&[ex(1, 1, 1), ex(2, 1, 2)]).avg_cost, Some(2));
        assert_eq!(fold(&[ex(1, 1, 2), ex(2, 1, 3)]).avg_cost, Some(2));
    }
}
