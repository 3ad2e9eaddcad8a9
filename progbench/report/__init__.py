"""Reports: results tables, significance tests, figures and a self-contained HTML page, all a
pure function of the results table written by `progbench evaluate`."""

from progbench.report.build import MANIFEST, REPORT_HTML, ReportResult, build_report
from progbench.report.provenance import collect_run_variants, collect_run_versions

__all__ = [
    "MANIFEST",
    "REPORT_HTML",
    "ReportResult",
    "build_report",
    "collect_run_variants",
    "collect_run_versions",
]
