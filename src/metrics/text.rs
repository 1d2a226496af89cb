//! A writer for the Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE`
//! once per family, then its samples, with label values and help text escaped as the format
//! requires. Pure string building; `render` decides what to write.

use std::fmt::{Display, Write as _};

use super::histogram::HistogramSnapshot;

/// The metric types this gateway exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Accumulates one exposition.
#[derive(Debug, Default)]
pub(crate) struct TextWriter {
    out: String,
}

impl TextWriter {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        TextWriter {
            out: String::with_capacity(bytes),
        }
    }

    /// Start a family: its HELP and TYPE lines. Counters are named with their `_total`.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line of the current family.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels);
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with a single unlabelled sample.
    pub(crate) fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A whole histogram family: cumulative `_bucket`s, `+Inf`, `_sum`, `_count`.
    pub(crate) fn histogram(&mut self, name: &str, help: &str, snapshot: &HistogramSnapshot) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        for (le, count) in &snapshot.cumulative {
            self.sample(&bucket, &[("le", &le.to_string())], count);
        }
        self.sample(&bucket, &[("le", "+Inf")], snapshot.count);
        self.sample(&format!("{name}_sum"), &[], snapshot.sum_seconds);
        self.sample(&format!("{name}_count"), &[], snapshot.count);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut w = TextWriter::default();
        w.family("x_total", Kind::Counter, "a \\ b\nc");
        w.sample("x_total", &[("k", "q\"\\\n"), ("j", "v")], 3);
        assert_eq!(
            w.finish(),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total{k=\"q\\\"\\\\\\n\",j=\"v\"} 3\n"
        );
    }

    #[test]
    fn histograms_end_with_inf_sum_and_count() {
        let mut w = TextWriter::default();
        let snap = HistogramSnapshot {
            cumulative: vec![(0.001, 1), (0.01, 3)],
            count: 4,
            sum_seconds: 0.5,
        };
        w.histogram("h_seconds", "H.", &snap);
        let text = w.finish();
        assert!(text.contains("h_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("h_seconds_bucket{le=\"0.01\"} 3\n"));
        assert!(text.contains("h_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("h_seconds_sum 0.5\nh_seconds_count 4\n"));
    }
}
