//! The one loop every exploration runs. Where orders come from is a
//! [`Strategy`]: whole-run orders planned up front (every order or a
//! sample), dynamic partial-order reduction over traced executions, or the
//! one order `--order` replays. The driver executes what the strategy gives
//! (side by side when it gives several and `--jobs` allows), hands each
//! judged order back in the order given, and keeps the rules every
//! exploration shares: the order budget (a count, the same on any machine),
//! the safety-net clock (which stops it, never judges), the limit of
//! failing orders, interruption, and what an order without a verdict makes
//! of the whole exploration.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::engine::{Engine, Run};
use crate::events::Log;
use crate::outcome::{Failure, ScenarioResult, Status};
use crate::parallel::parallel_map;
use crate::scenario::{ScenarioFile, Step};

/// After this many failing orders an exploration stops: the shortest of
/// them and a few others are what a user reads.
pub const MAX_FAILING_ORDERS: usize = 20;

/// One exploration under way, whatever its strategy: the scenario, the
/// engine, when it started and its safety-net clock.
pub(super) struct Exploring<'a> {
    pub sf: &'a ScenarioFile,
    pub engine: &'a Engine<'a>,
    start: Instant,
    /// The scenario's limit, else the engine's. The budget is a count of
    /// orders, the same on any machine; the clock is only a safety net.
    pub limit: Duration,
    deadline: Instant,
}

impl<'a> Exploring<'a> {
    pub fn new(sf: &'a ScenarioFile, engine: &'a Engine<'a>) -> Exploring<'a> {
        let start = Instant::now();
        let limit = sf.scenario.timeout.unwrap_or(engine.limits.exploration);
        Exploring {
            sf,
            engine,
            start,
            limit,
            deadline: start + limit,
        }
    }

    /// Run engine steps as this scenario, within the safety-net clock.
    pub fn execute(&self, steps: &[Step]) -> Log {
        self.engine.execute(&Run {
            id: &self.sf.id,
            scenario: &self.sf.scenario,
            steps,
            hard_deadline: Some(self.deadline),
        })
    }

    pub fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Orders per second so far.
    pub fn rate(&self, orders: usize) -> f64 {
        orders as f64 / self.start.elapsed().as_secs_f64().max(1e-9)
    }

    /// An exploration that stopped at its order budget with every order
    /// explored agreeing: a PASS that says so, or with --strict-budget a
    /// TIMEOUT.
    pub fn budget_status(&self) -> Status {
        if self.engine.limits.strict_budget {
            Status::Timeout
        } else {
            Status::Pass
        }
    }

    /// The driver's bounds: the order budget, `jobs` workers, this clock.
    pub fn drive<S: Strategy>(&self, strategy: &mut S, jobs: usize) -> Result<Driven, Box<ScenarioResult>> {
        let out_of_time = || self.out_of_time();
        let bounds = Bounds {
            budget: self.engine.limits.max_orders,
            jobs,
            out_of_time: &out_of_time,
        };
        drive(strategy, &bounds).map_err(|u| Box::new(self.unfinished(u)))
    }

    pub fn replay_command(&self, order: &str) -> String {
        super::replay_command(self.sf, self.engine, order)
    }

    /// The scenario's result, timed from the start.
    pub fn result(&self, status: Status, message: String, problems: Vec<String>, log: Option<Log>) -> ScenarioResult {
        ScenarioResult {
            id: self.sf.id.clone(),
            status,
            duration: self.start.elapsed(),
            message,
            problems,
            failures: vec![],
            log,
        }
    }

    /// A FAIL, with every failure of every failing order (each is held
    /// against the implementation's known deviations).
    pub fn failed(&self, message: String, problems: Vec<String>, log: Log, failures: Vec<Failure>) -> ScenarioResult {
        let judged = self.result(Status::Fail, message, problems, Some(log));
        ScenarioResult { failures, ..judged }
    }
}

impl Exploring<'_> {
    /// The exploration's result when an order had no verdict.
    pub fn unfinished(&self, u: Unfinished) -> ScenarioResult {
        match u {
            Unfinished::Skip(why) => self.result(Status::Skip, why, vec![], None),
            Unfinished::Broken { order, why, log } => {
                self.result(Status::Broken, format!("order {order}: {why}"), vec![], Some(*log))
            }
            Unfinished::Interrupted { judged } => self.result(
                Status::Interrupted,
                format!(
                    "{} after {judged} orders; the exploration was not judged",
                    crate::interrupt::interruption()
                ),
                vec![],
                None,
            ),
        }
    }
}

