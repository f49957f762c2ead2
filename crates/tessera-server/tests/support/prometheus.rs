//! A strict parser of the Prometheus text exposition format (0.0.4), for
//! checking what `/metrics` answers: every line is a `# HELP`, a `# TYPE`
//! or a sample of the family last typed; names and label names are valid;
//! label values are quoted with only `\\`, `\"` and `\n` escaped; a series
//! appears once; a histogram's buckets are cumulative, end with `+Inf`, and
//! `+Inf` equals `_count`. Anything else panics with the line.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A series: metric name and labels.
pub type Series = (String, BTreeMap<String, String>);

#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → type.
    pub types: HashMap<String, String>,
    pub samples: BTreeMap<Series, f64>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn value(text: &str, line: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => text.parse().unwrap_or_else(|_| panic!("bad value {text:?} in {line:?}")),
    }
}

/// `{a="x",b="y"}` at the start of `rest`: the labels and what follows.
fn labels<'a>(rest: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = rest.strip_prefix('{') else { return (labels, rest) };
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let eq = rest.find('=').unwrap_or_else(|| panic!("label without '=' in {line:?}"));
        let name = &rest[..eq];
        assert!(valid_label_name(name), "bad label name {name:?} in {line:?}");
        rest = rest[eq + 1..].strip_prefix('"').unwrap_or_else(|| panic!("unquoted label value in {line:?}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) | None => panic!("unterminated label value in {line:?}"),
                Some((_, c)) => value.push(c),
            }
        };
        assert!(labels.insert(name.to_owned(), value).is_none(), "label {name} twice in {line:?}");
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses `text`, panicking at the first line that breaks the format.
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    let mut helped = BTreeSet::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "bad name in {line:?}");
            assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().expect("TYPE without a type"));
            assert!(parts.next().is_none(), "trailing text in {line:?}");
            assert!(valid_name(name), "bad name in {line:?}");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "bad type in {line:?}");
            assert!(out.types.insert(name.to_owned(), kind.to_owned()).is_none(), "TYPE twice for {name}");
            current = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#') && !line.trim().is_empty(), "unexpected line {line:?}");
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value in {line:?}"));
        let name = &line[..name_end];
        assert!(valid_name(name), "bad name in {line:?}");
        let (family, kind) = current.as_ref().unwrap_or_else(|| panic!("sample before any TYPE: {line:?}"));
        let belongs = match kind.as_str() {
            "histogram" => [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")]
                .contains(&name.to_owned()),
            _ => name == family,
        };
        assert!(belongs, "{name} is not of the family {family} ({kind}) being written: {line:?}");
        let (labels, rest) = labels(&line[name_end..], line);
        let mut fields = rest.trim_start_matches(' ').split(' ');
        let v = value(fields.next().unwrap_or_else(|| panic!("no value in {line:?}")), line);
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
        }
        assert!(fields.next().is_none(), "trailing text in {line:?}");
        if kind == "counter" {
            assert!(v >= 0.0, "negative counter in {line:?}");
        }
        assert!(out.samples.insert((name.to_owned(), labels), v).is_none(), "series twice: {line:?}");
    }
    out.check_histograms();
    out
}

impl Exposition {
    fn check_histograms(&self) {
        for (family, _) in self.types.iter().filter(|(_, kind)| *kind == "histogram") {
            let bucket = format!("{family}_bucket");
            let mut per_series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for ((name, labels), v) in &self.samples {
                if *name == bucket {
                    let mut rest = labels.clone();
                    let le = rest.remove("le").expect("a bucket without le");
                    per_series.entry(rest).or_default().push((value(&le, &le), *v));
                }
            }
            for (labels, mut buckets) in per_series {
                buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
                assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family}{labels:?}: buckets not cumulative");
                let last = buckets.last().unwrap();
                assert_eq!(last.0, f64::INFINITY, "{family}{labels:?}: no +Inf bucket");
                let count = self.samples.get(&(format!("{family}_count"), labels.clone()));
                assert_eq!(count, Some(&last.1), "{family}{labels:?}: +Inf bucket is not the count");
                assert!(self.samples.contains_key(&(format!("{family}_sum"), labels.clone())), "{family}: no _sum");
            }
        }
    }

    /// The value of `name` with exactly `labels`; 0 when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.get(&(name.to_owned(), labels)).copied().unwrap_or(0.0)
    }

    /// The sum over every series of `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, v)| v)
            .sum()
    }

    /// Every series of `name`.
    pub fn series(&self, name: &str) -> BTreeSet<BTreeMap<String, String>> {
        self.samples.keys().filter(|(n, _)| n == name).map(|(_, l)| l.clone()).collect()
    }
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\"} 2\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    let parsed = parse(good);
    assert_eq!(parsed.get("a_total", &[("x", "q\"\\")]), 2.0);
    for bad in [
        "a_total 1\n",
        "# TYPE a counter\nb 1\n",
        "# TYPE a counter\na{x=unquoted} 1\n",
        "# TYPE a counter\na 1\na 2\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "accepted {bad:?}");
    }
}
