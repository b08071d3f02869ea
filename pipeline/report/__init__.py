"""The report: tables, Pareto fronts, plots and the words of report.md."""
