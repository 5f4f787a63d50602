//! Performance targets checked against a comparison's runs, so a bench run says
//! which of an issue's numbers it meets. A target names a scenario and a number of
//! its runs' reports (a JSON pointer), either the first contender's own value or
//! its ratio to the second contender's (the subject against its yardstick: rtmpd
//! against nginx-rtmp, HTTP-FLV players against RTMP players of the same server):
//!
//! ```text
//! 7: ratio /server/cpu_s_per_gb <= 1.1   # issue 10
//! 7: /server/rss_per_player_kb <= 32
//! ```

use std::fmt;
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::report::{contenders, fmt_num, num, ratio, scenario};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Le,
    Lt,
    Ge,
    Gt,
    Eq,
}

impl Op {
    const ALL: [(Op, &'static str); 5] = [
        (Op::Le, "<="),
        (Op::Ge, ">="),
        (Op::Lt, "<"),
        (Op::Gt, ">"),
        (Op::Eq, "=="),
    ];

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Le => a <= b,
            Op::Lt => a < b,
            Op::Ge => a >= b,
            Op::Gt => a > b,
            Op::Eq => a == b,
        }
    }

    fn symbol(self) -> &'static str {
        Op::ALL
            .iter()
            .find(|(op, _)| *op == self)
            .map_or("?", |(_, s)| s)
    }
}

/// One target, as parsed from `SCENARIO: [ratio] /POINTER OP NUMBER [# NOTE]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub scenario: String,
    /// Compare the first contender's value to the second's instead of its own.
    pub ratio: bool,
    pub pointer: String,
    pub op: Op,
    pub limit: f64,
    /// Free text after `#` (which issue, what it means).
    pub note: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{} {} {}",
            if self.ratio { "ratio " } else { "" },
            self.pointer,
            self.op.symbol(),
            self.limit
        )
    }
}

impl Target {
    pub fn parse(spec: &str) -> Result<Target, String> {
        let bad = |why: &str| {
            format!("target {spec:?}: {why} (expected 'SCENARIO: [ratio] /POINTER OP NUMBER')")
        };
        let (expr, note) = spec.split_once('#').unwrap_or((spec, ""));
        let (id, expr) = expr.split_once(':').ok_or_else(|| bad("no scenario"))?;
        let id = id.trim();
        if id.is_empty() {
            return Err(bad("no scenario"));
        }
        let expr = expr.trim();
        let (ratio, expr) = match expr.strip_prefix("ratio ") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, expr),
        };
        let (at, op, len) = Op::ALL
            .iter()
            .filter_map(|&(op, sym)| expr.find(sym).map(|at| (at, op, sym.len())))
            .min_by_key(|&(at, _, len)| (at, std::cmp::Reverse(len)))
            .ok_or_else(|| bad("no comparison"))?;
        let pointer = expr[..at].trim();
        if !pointer.starts_with('/') {
            return Err(bad(
                "the number to check must be a JSON pointer like /server/cpu_s_per_gb",
            ));
        }
        let limit = expr[at + len..]
            .trim()
            .parse()
            .map_err(|_| bad("the limit is not a number"))?;
        Ok(Target {
            scenario: id.to_owned(),
            ratio,
            pointer: pointer.to_owned(),
            op,
            limit,
            note: note.trim().to_owned(),
        })
    }

    /// The target against `runs`: `None` when the scenario was not run at all.
    pub fn check(&self, runs: &[Value]) -> Option<Verdict> {
        let mine: Vec<&Value> = runs
            .iter()
            .filter(|r| scenario(r) == Some(&self.scenario))
            .collect();
        if mine.is_empty() {
            return None;
        }
        let columns = contenders(&mine);
        let first = columns.first().map(|(_, r)| num(r, &self.pointer));
        let (value, of) = match (self.ratio, columns.as_slice()) {
            (false, [(a, _), ..]) => (first.flatten(), (*a).to_owned()),
            (true, [(a, ra), (b, rb), ..]) => (
                ratio(num(ra, &self.pointer), num(rb, &self.pointer)),
                format!("{a} / {b}"),
            ),
            (true, [(a, _)]) => (None, format!("{a} / (no second contender)")),
            _ => (None, String::new()),
        };
        Some(Verdict {
            target: self.clone(),
            of,
            value,
            met: value.map(|v| self.op.holds(v, self.limit)),
        })
    }
}

