"""``python -m lib.reports --reports DIR --plan PLAN ...``: see lib.reports.html."""

from lib.reports.html import main

main()
