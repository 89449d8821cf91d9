"""HTML reports: the case report (`case_report.write_case_report`) and its figures."""
