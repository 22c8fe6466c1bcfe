//! The charting library pages with charts embed: uPlot, vendored (see `assets/uplot/README.md`),
//! so that a page stays one self-contained file.

pub const UPLOT_JS: &str = include_str!("../assets/uplot/uPlot.iife.min.js");
pub const UPLOT_CSS: &str = include_str!("../assets/uplot/uPlot.min.css");
