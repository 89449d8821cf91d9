"""Study workflow: participant registry, annotation agreement, cohort statistics and reports."""
