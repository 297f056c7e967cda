"""Reports: the figures the notebooks show (plots) and the HTML report of executed notebooks
(html; ``python -m lib.reports``). The top layer: may import every layer below it."""