/// A target's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub target: Target,
    /// Whose value it is: a contender, or `first / second`.
    pub of: String,
    pub value: Option<f64>,
    /// `None` when the number is missing (a run failed, or a single contender ran).
    pub met: Option<bool>,
}

impl Verdict {
    fn word(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "no data",
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.target.scenario,
            "target": self.target.to_string(),
            "note": self.target.note,
            "of": self.of,
            "value": self.value,
            "met": self.met,
        })
    }
}

/// The verdicts as a table, one line each, in the order given.
pub fn table(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    let wide = verdicts
        .iter()
        .map(|v| v.target.to_string().len())
        .max()
        .unwrap_or(0);
    for v in verdicts {
        let _ = write!(
            out,
            "{:<4} {:<wide$}  {:<8} {:>8}  {}",
            v.target.scenario,
            v.target.to_string(),
            v.word(),
            fmt_num(v.value),
            v.of
        );
        if !v.target.note.is_empty() {
            let _ = write!(out, "  ({})", v.target.note);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &str, contender: &str, cpu_per_gb: f64, rss: f64) -> Value {
        json!({
            "scenario": scenario, "contender": contender, "label": scenario,
            "server": {"cpu_s_per_gb": cpu_per_gb, "rss_per_player_kb": rss},
        })
    }

    #[test]
    fn specs_parse_and_print() {
        let t = Target::parse("7: ratio /server/cpu_s_per_gb <= 1.1  # issue 10").unwrap();
        assert_eq!(
            t,
            Target {
                scenario: "7".into(),
                ratio: true,
                pointer: "/server/cpu_s_per_gb".into(),
                op: Op::Le,
                limit: 1.1,
                note: "issue 10".into(),
            }
        );
        assert_eq!(t.to_string(), "ratio /server/cpu_s_per_gb <= 1.1");
        let t = Target::parse("2b:/delivery/full_rate_share>=1").unwrap();
        assert_eq!(
            (t.scenario.as_str(), t.op, t.limit, t.ratio),
            ("2b", Op::Ge, 1.0, false)
        );
        assert_eq!(Target::parse("1: /a < 5").unwrap().op, Op::Lt);
        assert_eq!(Target::parse("1: /a == 0").unwrap().op, Op::Eq);
        for bad in ["/a <= 1", ": /a <= 1", "1: /a", "1: a <= 1", "1: /a <= x"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_check_the_first_contender_or_its_ratio_to_the_second() {
        let runs = [
            run("7", "rtmpd http-flv", 6.0, 300.0),
            run("7", "rtmpd", 2.0, 30.0),
            run("9", "rtmpd -m0", 1.0, 30.0),
        ];
        let check = |spec: &str| Target::parse(spec).unwrap().check(&runs);
        let v = check("7: ratio /server/cpu_s_per_gb <= 1.1").unwrap();
        assert_eq!((v.value, v.met), (Some(3.0), Some(false)));
        assert_eq!(v.of, "rtmpd http-flv / rtmpd");
        let v = check("7: /server/rss_per_player_kb <= 320").unwrap();
        assert_eq!(
            (v.value, v.met, v.of.as_str()),
            (Some(300.0), Some(true), "rtmpd http-flv")
        );
        // One contender: a ratio has no data; a scenario not run has no verdict.
        let v = check("9: ratio /server/cpu_s_per_gb <= 1.5").unwrap();
        assert_eq!((v.value, v.met), (None, None));
        assert_eq!(check("12: ratio /server/cpu_s_per_gb <= 0.19"), None);
        let v = check("7: /latency_ms/p99 <= 5").unwrap();
        assert_eq!(v.met, None, "a number the runs lack");

        let verdicts: Vec<Verdict> = [
            "7: ratio /server/cpu_s_per_gb <= 1.1 # issue 10",
            "9: /server/cpu_s_per_gb < 2",
        ]
        .iter()
        .filter_map(|s| Target::parse(s).unwrap().check(&runs))
        .collect();
        let t = table(&verdicts);
        assert!(
            t.contains("MISSED") && t.contains("(issue 10)") && t.contains("met"),
            "{t}"
        );
        assert_eq!(verdicts[0].to_json()["met"], false);
    }
}
