//! The printed table and the list of targets.

use serde_json::{Value, json};

/// Runs a section's async work on a single-threaded Tokio runtime of its own.
pub fn block_on<F: std::future::Future>(work: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
        .block_on(work)
}

/// Prints a section title.
pub fn section(title: &str) {
    println!("\n== {title}");
}

/// Prints rows as a table with a header; columns are right-aligned except the first.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    line(width.iter().map(|w| "-".repeat(*w)).collect());
    for r in rows {
        line(r.clone());
    }
}

/// A number with `digits` decimals, or `-`.
pub fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".into(),
    }
}

/// One target: the measured figure against its bound (`<=`).
#[derive(Debug, Clone)]
pub struct Goal {
    pub name: String,
    pub value: Option<f64>,
    pub limit: f64,
    pub unit: String,
}

impl Goal {
    pub fn new(name: impl Into<String>, value: Option<f64>, limit: f64, unit: &str) -> Self {
        Goal {
            name: name.into(),
            value,
            limit,
            unit: unit.into(),
        }
    }

    /// A ratio that must stay at or below `limit` (unit `x`).
    pub fn ratio(name: impl Into<String>, value: Option<f64>, limit: f64) -> Self {
        Goal::new(name, value, limit, "x")
    }

    pub fn met(&self) -> Option<bool> {
        self.value.map(|v| v <= self.limit)
    }

    /// How far over the limit, as a fraction of it (0 when met; `None` for a limit of 0).
    pub fn miss(&self) -> Option<f64> {
        let v = self.value?;
        if v <= self.limit {
            Some(0.0)
        } else if self.limit > 0.0 {
            Some((v - self.limit) / self.limit)
        } else {
            None
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "target": self.name,
            "value": self.value,
            "limit": self.limit,
            "unit": self.unit,
            "met": self.met(),
            "miss_fraction": self.miss(),
        })
    }

    pub fn row(&self) -> Vec<String> {
        let digits = if self.limit < 10.0 { 2 } else { 1 };
        vec![
            self.name.clone(),
            format!("{} {}", num(self.value, digits), self.unit),
            format!("<= {} {}", num(Some(self.limit), digits), self.unit),
            match (self.met(), self.miss()) {
                (Some(true), _) => "met".into(),
                (Some(false), Some(m)) => format!("MISSED by {:.0}%", m * 100.0),
                (Some(false), None) => "MISSED".into(),
                _ => "not measured".into(),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals() {
        let g = Goal::new("x", Some(3.0), 2.0, "x");
        assert_eq!(g.met(), Some(false));
        assert_eq!(g.miss(), Some(0.5));
        assert_eq!(g.row()[3], "MISSED by 50%");
        let g = Goal::new("y", Some(1.0), 2.0, "x");
        assert_eq!((g.met(), g.miss()), (Some(true), Some(0.0)));
        assert_eq!(Goal::new("z", None, 1.0, "").met(), None);
        let g = Goal::new("scans", Some(1.0), 0.0, "calls");
        assert_eq!((g.met(), g.miss()), (Some(false), None));
        assert_eq!(g.row()[3], "MISSED");
        assert_eq!(Goal::new("scans", Some(0.0), 0.0, "").row()[3], "met");
        assert_eq!(num(Some(1.234), 1), "1.2");
        assert_eq!(num(None, 1), "-");
    }
}
