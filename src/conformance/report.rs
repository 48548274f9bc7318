//! The kit's verdicts: one line per check, `PASS name`, `FAIL name: what
//! was seen` or `NOT RUN name: why`, then the counts; or with `-pj` one JSON
//! object. A check that could not run is never counted as passed.

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It held.
    Pass,
    /// It did not: what was seen.
    Fail(String),
    /// It could not be made: why (never counted as passed).
    NotRun(String),
}

/// The checks of one run, in the order they were made.
#[derive(Debug, Default)]
pub struct Report {
    checks: Vec<(&'static str, Outcome)>,
}

impl Report {
    pub(crate) fn pass(&mut self, name: &'static str) {
        self.record(name, Outcome::Pass);
    }

    pub(crate) fn fail(&mut self, name: &'static str, seen: impl Into<String>) {
        self.record(name, Outcome::Fail(seen.into()));
    }

    pub(crate) fn skip(&mut self, name: &'static str, why: impl Into<String>) {
        self.record(name, Outcome::NotRun(why.into()));
    }

    /// PASS when `ok`, else FAIL with `seen`.
    pub(crate) fn check(&mut self, name: &'static str, ok: bool, seen: impl FnOnce() -> String) {
        if ok {
            self.pass(name);
        } else {
            self.fail(name, seen());
        }
    }

    /// Keep the first verdict of a check made several times (per message,
    /// say), except that a failure replaces a pass.
    pub(crate) fn record(&mut self, name: &'static str, outcome: Outcome) {
        match self.checks.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) => {
                if matches!(outcome, Outcome::Fail(_)) && !matches!(old, Outcome::Fail(_)) {
                    *old = outcome;
                }
            }
            None => self.checks.push((name, outcome)),
        }
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.checks.iter().any(|(n, _)| *n == name)
    }

    /// Each check's name and outcome, in the order they were made.
    pub fn checks(&self) -> impl Iterator<Item = (&'static str, &Outcome)> {
        self.checks.iter().map(|(n, o)| (*n, o))
    }

    /// How many passed.
    pub fn passed(&self) -> usize {
        self.count(|o| *o == Outcome::Pass)
    }

    /// How many could not run.
    pub fn not_run(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NotRun(_)))
    }

    /// How many failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Fail(_)))
    }

    fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        self.checks.iter().filter(|(_, o)| pred(o)).count()
    }

    /// The report as people read it: `PASS name`, `FAIL name: what was
    /// seen` or `NOT RUN name: why`, one per line, then the counts.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (name, outcome) in &self.checks {
            match outcome {
                Outcome::Pass => out.push_str(&format!("PASS {name}\n")),
                Outcome::Fail(seen) => out.push_str(&format!("FAIL {name}: {seen}\n")),
                Outcome::NotRun(why) => out.push_str(&format!("NOT RUN {name}: {why}\n")),
            }
        }
        let not_run = self.count(|o| matches!(o, Outcome::NotRun(_)));
        out.push_str(&format!(
            "{} passed, {} failed",
            self.count(|o| *o == Outcome::Pass),
            self.failed()
        ));
        if not_run > 0 {
            out.push_str(&format!(", {not_run} not run"));
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_sticks_and_not_run_is_not_passed() {
        let mut r = Report::default();
        r.pass("a");
        r.fail("a", "seen x");
        r.pass("a");
        r.skip("b", "no stream method");
        assert_eq!(
            r.text(),
            "FAIL a: seen x\nNOT RUN b: no stream method\n0 passed, 1 failed, 1 not run\n"
        );
        assert_eq!((r.passed(), r.failed(), r.not_run()), (0, 1, 1));
    }
}
