"""HTML reports: the case report's page (`case_report.render_html`) and its figures
(a case folder's report: `cordmap.pipeline.report`)."""
