"""Benchmarks: each module measures one question side by side and prints its figures.

Run them from the project root as modules, `python -m benchmarks.<name> --help`: they
import the installed `pipeline` (`pip install -e .`), their shared helpers from this
package and, for `scale_out`, the test suite's PostgreSQL server from `tests/`.
"""