/// Why an executed order has no verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdictless {
    /// The backend cannot run it here: the whole exploration is a SKIP.
    Skip(String),
    /// A setup or harness error: the whole exploration is BROKEN.
    Broken(String),
    /// A signal to the harness: INTERRUPTED.
    Interrupted,
    /// The safety-net clock ran out during it: the exploration stops there
    /// and is judged on what finished.
    Cut,
}

/// An executed order without a verdict, with its log.
pub(super) type Unjudged = Box<(Verdictless, Log)>;

/// Where the orders of an exploration come from, and what it keeps of
/// them.
pub(super) trait Strategy: Sync {
    /// An order as the strategy plays it.
    type Order: Sync;
    /// An executed order with its verdict.
    type Judged: Send;
    /// Whether any order is left to execute.
    fn has_more(&self) -> bool;
    /// Up to `most` orders (at least one, when any is left) to execute
    /// next; the driver executes them all unless it stops.
    fn next_orders(&mut self, most: usize) -> Vec<Self::Order>;
    /// Execute one order and judge it, or say why it has no verdict.
    fn execute(&self, order: &Self::Order) -> Result<Self::Judged, Unjudged>;
    /// Whether a judged order disagrees with what it is held against.
    fn failed(judged: &Self::Judged) -> bool;
    /// Take in a judged order, in the order they were given.
    fn take(&mut self, order: Self::Order, judged: Self::Judged);
    /// The order as `--order` takes it.
    fn label(order: &Self::Order) -> String;
}

/// Why the driver stopped, with every order it executed judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The strategy has no order left.
    Exhausted,
    /// The order budget (`--max-orders`) is spent and orders are left.
    Budget,
    /// The safety-net clock ran out: how far it got depended on the machine.
    Clock,
    /// [`MAX_FAILING_ORDERS`] orders failed.
    FailingLimit,
}

/// What the driver came to: the orders judged and why it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Driven {
    pub judged: usize,
    pub end: End,
}

/// The exploration has no verdict: an order had none.
#[derive(Debug, Clone)]
pub(super) enum Unfinished {
    Skip(String),
    Broken { order: String, why: String, log: Box<Log> },
    Interrupted { judged: usize },
}

/// What the driver is bounded by: the order budget (a count), the workers,
/// and the safety-net clock.
pub(super) struct Bounds<'c> {
    pub budget: usize,
    pub jobs: usize,
    pub out_of_time: &'c (dyn Fn() -> bool + Sync),
}

