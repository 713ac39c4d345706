//! Prometheus text (format 0.0.4) as the tests read it: `/metrics`
//! scraped from a gateway's admin listener and parsed into samples.

use std::collections::BTreeMap;

/// One scrape: every sample by its name and labels as written
/// (`name{a="x",b="y"}`), and the `# HELP` / `# TYPE` lines by name.
pub struct Scrape {
    /// Samples by series.
    pub samples: BTreeMap<String, f64>,
    /// `# HELP` text by metric name.
    pub help: BTreeMap<String, String>,
    /// `# TYPE` by metric name.
    pub types: BTreeMap<String, String>,
    /// The text as scraped.
    pub text: String,
}

impl Scrape {
    /// Parses the text format (0.0.4): comments, then `name{labels} value`.
    pub fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape {
            samples: BTreeMap::new(),
            help: BTreeMap::new(),
            types: BTreeMap::new(),
            text: text.to_owned(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                scrape.help.insert(name.into(), help.into());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("a type");
                scrape.types.insert(name.into(), kind.into());
            } else if line.starts_with('#') {
                continue;
            } else {
                let (series, value) = line.rsplit_once(' ').expect("name and value");
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number in {line:?}"));
                scrape.samples.insert(series.into(), value);
            }
        }
        scrape
    }

    /// The sample's value; 0 when it is not there (a series not yet
    /// created). `series` as written, e.g. `a_total{outcome="ok"}`.
    pub fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// The sum of every sample of `name` whose labels contain `has`.
    pub fn sum(&self, name: &str, has: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| series.split('{').next() == Some(name) && series.contains(has))
            .map(|(_, v)| *v)
            .sum()
    }
}

/// `GET {base}/metrics`, checked to be 200 and text, parsed.
pub fn scrape(base: &str) -> Scrape {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .build()
        .into();
    let mut response = agent
        .get(format!("{base}/metrics"))
        .call()
        .unwrap_or_else(|e| panic!("GET {base}/metrics: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "GET {base}/metrics: {text}");
    Scrape::parse(&text)
}
