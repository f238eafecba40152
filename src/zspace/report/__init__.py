"""Reports: plots of analysis records, run comparisons and the self-contained HTML report."""

from zspace.report.build import (
    RunReport,
    collect_run,
    comparison_figures,
    distinct_labels,
    label_runs,
    comparison_tables,
    write_comparison,
    write_html_report,
)

__all__ = [
    "RunReport",
    "collect_run",
    "distinct_labels",
    "label_runs",
    "comparison_tables",
    "comparison_figures",
    "write_comparison",
    "write_html_report",
]
