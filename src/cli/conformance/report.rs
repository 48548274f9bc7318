//! The kit's verdicts: one line per check, `PASS name`, `FAIL name: what
//! was seen` or `NOT RUN name: why`, then the counts; or with `-pj` one JSON
//! object. A check that could not run is never counted as passed.

use serde_json::json;

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Fail(String),
    NotRun(String),
}

/// The checks of one run, in the order they were made.
#[derive(Default)]
pub(crate) struct Report {
    checks: Vec<(&'static str, Outcome)>,
}

impl Report {
    pub(crate) fn pass(&mut self, name: &'static str) {
        self.record(name, Outcome::Pass);
    }

    pub(crate) fn fail(&mut self, name: &'static str, seen: impl Into<String>) {
        self.record(name, Outcome::Fail(seen.into()));
    }

    pub(crate) fn not_run(&mut self, name: &'static str, why: impl Into<String>) {
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

    pub(crate) fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Fail(_)))
    }

    fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        self.checks.iter().filter(|(_, o)| pred(o)).count()
    }

    /// The report as people read it.
    pub(crate) fn text(&self) -> String {
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

    /// The report for scripts.
    pub(crate) fn json(&self) -> String {
        let checks: Vec<serde_json::Value> = self
            .checks
            .iter()
            .map(|(name, outcome)| match outcome {
                Outcome::Pass => json!({"name": name, "result": "pass"}),
                Outcome::Fail(seen) => json!({"name": name, "result": "fail", "detail": seen}),
                Outcome::NotRun(why) => json!({"name": name, "result": "not run", "detail": why}),
            })
            .collect();
        let v = json!({
            "checks": checks,
            "passed": self.count(|o| *o == Outcome::Pass),
            "failed": self.failed(),
            "not_run": self.count(|o| matches!(o, Outcome::NotRun(_))),
        });
        format!("{v}\n")
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
        r.not_run("b", "no stream method");
        assert_eq!(
            r.text(),
            "FAIL a: seen x\nNOT RUN b: no stream method\n0 passed, 1 failed, 1 not run\n"
        );
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["failed"], 1);
        assert_eq!(j["checks"][1]["result"], "not run");
    }
}
