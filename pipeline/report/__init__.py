"""The report: what the stages wrote (results), how far to trust it (statistics), what to
recommend (selection), the tables, Pareto fronts and plots, and report.md's sections
(answer, evidence, provenance) put together by markdown.py."""
