//! The check's HTML report: one self-contained file (the charting library inlined, no network)
//! with the verdicts, the latency of the sampled fills over time and as a histogram, and each
//! drive's throughput against the target.

use eod_queries::charts::{UPLOT_CSS, UPLOT_JS};

use super::CheckResult;

const TEMPLATE: &str = include_str!("report.html");

pub fn report_html(result: &CheckResult) -> Result<String, serde_json::Error> {
    // Inside a <script> element "</" could end it early; "<\/" is the same JSON string.
    let data = serde_json::to_string(result)?.replace("</", "<\\/");
    let mut html = String::with_capacity(TEMPLATE.len() + UPLOT_JS.len() + data.len());
    let mut rest = TEMPLATE;
    for (placeholder, value) in [
        ("/*UPLOT_CSS*/", UPLOT_CSS),
        ("/*RESULT*/", data.as_str()),
        ("/*UPLOT_JS*/", UPLOT_JS),
    ] {
        let (before, after) = rest
            .split_once(placeholder)
            .expect("the report template has each placeholder once, in this order");
        html.push_str(before);
        html.push_str(value);
        rest = after;
    }
    html.push_str(rest);
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Scenario, Verdict};

    #[test]
    fn the_report_is_one_page_whose_data_cannot_end_its_script() {
        let result = CheckResult {
            run_id: "r1".into(),
            started_at: "20261204-08:00:00.000".into(),
            passed: false,
            target_rate: 10_000,
            burst_multiplier: 10,
            verdicts: vec![Verdict {
                scenario: Scenario::Health,
                passed: false,
                summary: "redis: </script><script>alert(1)</script>".into(),
                measurements: serde_json::json!({}),
            }],
            latency: Vec::new(),
            throughput: Default::default(),
        };
        let html = report_html(&result).unwrap();
        // The page's own three scripts (data, uPlot, the charts), and nothing from the data.
        assert_eq!(html.matches("</script>").count(), 3);
        assert!(html.contains(r#"redis: <\/script><script>alert(1)<\/script>"#));
        assert!(html.contains("uPlot") && !html.contains("/*UPLOT_JS*/"));
    }
}