/// Drive a strategy to its end, or to the first order without a verdict.
pub(super) fn drive<S: Strategy>(s: &mut S, bounds: &Bounds) -> Result<Driven, Unfinished> {
    let Bounds {
        budget,
        jobs,
        out_of_time,
    } = *bounds;
    let mut judged = 0;
    let mut failing = 0;
    // Orders the last batch never started (it stops only for one of the
    // conditions below, which stay true once they are).
    let mut left = 0;
    loop {
        if crate::interrupt::interrupted() {
            return Err(Unfinished::Interrupted { judged });
        }
        let end = if left == 0 && !s.has_more() {
            Some(End::Exhausted)
        } else if failing >= MAX_FAILING_ORDERS {
            Some(End::FailingLimit)
        } else if judged >= budget {
            Some(End::Budget)
        } else if out_of_time() || left > 0 {
            Some(End::Clock)
        } else {
            None
        };
        if let Some(end) = end {
            return Ok(Driven { judged, end });
        }
        let orders = s.next_orders(budget - judged);
        let failing_now = AtomicUsize::new(failing);
        let stop = || {
            crate::interrupt::interrupted() || failing_now.load(Ordering::SeqCst) >= MAX_FAILING_ORDERS || out_of_time()
        };
        let strategy = &*s;
        let executed = parallel_map(orders.len(), jobs, stop, |i| {
            let r = strategy.execute(&orders[i]);
            let counts = match &r {
                Ok(o) => S::failed(o),
                Err(b) => matches!(b.0, Verdictless::Broken(_)),
            };
            if counts {
                failing_now.fetch_add(1, Ordering::SeqCst);
            }
            r
        });
        left = orders.len() - executed.len();
        let mut cut = false;
        for (order, r) in orders.into_iter().zip(executed) {
            match r {
                Ok(outcome) => {
                    judged += 1;
                    failing += usize::from(S::failed(&outcome));
                    s.take(order, outcome);
                }
                Err(b) => match *b {
                    (Verdictless::Cut, _) => cut = true,
                    (Verdictless::Interrupted, _) => return Err(Unfinished::Interrupted { judged }),
                    (Verdictless::Skip(why), _) => return Err(Unfinished::Skip(why)),
                    (Verdictless::Broken(why), log) => {
                        let order = S::label(&order);
                        return Err(Unfinished::Broken {
                            order,
                            why,
                            log: Box::new(log),
                        });
                    }
                },
            }
        }
        if cut {
            return Ok(Driven {
                judged,
                end: End::Clock,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// What a toy order does when executed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Does {
        Agree,
        Disagree,
        /// Agrees, and the clock runs out after it.
        AgreeThenClockOut,
        /// Has no verdict: cut by the clock, which has run out.
        Cut,
        Broken,
        Skip,
    }

    /// Orders 0, 1, 2, ... handed out in batches (like planned orders) or
    /// one at a time, each next one known only once the last is taken in
    /// (like DPOR).
    struct Toy {
        count: usize,
        one_at_a_time: bool,
        does: BTreeMap<usize, Does>,
        handed: usize,
        waiting: bool,
        taken: Vec<usize>,
    }

    impl Toy {
        fn new(count: usize, one_at_a_time: bool, does: &[(usize, Does)]) -> Toy {
            Toy {
                count,
                one_at_a_time,
                does: does.iter().copied().collect(),
                handed: 0,
                waiting: false,
                taken: vec![],
            }
        }
    }

    fn drive_toy(toy: &mut Toy, budget: usize, jobs: usize) -> Result<Driven, Unfinished> {
        let clock_out = std::sync::Arc::new(AtomicBool::new(false));
        let seen = clock_out.clone();
        let out_of_time = move || seen.load(Ordering::SeqCst);
        let mut timed = Timed { toy, clock_out };
        drive(
            &mut timed,
            &Bounds {
                budget,
                jobs,
                out_of_time: &out_of_time,
            },
        )
    }

    /// The toy with the clock the driver reads.
    struct Timed<'t> {
        toy: &'t mut Toy,
        clock_out: std::sync::Arc<AtomicBool>,
    }

    impl Strategy for Timed<'_> {
        type Order = usize;
        type Judged = bool;

        fn has_more(&self) -> bool {
            !self.toy.waiting && self.toy.handed < self.toy.count
        }

        fn next_orders(&mut self, most: usize) -> Vec<usize> {
            let t = &mut *self.toy;
            let n = if t.one_at_a_time { 1 } else { most };
            let orders: Vec<usize> = (t.handed..t.count).take(n).collect();
            t.handed += orders.len();
            t.waiting = t.one_at_a_time;
            orders
        }

        fn execute(&self, order: &usize) -> Result<bool, Unjudged> {
            let why = match self.toy.does.get(order).copied().unwrap_or(Does::Agree) {
                Does::Agree => return Ok(false),
                Does::Disagree => return Ok(true),
                Does::AgreeThenClockOut => {
                    self.clock_out.store(true, Ordering::SeqCst);
                    return Ok(false);
                }
                Does::Cut => {
                    self.clock_out.store(true, Ordering::SeqCst);
                    Verdictless::Cut
                }
                Does::Broken => Verdictless::Broken(format!("order {order} broke")),
                Does::Skip => Verdictless::Skip(format!("order {order} cannot run")),
            };
            Err(Box::new((why, Log::default())))
        }

        fn failed(outcome: &bool) -> bool {
            *outcome
        }

        fn take(&mut self, order: usize, _: bool) {
            self.toy.taken.push(order);
            self.toy.waiting = false;
        }

        fn label(order: &usize) -> String {
            order.to_string()
        }
    }

    fn ended(end: End, judged: usize) -> Option<Driven> {
        Some(Driven { judged, end })
    }

    /// The rules hold whichever way orders come: all at once (on one or two
    /// workers) or each after the last is taken in; every judged order is
    /// taken in, in order.
    #[rstest::rstest]
    #[case::all_agree(8, 100, &[], ended(End::Exhausted, 8))]
    #[case::a_budget_of_exactly_the_orders_is_no_budget_stop(8, 8, &[], ended(End::Exhausted, 8))]
    #[case::a_budget_below_the_orders(8, 5, &[], ended(End::Budget, 5))]
    #[case::failures_are_judged_and_go_on(8, 100, &[(2, Does::Disagree), (6, Does::Disagree)], ended(End::Exhausted, 8))]
    #[case::the_clock_after_an_order_stops_before_the_next(8, 100, &[(2, Does::AgreeThenClockOut)], ended(End::Clock, 3))]
    #[case::an_order_cut_by_the_clock_is_not_judged(8, 100, &[(3, Does::Cut)], ended(End::Clock, 3))]
    fn the_driver_ends_by_counts_and_by_the_clock_only_as_a_safety_net(
        #[case] count: usize,
        #[case] budget: usize,
        #[case] does: &[(usize, Does)],
        #[case] expected: Option<Driven>,
        #[values((false, 1), (false, 2), (true, 1))] way: (bool, usize),
    ) {
        let (one_at_a_time, jobs) = way;
        if jobs > 1
            && does
                .iter()
                .any(|(_, d)| matches!(d, Does::Cut | Does::AgreeThenClockOut))
        {
            // A second worker may start an order before it sees the clock
            // ran out: the clock is a safety net, not a count.
            return;
        }
        let mut toy = Toy::new(count, one_at_a_time, does);
        let got = drive_toy(&mut toy, budget, jobs).ok();
        assert_eq!(got, expected);
        let judged = got.map_or(0, |d| d.judged);
        assert_eq!(toy.taken, (0..judged).collect::<Vec<_>>());
    }

    #[rstest::rstest]
    #[case::broken(Does::Broken)]
    #[case::skip(Does::Skip)]
    fn an_order_without_a_verdict_leaves_the_exploration_without_one(#[case] lacks: Does) {
        for one_at_a_time in [false, true] {
            let mut toy = Toy::new(8, one_at_a_time, &[(4, lacks)]);
            match (lacks, drive_toy(&mut toy, 100, 1)) {
                (Does::Broken, Err(Unfinished::Broken { order, why, .. })) => {
                    assert_eq!((order.as_str(), why.as_str()), ("4", "order 4 broke"))
                }
                (Does::Skip, Err(Unfinished::Skip(why))) => assert_eq!(why, "order 4 cannot run"),
                (_, got) => panic!("{got:?}"),
            }
            assert_eq!(toy.taken, vec![0, 1, 2, 3]);
        }
    }

    /// After MAX_FAILING_ORDERS failing orders the driver stops: on one
    /// worker at exactly that many.
    #[test]
    fn failing_orders_stop_the_driver_at_the_limit() {
        let all_fail: Vec<(usize, Does)> = (0..100).map(|o| (o, Does::Disagree)).collect();
        for one_at_a_time in [false, true] {
            let mut toy = Toy::new(100, one_at_a_time, &all_fail);
            let got = drive_toy(&mut toy, 1000, 1).ok();
            assert_eq!(got, ended(End::FailingLimit, MAX_FAILING_ORDERS));
        }
    }
}
